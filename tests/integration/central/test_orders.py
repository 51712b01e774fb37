"""Orders over HTTP: no oversell under contention, idempotent keys, cancellation, history."""

import random
import threading
import uuid
from collections import Counter, defaultdict

import httpx
import pytest

from central.models import Movement, Order, OrderLine, Stock
from harness.waiting import eventually
from tests.support.central_harness import read_events, running_central, served
from tests.support.contract import as_order_model_writes_it

SKUS = [f"SCARCE-{i}" for i in range(10)]
STORES = [f"store-{i}" for i in range(4)]
CLIENTS = 16
ATTEMPTS_PER_CLIENT = 12


def seed(h, stock):
    admin = h.admin()
    cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Scarce"})
    for sku, quantity in stock.items():
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": sku, "name": sku, "price": "2.00", "category_id": cat["id"]},
        )
        h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": quantity})
    return {
        s: h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
        for s in STORES
    }


def buy(client, key, lines, idem=None):
    return client.post(
        "/api/v1/orders",
        json={"lines": lines},
        headers={"X-API-Key": key, "Idempotency-Key": idem or uuid.uuid4().hex},
    )


def shopper(url, key, seed_, outcomes):
    rng = random.Random(seed_)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(ATTEMPTS_PER_CLIENT):
            skus = rng.sample(SKUS, rng.randint(1, 3))
            lines = [{"sku": s, "quantity": rng.randint(1, 3)} for s in skus]
            response = buy(client, key, lines)
            outcomes.append(response.status_code)
            assert response.status_code in (201, 409), response.text


def test_concurrent_stores_never_oversell(database_url, kafka_cluster, topic_prefix):
    initial = {sku: 8 + i for i, sku in enumerate(SKUS)}
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        keys = seed(h, initial)
        outcomes: list[int] = []
        with served(h) as url:
            threads = [
                threading.Thread(target=shopper, args=(url, keys[STORES[i % 4]], i, outcomes))
                for i in range(CLIENTS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        counts = Counter(outcomes)
        assert counts[201] > 0 and counts[409] > 0, counts
        assert sum(counts.values()) == CLIENTS * ATTEMPTS_PER_CLIENT
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        final, sold, ledger = check_books(h)

    for sku in SKUS:
        assert initial[sku] - sold[sku] == final[sku] >= 0
        assert ledger[sku] == final[sku]
    replayed = replay_stock(kafka_cluster, topic_prefix)
    assert replayed == final


def check_books(h):
    with h.central.db.connection_context():
        final = {s.sku: s.quantity for s in Stock.select()}
        sold = defaultdict(int)
        confirmed = {o.id for o in Order.select().where(Order.status == "confirmed")}
        for line in OrderLine.select():
            if line.order_id in confirmed:
                sold[line.sku] += line.quantity
        ledger = defaultdict(int)
        for m in Movement.select():
            ledger[m.sku] += m.delta
    return final, sold, ledger


def replay_stock(kafka, prefix):
    """Rebuild stock from the event stream alone: the last version of each SKU wins."""
    events = read_events(kafka, [prefix + "inventory-updated"], expected=len(SKUS))
    state = {}
    for _, key, value in events:
        data = value["data"]
        if key not in state or data["stock_version"] > state[key][0]:
            state[key] = (data["stock_version"], data["quantity"])
    return {sku: quantity for sku, (_, quantity) in state.items()}


def test_one_key_sent_ten_times_creates_one_order(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"ONE": 100})
        key = keys["store-0"]
        lines = [{"sku": "ONE", "quantity": 3}]
        results = []
        with served(h) as url:

            def send():
                with httpx.Client(base_url=url, timeout=60) as client:
                    results.append(buy(client, key, lines, idem="same-key"))

            threads = [threading.Thread(target=send) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with httpx.Client(base_url=url, timeout=60) as client:
                results.extend(buy(client, key, lines, idem="same-key") for _ in range(10))
        assert {r.status_code for r in results} == {201}
        assert len({r.json()["id"] for r in results}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 19
        assert h.call("GET", "/api/v1/stock/ONE", h.admin())["quantity"] == 97
        with h.central.db.connection_context():
            assert Order.select().count() == 1


def test_same_key_with_another_body_is_refused(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"ONE": 10})
        first = buy(h.client, keys["store-0"], [{"sku": "ONE", "quantity": 1}], idem="k1")
        other = buy(h.client, keys["store-0"], [{"sku": "ONE", "quantity": 2}], idem="k1")
        assert first.status_code == 201
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency.mismatch"
        elsewhere = buy(h.client, keys["store-1"], [{"sku": "ONE", "quantity": 2}], idem="k1")
        assert elsewhere.status_code == 201, "keys are scoped to their store"


def test_refusals_name_the_short_lines_and_reserve_nothing(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 1, "B": 5})
        response = buy(
            h.client, keys["store-0"], [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]
        )
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "stock.insufficient"
        assert error["details"]["lines"] == [{"sku": "A", "requested": 2, "available": 1}]
        assert h.call("GET", "/api/v1/stock/B", h.admin())["quantity"] == 5


@pytest.mark.parametrize(
    ("lines", "status", "code"),
    [
        ([{"sku": "NOPE", "quantity": 1}], 422, "order.sku_unknown"),
        ([{"sku": "A", "quantity": 0}], 422, "quantity.invalid"),
        ([{"sku": "A", "quantity": 10**12}], 422, "quantity.invalid"),
        ([{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}], 422, "order.duplicate_line"),
        ([], 422, "order.invalid"),
        ("nonsense", 422, "request.invalid"),
    ],
)
def test_bad_orders_get_clear_codes(database_url, lines, status, code):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5})
        response = h.client.post(
            "/api/v1/orders",
            json={"lines": lines},
            headers={"X-API-Key": keys["store-0"], "Idempotency-Key": "k"},
        )
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_inactive_products_cannot_be_bought(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5})
        h.call("PATCH", "/api/v1/products/A", h.admin(), json={"active": False})
        response = buy(h.client, keys["store-0"], [{"sku": "A", "quantity": 1}])
        assert response.json()["error"]["code"] == "order.sku_inactive"


