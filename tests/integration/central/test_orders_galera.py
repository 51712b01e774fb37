"""Orders, stock and the relay's lease on a 3-node Galera cluster: three centrals, one per node
(real processes), clients spread over them. Row locks hold on one node only; what keeps the
books right across nodes is certification (a conflicting commit fails with 1213) and the unit
of work running the loser again."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import peewee
import pytest

from central.db import connect
from central.models import utcnow
from tests.support.galera import (
    admin_headers,
    central_processes,
    conflicts_lost,
    create_admin,
    galera_database,
    lease_contender,
    query,
)

SKUS = [f"SCARCE-{i}" for i in range(6)]
STORES = ["store-0", "store-1", "store-2"]
CLIENTS = 9  # three per node
ATTEMPTS_PER_CLIENT = 10
RETRIES_OF_503 = 5


@dataclass
class Cluster:
    database_urls: list[str]  # the test database on node 1, 2, 3
    central_urls: list[str]  # the central on node 1, 2, 3
    admin: dict[str, str]
    store_keys: dict[str, str]

    def server(self, node: int) -> str:
        return self.database_urls[node].rsplit("/", 1)[0] + "/"

    def sql(self, node: int, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """A read on node `node` (0-based) after every commit the cluster made before it."""
        server, name = self.database_urls[node].rsplit("/", 1)
        return query(server + "/", statement, *args, database=name)


@pytest.fixture(scope="module")
def cluster(galera_urls: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh database on the cluster and a central on each node, the stores made. Node 1's
    central migrates and holds the admin before the others start on theirs."""
    workdir = tmp_path_factory.mktemp("galera-centrals")
    with galera_database(galera_urls) as urls, ExitStack() as stack:
        create_admin(urls[0], workdir)
        for url in urls[1:]:  # their centrals find the schema made: no migration runs twice
            server, name = url.rsplit("/", 1)
            assert query(server + "/", "SELECT username FROM users", database=name) == [("admin",)]
        centrals = stack.enter_context(central_processes(urls, workdir))
        admin = admin_headers(centrals[0])
        keys = {}
        for store in STORES:
            made = httpx.post(
                f"{centrals[0]}/api/v1/stores", json={"id": store, "name": store}, headers=admin
            )
            assert made.status_code == 201, made.text
            keys[store] = made.json()["api_key"]
        yield Cluster(urls, centrals, admin, keys)


def add_products(cluster: Cluster, stock: dict[str, int]) -> None:
    with httpx.Client(base_url=cluster.central_urls[0], headers=cluster.admin, timeout=60) as c:
        category = c.post("/api/v1/categories", json={"name": f"c-{uuid.uuid4().hex[:8]}"})
        assert category.status_code == 201, category.text
        for sku, quantity in stock.items():
            product = {
                "sku": sku,
                "name": sku,
                "price": "2.00",
                "category_id": category.json()["id"],
            }
            assert c.post("/api/v1/products", json=product).status_code == 201
            assert c.put(f"/api/v1/stock/{sku}", json={"quantity": quantity}).status_code == 200


def test_every_connection_central_makes_to_a_galera_node_reads_causally_one_statement_a_query(
    galera_urls: list[str],
) -> None:
    with galera_database(galera_urls) as urls:
        db = connect(urls[1])
        try:
            seen, refused = set(), 0
            for _ in range(3):  # a pooled connection and two new ones
                with db.connection_context():
                    seen.add(db.execute_sql("SELECT @@SESSION.wsrep_sync_wait").fetchone()[0])
                    try:
                        db.execute_sql("SELECT 1; SELECT 2")
                    except peewee.ProgrammingError:
                        refused += 1  # the server takes one statement a query from it
                db.close_idle()
        finally:
            db.close_all()
    assert (seen, refused) == ({1}, 3)
    assert not getattr(db, "multi_statements", False)


