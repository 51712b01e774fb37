"""Sales through real agents (real broker, real replica files) against a real central served
over HTTP: read-your-writes, and replicas converging to central under concurrent buys."""

import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from storeagent.app import bind_listener, bootstrap
from storeagent.settings import AgentSettings
from tests.support.agent_fakes import product_event, stock_event
from tests.support.central_harness import Harness, running_central, served
from tests.support.terminal import headers_for

SKUS = {"MILK-1L": 40, "BREAD": 25, "EGGS-12": 30}


@pytest.fixture
def central(tmp_path, kafka_cluster, topic_prefix) -> Iterator[tuple[Harness, str]]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    with running_central(url, kafka_cluster, topic_prefix) as h, served(h) as served_url:
        yield h, served_url


def seed(h: Harness, stores: list[str]) -> dict[str, str]:
    """The catalog and stock at central; each store's API key."""
    admin = h.admin()
    category = h.call("POST", "/api/v1/categories", admin, json={"name": "Daily"})
    for sku, quantity in SKUS.items():
        product = {"sku": sku, "name": sku, "price": "1.25", "category_id": category["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": quantity})
    return {
        s: h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
        for s in stores
    }


@contextmanager
def running_agent(
    store_id: str, api_key: str, central_url: str, kafka: KafkaCluster, prefix: str, db: Path
) -> Iterator[str]:
    """The agent as `storeagent run` builds it (sync loop + HTTP API) on a free port, logged
    in to `kafka` with its API key when the cluster is secure. Its terminal token is in
    terminal.token beside `db` (see `till`)."""
    settings = AgentSettings(
        store_id=store_id,
        central_url=central_url,
        kafka=kafka.bootstrap,
        kafka_security_protocol=kafka.protocol,
        kafka_ca_file=Path(kafka.ca_file) if kafka.ca_file else None,
        db_path=db,
        topic_prefix=prefix,
        api_key=api_key,
    )
    agent = bootstrap(settings)
    listener = bind_listener("127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    thread = threading.Thread(target=agent.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        eventually(lambda: _answers(f"{url}/readyz"), 60, "agent ready")
        yield url
    finally:
        agent.stop.set()
        thread.join(10)


def till(db: Path) -> dict[str, str]:
    """The headers a till sends with a sale: the token of the agent whose replica is `db`."""
    return headers_for(db.parent / "terminal.token")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def central_stock(h: Harness) -> dict[str, tuple[int, int]]:
    admin = h.admin()
    rows = [h.call("GET", f"/api/v1/stock/{sku}", admin) for sku in SKUS]
    return {row["sku"]: (row["quantity"], row["stock_version"]) for row in rows}


def agent_stock(url: str) -> dict[str, tuple[int, int]]:
    items = httpx.get(f"{url}/products", timeout=5).json()["items"]
    return {i["sku"]: (i["quantity"], i["stock_version"]) for i in items if i["sku"] in SKUS}


def test_stock_read_right_after_a_buy_shows_centrals_new_quantity_and_version(
    central, kafka_cluster, topic_prefix, unique_id, tmp_path
):
    h, url = central
    store = f"s-{unique_id}"
    keys = seed(h, [store])
    with running_agent(
        store, keys[store], url, kafka_cluster, topic_prefix, tmp_path / "a.db"
    ) as agent:
        eventually(
            lambda: agent_stock(agent).get("MILK-1L", (0, 0))[1] >= 1, what="MILK-1L replicated"
        )

        placed = httpx.post(
            f"{agent}/orders",
            json={"lines": [{"sku": "MILK-1L", "quantity": 2}]},
            headers=till(tmp_path / "a.db"),
            timeout=15,
        )
        stock = httpx.get(f"{agent}/stock/MILK-1L", timeout=5).json()

    assert placed.status_code == 201, placed.text
    line = placed.json()["order"]["lines"][0]
    assert line["stock"] == {"quantity": 38, "stock_version": 2}
    assert (stock["quantity"], stock["stock_version"]) == (38, 2)
    assert central_stock(h)["MILK-1L"] == (38, 2)


def shopper(
    agent: str,
    headers: dict[str, str],
    seed_: int,
    outcomes: Counter[int],
    sold: Counter[str],
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed_)
    with httpx.Client(base_url=agent, headers=headers, timeout=30) as client:
        for _ in range(12):
            skus = rng.sample(sorted(SKUS), rng.randint(1, 2))
            lines = [{"sku": s, "quantity": rng.randint(1, 4)} for s in skus]
            response = client.post(
                "/orders", json={"lines": lines}, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            assert response.status_code in (201, 409), response.text
            with lock:
                outcomes[response.status_code] += 1
                if response.status_code == 201:
                    sold.update({line["sku"]: line["quantity"] for line in lines})


def test_two_stores_buying_concurrently_converge_to_centrals_stock(
    central, kafka_cluster, topic_prefix, unique_id, tmp_path
):
    h, url = central
    stores = [f"a-{unique_id}", f"b-{unique_id}"]
    keys = seed(h, stores)
    outcomes: Counter[int] = Counter()
    sold: Counter[str] = Counter()
    lock = threading.Lock()
    with (
        running_agent(
            stores[0], keys[stores[0]], url, kafka_cluster, topic_prefix, tmp_path / "a.db"
        ) as a,
        running_agent(
            stores[1], keys[stores[1]], url, kafka_cluster, topic_prefix, tmp_path / "b.db"
        ) as b,
    ):
        for agent in (a, b):
            eventually(
                lambda agent=agent: len(agent_stock(agent)) == len(SKUS), what="catalog replicated"
            )
        headers = till(tmp_path / "a.db")  # both replicas are in tmp_path: one token file
        threads = [
            threading.Thread(target=shopper, args=(agent, headers, n, outcomes, sold, lock))
            for n, agent in enumerate([a, b, a, b])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started = time.monotonic()
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        final = central_stock(h)
        eventually(
            lambda: agent_stock(a) == final and agent_stock(b) == final,
            30,
            "replicas equal central",
        )
        caught_up_s = time.monotonic() - started

    assert outcomes[201] > 0 and sum(outcomes.values()) == 48, outcomes
    assert {sku: SKUS[sku] - final[sku][0] for sku in SKUS} == {sku: sold[sku] for sku in SKUS}
    print(f"outcomes={dict(outcomes)} final={final} converged_in={caught_up_s:.2f}s")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.usefixtures("wire_topics")
def test_unreachable_central_is_503_and_then_the_circuit_fails_fast(
    publish, kafka_cluster, topic_prefix, unique_id, tmp_path
):
    publish.send(product_event(sku="MILK-1L"), stock_event(sku="MILK-1L", quantity=40))
    central_url = f"http://127.0.0.1:{closed_port()}"
    db = tmp_path / "a.db"
    store_id, api_key = f"s-{unique_id}", f"sk-{unique_id}"
    kafka_cluster.provision_store(store_id, api_key, topic_prefix)  # as central would have
    with running_agent(store_id, api_key, central_url, kafka_cluster, topic_prefix, db) as agent:
        took = []
        for _ in range(4):
            started = time.monotonic()
            response = httpx.post(
                f"{agent}/orders",
                json={"lines": [{"sku": "MILK-1L", "quantity": 1}]},
                headers=till(db),
                timeout=15,
            )
            took.append(time.monotonic() - started)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "central.unavailable"
        status = httpx.get(f"{agent}/sync/status").json()["central"]
        sales = httpx.get(f"{agent}/orders").json()["items"]

    # three attempts failed and opened the circuit; the fourth made none (no fourth failure)
    assert (status["circuit"], status["consecutive_failures"]) == ("open", 3)
    assert [sale["status"] for sale in sales] == ["failed"] * 4
    print(f"503 after {[round(t, 3) for t in took]} s")