def test_missing_idempotency_key_is_a_400(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5})
        response = h.client.post(
            "/api/v1/orders",
            json={"lines": [{"sku": "A", "quantity": 1}]},
            headers={"X-API-Key": keys["store-0"]},
        )
        assert (response.status_code, response.json()["error"]["code"]) == (
            400,
            "idempotency.key_required",
        )


def test_an_order_and_its_replay_are_answered_in_the_order_models_shape(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5, "B": 5})
        lines = [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]

        placed = buy(h.client, keys["store-0"], lines, idem="shape-1")
        replayed = buy(h.client, keys["store-0"], lines, idem="shape-1")

        assert (placed.status_code, replayed.status_code) == (201, 201)
        assert "Idempotent-Replayed" not in placed.headers
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert placed.headers["content-type"] == "application/json"
        assert placed.json() == as_order_model_writes_it(placed.json())
        assert replayed.json() == placed.json()
        assert placed.json()["total"] == "6.00"


def test_the_caller_is_checked_on_every_order_and_a_revoked_key_sells_nothing(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5})
        line = [{"sku": "A", "quantity": 1}]
        assert buy(h.client, keys["store-0"], line).status_code == 201
        [key] = h.call("GET", "/api/v1/stores/store-0/keys", h.admin())["items"]
        h.call("DELETE", f"/api/v1/stores/store-0/keys/{key['id']}", h.admin())

        refused = buy(h.client, keys["store-0"], line)
        anonymous = h.client.post("/api/v1/orders", json={"lines": "not a list"})
        malformed = h.client.post(
            "/api/v1/orders", json={"lines": "not a list"}, headers={"X-API-Key": "nope"}
        )

        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "auth.invalid")
        assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (
            401,
            "auth.required",
        )
        # a refused key is checked after the body's shape (docs/wire.md, POST /orders)
        assert (malformed.status_code, malformed.json()["error"]["code"]) == (
            422,
            "request.invalid",
        )
        with h.central.db.connection_context():
            assert Stock.get(Stock.sku == "A").quantity == 4