def test_what_one_node_wrote_the_next_request_reads_on_another(cluster: Cluster) -> None:
    """Behind a load balancer two requests in a row land on different nodes: a product made
    through one is found at once through the next (Galera applies commits asynchronously; central
    reads causally)."""
    with ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=url, headers=cluster.admin, timeout=60))
            for url in cluster.central_urls
        ]
        category = clients[0].post("/api/v1/categories", json={"name": f"c-{uuid.uuid4().hex[:8]}"})
        assert category.status_code == 201, category.text
        missed = []
        for n in range(45):
            sku = f"SEEN-{n}-{uuid.uuid4().hex[:6]}".upper()
            product = {
                "sku": sku,
                "name": sku,
                "price": "1.00",
                "category_id": category.json()["id"],
            }
            made = clients[n % 3].post("/api/v1/products", json=product)
            assert made.status_code == 201, made.text
            stocked = clients[(n + 1) % 3].put(f"/api/v1/stock/{sku}", json={"quantity": 5})
            if stocked.status_code != 200:
                missed.append((n, stocked.status_code, stocked.text))
    assert missed == []


def buy(
    client: httpx.Client, api_key: str, lines: list[dict[str, Any]], key: str
) -> httpx.Response:
    """POST /orders, sent again with the same key after a retryable 503 (as a store agent
    does); the last answer."""
    headers = {"X-API-Key": api_key, "Idempotency-Key": key}
    for _ in range(RETRIES_OF_503):
        response = client.post("/api/v1/orders", json={"lines": lines}, headers=headers)
        if response.status_code != 503:
            return response
        assert response.json()["error"]["code"] == "database.write_conflict", response.text
        assert response.headers["Retry-After"] == "1"
    return response


def run_all(targets: list[Callable[[], None]]) -> None:
    """Run the targets in threads at once; re-raise the first failure."""
    failures: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # re-raised below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def books(cluster: Cluster, node: int, skus: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per SKU: (stock now, units its confirmed orders took, the ledger's sum), read on `node`."""
    marks = ", ".join(["%s"] * len(skus))
    final = dict(
        cluster.sql(node, f"SELECT sku, quantity FROM stock WHERE sku IN ({marks})", *skus)
    )
    sold = dict(
        cluster.sql(
            node,
            "SELECT l.sku, SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id"
            f" WHERE o.status = 'confirmed' AND l.sku IN ({marks}) GROUP BY l.sku",
            *skus,
        )
    )
    ledger = dict(
        cluster.sql(
            node,
            f"SELECT sku, SUM(delta) FROM stock_movements WHERE sku IN ({marks}) GROUP BY sku",
            *skus,
        )
    )
    return {sku: (final[sku], int(sold.get(sku, 0)), int(ledger[sku])) for sku in skus}


def test_clients_on_three_nodes_never_oversell(cluster: Cluster) -> None:
    initial = {sku: 6 + i for i, sku in enumerate(SKUS)}
    add_products(cluster, initial)
    outcomes: list[tuple[int, str, str]] = []

    def shopper(n: int) -> None:
        rng = random.Random(n)
        api_key = cluster.store_keys[STORES[n % 3]]
        with httpx.Client(base_url=cluster.central_urls[n % 3], timeout=60) as client:
            for _ in range(ATTEMPTS_PER_CLIENT):
                skus = rng.sample(SKUS, rng.randint(1, 3))
                lines = [{"sku": s, "quantity": rng.randint(1, 3)} for s in skus]
                key = uuid.uuid4().hex
                response = buy(client, api_key, lines, key)
                placed = response.json().get("id", "") if response.status_code == 201 else ""
                outcomes.append((response.status_code, key, placed))

    run_all([lambda n=n: shopper(n) for n in range(CLIENTS)])

    statuses = Counter(status for status, _, _ in outcomes)
    assert statuses[201] > 0 and statuses[409] > 0, statuses
    assert set(statuses) <= {201, 409, 503}, statuses
    assert len(outcomes) == CLIENTS * ATTEMPTS_PER_CLIENT
    for sku, (final, sold, ledger) in books(cluster, 1, SKUS).items():
        assert initial[sku] - sold == final >= 0, sku
        assert ledger == final, sku
    per_key = cluster.sql(
        2,
        "SELECT store_id, idempotency_key, COUNT(*) FROM orders GROUP BY 1, 2 HAVING COUNT(*) > 1",
    )
    assert per_key == [], "no key has two orders"
    placed = [order_id for status, _, order_id in outcomes if status == 201]
    assert len(set(placed)) == len(placed)
    # Outbox ids interleave across the nodes, but per SKU they follow the stock versions.
    versions: dict[str, list[int]] = defaultdict(list)
    for key, payload in cluster.sql(
        0, "SELECT `key`, payload FROM outbox WHERE topic = 'inventory-updated' ORDER BY id"
    ):
        if key in initial:
            versions[key].append(json.loads(payload)["data"]["stock_version"])
    for sku in SKUS:
        assert versions[sku] == list(range(1, len(versions[sku]) + 1)), sku


