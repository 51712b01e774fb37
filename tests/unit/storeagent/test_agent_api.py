import pytest
from fastapi.testclient import TestClient

from storeagent.http.app import create_app
from storeagent.replica.db import META_BOOTSTRAPPED, Replica
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record, TopicPartition
from tests.support.agent_fakes import FixedClock, category_event, product_event, stock_event
from tests.support.terminal import TERMINAL_TOKEN, terminal_client


def load(replica: Replica, *events: tuple[str, bytes, bytes]) -> None:
    records = [
        Record(topic, 0, offset, key, value) for offset, (topic, key, value) in enumerate(events)
    ]
    apply_batch(replica, records, prefix="", now=FixedClock()())


def mark_bootstrapped(replica: Replica) -> None:
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})


@pytest.fixture
def progress() -> SyncProgress:
    return SyncProgress()


@pytest.fixture
def client(replica, progress) -> TestClient:
    app = create_app(
        replica, progress, store_id="s1", topics=topic_names(""), terminal_token=TERMINAL_TOKEN
    )
    return terminal_client(app)


@pytest.fixture
def ready(replica, progress) -> None:
    mark_bootstrapped(replica)
    progress.started()
    progress.assigned(10)
    progress.broker_answered()
    progress.beat()


def test_stock_of_a_replicated_sku_comes_from_the_replica(client, replica, ready):
    load(replica, product_event(sku="MILK-1L", name="Milk 1 L"), stock_event(sku="MILK-1L"))

    response = client.get("/stock/MILK-1L")

    assert response.status_code == 200
    assert response.json() == {
        "sku": "MILK-1L",
        "name": "Milk 1 L",
        "quantity": 40,
        "stock_version": 7,
        "updated_at": "2026-11-29T10:00:00.123456+00:00",
        "source": "replica",
    }


def test_product_without_stock_events_has_zero_stock(client, replica, ready):
    load(replica, product_event(sku="NEW-1"))

    body = client.get("/stock/NEW-1").json()

    assert (body["quantity"], body["stock_version"], body["updated_at"]) == (0, 0, None)


def test_unknown_sku_is_product_not_found(client, ready):
    response = client.get("/stock/NOPE-1")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "product.not_found",
        "message": "No such product in this store's replica.",
        "details": {"sku": "NOPE-1"},
    }


@pytest.mark.parametrize("sku", ["milk-1l", "-A", "A" * 65, "A B", "A%00", "Ä1", "A;DROP"])
def test_malformed_sku_is_sku_invalid(client, ready, sku):
    response = client.get(f"/stock/{sku}")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "sku.invalid"


def test_products_list_joins_the_stock_of_each_product(client, replica, ready):
    load(
        replica,
        product_event(sku="B-2", name="Bread", price="2.10", active=False),
        product_event(sku="A-1", name="Apples"),
        stock_event(sku="A-1", quantity=12, stock_version=3),
    )

    items = client.get("/products").json()["items"]

    assert items == [
        {
            "sku": "A-1",
            "name": "Apples",
            "price": "1.25",
            "category_id": 3,
            "description": "",
            "active": True,
            "version": 1,
            "quantity": 12,
            "stock_version": 3,
        },
        {
            "sku": "B-2",
            "name": "Bread",
            "price": "2.10",
            "category_id": 3,
            "description": "",
            "active": False,
            "version": 1,
            "quantity": 0,
            "stock_version": 0,
        },
    ]


def catalog(replica: Replica) -> None:
    events = [category_event(id=1, name="Dairy"), category_event(id=2, name="Bakery")]
    for i in range(12):
        sku, name = f"P-{i:02d}", f"{'Milk' if i % 2 else 'Bread'} {i}"
        events.append(product_event(sku=sku, name=name, category_id=1 + i % 2))
        events.append(stock_event(sku=sku, quantity=i, stock_version=1))
    load(replica, *events)


def every_page(client: TestClient, path: str, **params: object) -> tuple[list[dict], int]:
    items: list[dict] = []
    pages, after = 0, None
    while True:
        query = {**params, **({} if after is None else {"after": after})}
        page = client.get(path, params=query).json()
        items, pages, after = items + page["items"], pages + 1, page["next_after"]
        if after is None:
            return items, pages


def test_products_page_and_filter_as_central_does(client, replica, ready):
    catalog(replica)

    def skus(**params: object) -> list[str]:
        return [item["sku"] for item in every_page(client, "/products", limit=3, **params)[0]]

    everything, pages = every_page(client, "/products", limit=5)
    assert ([i["sku"] for i in everything], pages) == ([f"P-{i:02d}" for i in range(12)], 3)
    assert client.get("/products", params={"limit": 12}).json()["next_after"] is None
    assert skus(category=2) == [f"P-{i:02d}" for i in range(1, 12, 2)]
    assert skus(search="mILK 1") == ["P-01", "P-11"]
    assert skus(search="p-1") == ["P-10", "P-11"]
    assert skus(low_stock=2, category=1) == ["P-00", "P-02"]
    assert skus(search="_") == []


def test_categories_page_by_id(client, replica, ready):
    catalog(replica)

    items, pages = every_page(client, "/categories", limit=1)

    assert items == [
        {"id": 1, "name": "Dairy", "version": 1},
        {"id": 2, "name": "Bakery", "version": 1},
    ]
    assert pages == 2