def test_cancel_restores_stock_once_and_only_for_the_owner(
    database_url, kafka_cluster, topic_prefix
):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        keys = seed(h, {"A": 5})
        order = buy(h.client, keys["store-0"], [{"sku": "A", "quantity": 2}]).json()
        other = h.client.post(
            f"/api/v1/orders/{order['id']}/cancel", headers={"X-API-Key": keys["store-1"]}
        )
        assert other.status_code == 404, "another store cannot see, let alone cancel, it"
        for _ in range(2):
            cancelled = h.call(
                "POST", f"/api/v1/orders/{order['id']}/cancel", {"X-API-Key": keys["store-0"]}
            )
            assert cancelled["status"] == "cancelled"
        assert h.call("GET", "/api/v1/stock/A", h.admin())["quantity"] == 5
        ledger = h.call("GET", "/api/v1/stock/A/movements", h.admin())["items"]
        assert [(m["reason"], m["delta"], m["quantity"]) for m in ledger] == [
            ("cancel", 2, 5),
            ("order", -2, 3),
            ("set", 5, 5),
        ]
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
    events = read_events(kafka_cluster, [topic_prefix + "inventory-updated"], expected=3)
    assert [(e[2]["data"]["reason"], e[2]["data"]["order_id"]) for e in events] == [
        ("set", None),
        ("order", order["id"]),
        ("cancel", order["id"]),
    ]
    # The store learns of the cancellation once: the second cancel changed nothing.
    updates = read_events(kafka_cluster, [topic_prefix + "order-updated"], expected=1)
    assert [(key, event["type"], event["data"]) for _, key, event in updates] == [
        (
            order["id"],
            "order.updated",
            {
                "order_id": order["id"],
                "store_id": "store-0",
                "status": "cancelled",
                "version": 2,
                "cancelled_at": updates[0][2]["data"]["cancelled_at"],
            },
        )
    ]
    assert updates[0][2]["data"]["cancelled_at"].startswith(cancelled["cancelled_at"][:19])


def test_history_is_filtered_paginated_and_scoped_to_the_store(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 100})
        ids = [
            buy(h.client, keys["store-0"], [{"sku": "A", "quantity": 1}]).json()["id"]
            for _ in range(5)
        ]
        buy(h.client, keys["store-1"], [{"sku": "A", "quantity": 1}])
        h.call("POST", f"/api/v1/orders/{ids[0]}/cancel", {"X-API-Key": keys["store-0"]})
        own = {"X-API-Key": keys["store-0"]}
        page = h.call("GET", "/api/v1/orders?limit=3", own)
        rest = h.call("GET", f"/api/v1/orders?limit=3&before={page['next_before']}", own)
        assert [o["id"] for o in page["items"] + rest["items"]] == ids[::-1]
        assert rest["next_before"] is None
        cancelled = h.call("GET", "/api/v1/orders?status=cancelled", own)["items"]
        assert [o["id"] for o in cancelled] == [ids[0]]
        refused = h.client.get("/api/v1/orders?store=store-1", headers=own)
        assert refused.status_code == 403
        assert len(h.call("GET", "/api/v1/orders?limit=200", h.admin())["items"]) == 6
        future = h.call("GET", "/api/v1/orders?since=2999-01-01T00:00:00Z", h.admin())
        assert future["items"] == []


def test_an_order_can_be_found_by_its_idempotency_key(database_url):
    with running_central(database_url) as h:
        keys = seed(h, {"A": 5})
        own = {"X-API-Key": keys["store-0"]}
        placed = buy(
            h.client, keys["store-0"], [{"sku": "A", "quantity": 1}], idem="till-42"
        ).json()
        found = h.call("GET", "/api/v1/orders?idempotency_key=till-42", own)["items"]
        assert [o["id"] for o in found] == [placed["id"]]
        assert h.call("GET", "/api/v1/orders?idempotency_key=never-used", own)["items"] == []
        other = h.call(
            "GET", "/api/v1/orders?idempotency_key=till-42", {"X-API-Key": keys["store-1"]}
        )["items"]
        assert other == [], "keys are scoped to their store"