def test_one_key_sent_to_two_nodes_at_once_makes_one_order(cluster: Cluster) -> None:
    add_products(cluster, {"ONE": 1000})
    api_key, lines, rounds = cluster.store_keys["store-0"], [{"sku": "ONE", "quantity": 2}], 12
    answers: dict[str, list[httpx.Response]] = defaultdict(list)
    with ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=url, timeout=60))
            for url in cluster.central_urls[:2]
        ]
        for n in range(rounds):
            key, start = f"same-{n}-{uuid.uuid4().hex[:6]}", threading.Barrier(2)

            def send(
                client: httpx.Client, key: str = key, start: threading.Barrier = start
            ) -> None:
                start.wait(30)
                answers[key].append(buy(client, api_key, lines, key))

            run_all([lambda c=c: send(c) for c in clients])

    for key, pair in answers.items():
        assert [r.status_code for r in pair] == [201, 201], (key, [r.text for r in pair])
        assert pair[0].json()["id"] == pair[1].json()["id"], key
        assert sorted(r.headers.get("Idempotent-Replayed", "") for r in pair) == ["", "true"]
    final, sold, ledger = books(cluster, 2, ["ONE"])["ONE"]
    assert final == 1000 - 2 * rounds == 1000 - sold == ledger
    counts = cluster.sql(
        2,
        "SELECT COUNT(*) FROM orders WHERE idempotency_key LIKE 'same-%%' GROUP BY idempotency_key",
    )
    assert [n for (n,) in counts] == [1] * rounds


def test_relays_on_two_nodes_are_never_both_leaders(cluster: Cluster) -> None:
    rounds = 60
    spawn = multiprocessing.get_context("spawn")
    go, results = spawn.RawValue("i", -1), spawn.Queue()
    start = utcnow()
    conflicts_before = sum(conflicts_lost(cluster.server(k)) for k in (0, 1))
    contenders = [
        spawn.Process(
            target=lease_contender,
            args=(cluster.database_urls[k], rounds, start, go, results, k),
            daemon=True,
        )
        for k in (0, 1)
    ]
    for process in contenders:
        process.start()
    try:
        leaders = []
        for n in range(rounds):
            go.value = n
            reports = sorted(results.get(timeout=60) for _ in contenders)
            assert [r[1] for r in reports] == [n, n]
            assert [r[4] for r in reports] == ["", ""], f"round {n}: {reports}"
            state = (reports[0][2], reports[1][2])
            assert state != (True, True), f"round {n}: two leaders"
            (owner,) = cluster.sql(0, "SELECT owner FROM relay_lease")[0]
            assert state == (owner == reports[0][3], owner == reports[1][3]), f"round {n}"
            leaders.append(state)
        assert all(any(state) for state in leaders), "a leader after every round"
        conflicts = sum(conflicts_lost(cluster.server(k)) for k in (0, 1)) - conflicts_before
        assert conflicts > 0, "the relays never wrote the lease in the same instant"
    finally:
        for process in contenders:
            process.join(30)
            if process.is_alive():
                process.kill()