@pytest.mark.parametrize(
    "query",
    [{"limit": 0}, {"limit": 1001}, {"after": "A" * 65}, {"category": 0}, {"low_stock": -1},
     {"search": "x" * 201}, {"category": 2**63}],
)  # fmt: skip
def test_unbounded_list_parameters_are_refused(client, ready, query):
    response = client.get("/products", params=query)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "request.invalid"


def test_reads_before_the_first_sync_are_replica_not_ready(client, replica):
    load(replica, product_event())

    for path in ("/stock/MILK-1L", "/products", "/categories"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "replica.not_ready"


ALL_CHECKS = (
    "database",
    "broker",
    "kafka_access",
    "assigned",
    "bootstrapped",
    "consuming",
    "applying",
    "kafka_log",
)


def test_readyz_names_the_failing_checks(client, replica, progress):
    mark_bootstrapped(replica)

    response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "replica.not_ready"
    assert error["message"] == "not ready: broker, assigned, consuming"
    assert error["details"] == {
        "checks": {
            "database": True,
            "broker": False,
            "kafka_access": True,
            "assigned": False,
            "bootstrapped": True,
            "consuming": False,
            "applying": True,
            "kafka_log": True,
        },
        "problems": [],
    }


def test_readyz_names_a_refused_kafka_login_and_why(client, progress, ready):
    progress.access_denied("kafka.auth_failed", "SaslAuthenticationFailedError: bad key")

    response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["message"] == (
        "not ready: broker, kafka_access "
        "(kafka.auth_failed: SaslAuthenticationFailedError: bad key)"
    )
    assert error["details"]["checks"]["kafka_access"] is False
    [problem] = error["details"]["problems"]
    assert problem["code"] == "kafka.auth_failed"
    assert problem["failures"] == 1


def test_readyz_and_sync_status_name_a_failing_apply(client, progress, ready):
    progress.apply_failed("OperationalError: database is locked")
    progress.apply_failed("OperationalError: database is locked")

    readyz = client.get("/readyz")
    status = client.get("/sync/status").json()

    assert readyz.status_code == 503
    assert readyz.json()["error"]["details"]["checks"]["applying"] is False
    assert (
        "apply_failing: OperationalError: database is locked" in readyz.json()["error"]["message"]
    )
    assert status["ready"] is False
    [problem] = status["problems"]
    assert (problem["code"], problem["failures"]) == ("apply_failing", 2)
    assert problem["message"] == "OperationalError: database is locked"


def test_a_problem_that_ended_leaves_readiness(client, progress, ready):
    progress.apply_failed("OperationalError: database is locked")
    progress.access_denied("kafka.not_authorized", "TopicAuthorizationFailedError")
    progress.apply_succeeded()
    progress.access_granted()
    progress.broker_answered()

    assert client.get("/readyz").status_code == 200
    assert client.get("/sync/status").json()["problems"] == []


def test_readyz_is_ready_when_every_check_passes(client, ready):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": dict.fromkeys(ALL_CHECKS, True)}


def test_readyz_is_not_ready_once_the_broker_stops_answering(client, progress, ready):
    progress.broker_failed("KafkaTimeoutError")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["details"]["checks"]["broker"] is False


def test_readyz_is_not_ready_when_the_replica_database_fails(client, replica, ready):
    replica.db.close()
    replica.db.init(str(replica.db.database) + ".missing/nope.db")

    checks = client.get("/readyz").json()["error"]["details"]["checks"]

    assert (checks["database"], checks["bootstrapped"]) == (False, False)


def test_healthz_answers_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_sync_status_reports_lag_per_partition(client, replica, progress, ready):
    load(replica, stock_event(sku="A", stock_version=1), stock_event(sku="A", stock_version=2))
    progress.set_end_offsets(
        {
            TopicPartition("inventory-updated", 0): 5,
            TopicPartition("new-product", 1): 0,
            TopicPartition("old-prefix.inventory-updated", 0): 9,
        }
    )

    body = client.get("/sync/status").json()

    assert body.pop("staleness_s") > 0, "the events are of 2026-11-29: stale by the real clock"
    assert body == {
        "store_id": "s1",
        "ready": True,
        "problems": [],
        "last_event_at": "2026-11-29T10:00:00.123456+00:00",
        "last_applied_at": "2026-11-29T10:00:00.000000+00:00",
        "clock_offset_s": None,
        "events_applied": 2,
        "dead_letters": 0,
        "epoch": 0,
        "partitions": [
            {"topic": "inventory-updated", "partition": 0, "offset": 2, "end_offset": 5, "lag": 3},
            {"topic": "new-product", "partition": 1, "offset": 0, "end_offset": 0, "lag": 0},
        ],
    }


def test_sync_status_counts_dead_letters(client, replica):
    load(replica, ("inventory-updated", b"X", b"not json"))

    body = client.get("/sync/status").json()

    assert (body["dead_letters"], body["ready"], body["events_applied"]) == (1, False, 0)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/stock/", 404, "not_found"),
        ("GET", "/stock/A/B", 404, "not_found"),
        ("POST", "/stock/A", 405, "request.invalid"),
        ("DELETE", "/products", 405, "request.invalid"),
    ],
)
def test_unroutable_requests_get_a_json_error_not_a_500(client, method, path, status, code):
    response = client.request(method, path, json=None if method == "GET" else {})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
