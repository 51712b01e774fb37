"""The replica file is the store's own and stays under watch, with real replica files and
fakes for Kafka and central: a replica of another store or cluster is refused, an older one
adopts its store, another store's sales are never sent, a deleted or replaced file stops
queueing and shows in /readyz and /sync/status, a damaged one stops the agent at start, and
an agent never starts silently without the queued sales central last heard of."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from harness.waiting import eventually
from invwire.errors.agent import (
    OfflineQueueLost,
    ReplicaDamaged,
    ReplicaOfAnotherCluster,
    ReplicaOfAnotherStore,
)
from invwire.orders import Line
from storeagent.app import Agent, Sales, bind_listener, bootstrap, build_sales
from storeagent.http.app import create_app
from storeagent.replica.db import META_BOOTSTRAPPED, Replica, open_replica
from storeagent.replica.identity import (
    META_CLUSTER_ID,
    META_TOPIC_PREFIX,
    claim_cluster,
    claim_store,
    read_identity,
)
from storeagent.replica.integrity import ReplicaFileWatch, check_intact
from storeagent.replica.local_orders import LocalOrders
from storeagent.sales.desk import PlaceOrder
from storeagent.sales.lost_queue import QueueCheck, lost_sales
from storeagent.sales.offline_policy import OfflinePolicy
from storeagent.sales.schedule import ReplaySchedule
from storeagent.settings import AgentSettings
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.upstream.client import CentralUnavailable
from storeagent.upstream.last_heard import LastHeardUnavailable
from storeagent.upstream.resilience import ResilientCentral
from tests.support.agent_fakes import (
    FakeCentral,
    FakeLastHeard,
    FakeRecordSource,
    FixedClock,
    RecordingHeartbeat,
    heard_queued,
    product_event,
    stock_event,
)
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK = "MILK-1L"
OFFLINE_ON = OfflinePolicy(enabled=True, max_units_per_order=5, max_queued_units=20)


def stocked(replica: Replica) -> Replica:
    events = [product_event(sku=MILK), stock_event(sku=MILK, quantity=40, stock_version=7)]
    records = [Record(t, 0, n, key, value) for n, (t, key, value) in enumerate(events)]
    apply_batch(replica, records, prefix="", now=FixedClock()())
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    return replica


def queue_sale(replica: Replica, key: str, *, store_id: str | None) -> str:
    """A sale queued offline in `replica`, recorded under `store_id`; its local_ref."""
    orders = LocalOrders(replica, store_id=store_id)
    with replica.transaction():
        orders.add_pending(f"ref-{key}", key, "print", [Line(MILK, 1)], instance_id="gone")
        orders.queue(f"ref-{key}", "central.unavailable", "down")
    return f"ref-{key}"


def sales_of(replica: Replica, central: FakeCentral, clock, **kw) -> Sales:
    schedule = ReplaySchedule(clock=lambda: 1000.0, jitter=lambda top: top)
    resilient = ResilientCentral(central, sleep=lambda _: None, jitter=lambda top: top)
    return build_sales(replica, resilient, clock=clock, schedule=schedule, **kw)


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    return fake


def settings_for(db: Path, store_id: str = "store-a", **overrides) -> AgentSettings:
    return AgentSettings(
        **{
            "store_id": store_id,
            "db_path": db,
            "kafka_security_protocol": "PLAINTEXT",
            "heartbeat_seconds": 0,
            **overrides,
        }
    )


# --- identity ------------------------------------------------------------------------------


def test_a_new_replica_records_its_store_and_an_id_of_its_own(replica):
    claim = claim_store(replica, "store-a")

    identity = read_identity(replica)
    assert (identity.store_id, identity.replica_id) == ("store-a", claim.identity.replica_id)
    assert len(str(identity.replica_id)) == 32
    assert claim.adopted


def test_a_replica_of_another_store_is_refused_naming_both_and_left_unchanged(replica):
    claim_store(replica, "store-b")
    before = replica.meta()

    with pytest.raises(ReplicaOfAnotherStore) as refused:
        claim_store(replica, "store-a")

    assert refused.value.code == "replica.other_store"
    assert "store-b" in refused.value.message and "store-a" in refused.value.message
    assert refused.value.details["replica_store_id"] == "store-b"
    assert replica.meta() == before


def test_an_older_replica_adopts_the_store_and_its_sales_recorded_without_one(replica):
    queue_sale(replica, "old-1", store_id=None)  # recorded before store ids were

    claim = claim_store(replica, "store-a")

    [sale] = LocalOrders(replica).newest_first(None, 10)
    assert (claim.adopted, claim.adopted_sales, sale.store_id) == (True, 1, "store-a")
    assert not claim_store(replica, "store-a").adopted  # a second start changes nothing


def test_a_replica_of_another_cluster_or_topic_prefix_is_refused(replica):
    assert claim_cluster(replica, "cluster-1", "prod.")

    with pytest.raises(ReplicaOfAnotherCluster) as other_cluster:
        claim_cluster(replica, "cluster-2", "prod.")
    with pytest.raises(ReplicaOfAnotherCluster):
        claim_cluster(replica, "cluster-1", "test.")

    assert "cluster-1" in other_cluster.value.message
    assert "cluster-2" in other_cluster.value.message
    assert not claim_cluster(replica, "cluster-1", "prod.")
    assert not claim_cluster(replica, None, "prod.")  # a broker that does not say: no verdict
    meta = replica.meta()
    assert (meta[META_CLUSTER_ID], meta[META_TOPIC_PREFIX]) == ("cluster-1", "prod.")


def test_the_agent_refuses_another_stores_replica_at_start_and_closes_it(tmp_path):
    db = tmp_path / "replica.db"
    other = open_replica(db)
    claim_store(other, "store-b")
    other.close()

    with pytest.raises(ReplicaOfAnotherStore):
        bootstrap(settings_for(db), connect=FakeRecordSource.with_wire_topics)

    reopened = open_replica(db)
    assert read_identity(reopened).store_id == "store-b"
    reopened.close()


def serving(agent: Agent) -> tuple[threading.Thread, list[object]]:
    """`agent.serve()` in a thread; the list gets its exit code, or the error it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(agent.serve(bind_listener("127.0.0.1", 0)))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def stop(agent: Agent, thread: threading.Thread) -> None:
    agent.stop.set()
    thread.join(10)


def test_the_agent_stops_with_a_refusal_when_kafka_is_another_cluster(tmp_path):
    db = tmp_path / "replica.db"
    built = open_replica(db)
    claim_store(built, "store-a")
    claim_cluster(built, "cluster-a", "")
    built.close()
    source = FakeRecordSource.with_wire_topics()
    source.cluster = "cluster-b"

    agent = bootstrap(settings_for(db), connect=lambda: source)
    thread, outcome = serving(agent)
    eventually(lambda: outcome, 10, "the agent stopped")
    stop(agent, thread)

    [refusal] = outcome
    assert isinstance(refusal, ReplicaOfAnotherCluster)
    assert refusal.details["replica_cluster_id"] == "cluster-a"
    assert refusal.details["cluster_id"] == "cluster-b"
    assert source.closed


def test_the_first_connection_to_kafka_records_the_cluster_and_the_prefix(tmp_path):
    db = tmp_path / "replica.db"
    source = FakeRecordSource.with_wire_topics()
    agent = bootstrap(settings_for(db), connect=lambda: source)
    thread, outcome = serving(agent)
    try:
        eventually(lambda: read_identity(agent_replica(db)).cluster_id, 10, "cluster recorded")
    finally:
        stop(agent, thread)

    identity = read_identity(agent_replica(db))
    assert (identity.store_id, identity.cluster_id, identity.topic_prefix) == (
        "store-a",
        "fake-cluster",
        "",
    )
    assert outcome == [0]


def agent_replica(db: Path) -> Replica:
    """A handle of our own on an agent's replica file (each call a new one)."""
    handle = open_replica(db)
    handles.append(handle)
    return handle


handles: list[Replica] = []


@pytest.fixture(autouse=True)
def _close_handles() -> Iterator[None]:
    yield
    while handles:
        handles.pop().close()


# --- another store's sales in the replica ----------------------------------------------------


def test_sales_of_another_store_are_never_sent_and_are_reported(replica, central, clock):
    stocked(replica)
    claim_store(replica, "store-a")
    queue_sale(replica, "b-1", store_id="store-b")
    mine = queue_sale(replica, "a-1", store_id="store-a")
    sales = sales_of(replica, central, clock, store_id="store-a")

    while sales.replayer.step():
        pass
    client = till(sales, replica)
    again = client.post(
        "/orders",
        json={"lines": [{"sku": MILK, "quantity": 1}]},
        headers={"Idempotency-Key": "b-1"},
    )
    status = client.get("/sync/status").json()

    assert [call.idempotency_key for call in central.calls] == ["a-1"]
    assert LocalOrders(replica).by_key("a-1").local_ref == mine
    assert LocalOrders(replica).by_key("b-1").status == "queued"
    assert sales.desk.foreign_sales() == {"store-b": 1}
    assert status["offline_queue"]["depth"] == 0
    [problem] = [p for p in status["problems"] if p["code"] == "replica.other_store_sales"]
    assert "1 of store store-b" in problem["message"]
    assert (again.status_code, again.json()["error"]["code"]) == (409, "order.other_store")
    assert central.calls[-1].idempotency_key == "a-1"


def till(sales: Sales, replica: Replica, watch: ReplicaFileWatch | None = None) -> TestClient:
    app = create_app(
        replica,
        SyncProgress(),
        store_id="store-a",
        topics=topic_names(""),
        orders=sales.desk,
        terminal_token=TERMINAL_TOKEN,
        replica_file=watch,
    )
    return terminal_client(app)


# --- the replica's file under watch ----------------------------------------------------------


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "replica.db"


@pytest.fixture
def watched(replica, db) -> ReplicaFileWatch:
    stocked(replica)
    return ReplicaFileWatch.of(db)


def sell(client: TestClient, key: str) -> httpx.Response:
    body = {"lines": [{"sku": MILK, "quantity": 1}]}
    return client.post("/orders", json=body, headers={"Idempotency-Key": key})


def test_a_deleted_replica_file_stops_queueing(replica, db, watched, central, clock, caplog):
    sales = sales_of(replica, central, clock, policy=OFFLINE_ON, replica_file=watched)
    central.go_down()
    queued = sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}], "before"))

    os.unlink(db)
    with pytest.raises(CentralUnavailable) as refused:
        sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 1}], "after"))

    assert queued.http_status == 202
    assert refused.value.details["offline"]["code"] == "replica.missing"
    assert LocalOrders(replica).by_key("after").status == "failed"
    assert sales.desk.offline_queue_depth() == 1
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["replica.missing"]


def test_a_till_selling_after_the_file_was_deleted_gets_503_never_202(
    replica, db, watched, central, clock
):
    sales = sales_of(replica, central, clock, policy=OFFLINE_ON, replica_file=watched)
    client = till(sales, replica, watched)
    central.go_down()
    os.unlink(db)

    answers = [sell(client, f"after-{n}") for n in range(4)]

    # A worker thread with a connection from before writes to the deleted file and is refused
    # the queue; one connecting now finds no file: nothing saved, nothing sent.
    refusals = {(a.status_code, a.json()["error"]["code"]) for a in answers}
    assert refusals <= {(503, "central.unavailable"), (503, "database.unavailable")}
    assert sales.desk.offline_queue_depth() == 0
    assert not db.exists()  # no empty replica was made at its path


def test_readyz_and_sync_status_say_the_replica_file_is_missing(
    replica, db, watched, central, clock
):
    sales = sales_of(replica, central, clock, replica_file=watched)
    client = till(sales, replica, watched)
    before = client.get("/readyz").json()["error"]

    os.unlink(db)
    ready = client.get("/readyz")
    statuses = [client.get("/sync/status") for _ in range(4)]

    assert (before["code"], before["details"]["checks"]["replica_file"]) == (
        "replica.not_ready",
        True,
    )
    error = ready.json()["error"]
    assert (ready.status_code, error["code"]) == (503, "replica.missing")
    assert error["details"]["checks"]["replica_file"] is False
    assert error["details"]["path"] == str(db)
    assert all(says_replica_missing(status) for status in statuses)


def says_replica_missing(response: httpx.Response) -> bool:
    """/sync/status from a worker thread with a connection from before: not ready, and the
    problem listed; from one connecting now (no file to read): 503 `replica.missing`."""
    body = response.json()
    if response.status_code == 503:
        return bool(body["error"]["code"] == "replica.missing")
    codes = [problem["code"] for problem in body["problems"]]
    return body["ready"] is False and codes == ["replica.missing"]


def test_a_replaced_replica_file_is_told_from_the_opened_one_and_its_return_is_noticed(
    replica, db, watched, caplog
):
    caplog.set_level(logging.INFO, logger="storeagent.replica")
    aside = db.with_name("aside.db")
    os.rename(db, aside)
    db.write_bytes(aside.read_bytes())  # same content, another file

    replaced = watched.problem()
    os.replace(aside, db)  # the opened file is back at its path

    assert replaced is not None and replaced.code == "replica.replaced"
    assert replaced.details["opened"]["inode"] != replaced.details["now"]["inode"]
    assert watched.problem() is None
    assert [r.getMessage() for r in caplog.records] == ["replica.replaced", "replica.file_back"]


# --- a damaged replica -----------------------------------------------------------------------


def replica_with_sales(db: Path, count: int = 3) -> None:
    built = stocked(open_replica(db))
    claim_store(built, "store-a")
    for n in range(count):
        queue_sale(built, f"sale-{n}", store_id="store-a")
    built.close()  # the last connection: the write-ahead log is checkpointed into the file


def page_of(db: Path, table: str) -> int:
    connection = sqlite3.connect(db)
    try:
        [(page,)] = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchall()
    finally:
        connection.close()
    return int(page)


def test_a_truncated_replica_is_refused_as_damaged_with_the_way_out(tmp_path):
    db = tmp_path / "replica.db"
    replica_with_sales(db)
    os.truncate(db, os.path.getsize(db) - 2 * 4096)

    with pytest.raises(ReplicaDamaged) as damaged:
        open_replica(db)

    assert damaged.value.code == "replica.damaged"
    assert "malformed" in damaged.value.message
    assert f"storeagent salvage --db {db}" in damaged.value.message


def test_damage_the_schema_does_not_show_is_found_at_start(tmp_path):
    db = tmp_path / "replica.db"
    replica_with_sales(db)
    page = page_of(db, "local_orders")
    with db.open("r+b") as file:  # the sales' page: its header overwritten
        file.seek((page - 1) * 4096)
        file.write(b"\xff" * 64)
    opened = open_replica(db)  # the schema and meta pages are sound

    with pytest.raises(ReplicaDamaged):
        check_intact(opened)
    opened.close()
    with pytest.raises(ReplicaDamaged):
        bootstrap(settings_for(db), connect=FakeRecordSource.with_wire_topics)


# --- never start silently empty --------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "queued", "lost"),
    [
        (heard_queued(0), 0, 0),
        (heard_queued(6, replica_id="this-replica"), 0, 0),  # this file: sent since, or here
        (heard_queued(6, replica_id="old-replica"), 0, 6),
        (heard_queued(6, replica_id="old-replica"), 6, 6),  # other sales than those
        (heard_queued(6, replica_id=None), 6, 0),  # an agent from before replica ids
        (heard_queued(6, replica_id=None), 2, 4),
    ],
)
def test_the_sales_central_heard_queued_that_this_replica_cannot_hold(heard, queued, lost):
    assert lost_sales(heard, replica_id="this-replica", queued=queued) == lost


def test_a_lost_queue_is_refused_unless_accepted(tmp_path, caplog):
    source = FakeLastHeard(heard_queued(6, replica_id="old-replica"))

    def check(accept: bool) -> QueueCheck:
        return QueueCheck(
            source, lambda: 0, replica_id="new-replica", path=tmp_path, accept_loss=accept
        )

    with pytest.raises(OfflineQueueLost) as refused:
        check(False).at_start()
    accepted = check(True)
    accepted.at_start()

    assert refused.value.code == "replica.queue_lost"
    assert "old-replica" in refused.value.message and "new-replica" in refused.value.message
    assert "--accept-lost-queue" in refused.value.message
    assert accepted.passed
    assert [r.getMessage() for r in caplog.records] == ["replica.queue_loss_accepted"]


def test_a_central_that_cannot_be_asked_leaves_the_check_to_the_heartbeats(tmp_path, caplog):
    source = FakeLastHeard(heard_queued(0), down=True)
    check = QueueCheck(source, lambda: 0, replica_id="r", path=tmp_path)

    check.at_start()
    with pytest.raises(LastHeardUnavailable):
        check.check()
    source.down = False
    check.check()
    check.check()

    assert check.passed
    assert source.asked == 3  # never again once passed
    assert [r.getMessage() for r in caplog.records] == ["replica.queue_unchecked"]


def test_the_agent_refuses_to_start_on_a_new_replica_when_central_heard_queued_sales(
    tmp_path, central
):
    db = tmp_path / "replica.db"
    heard = FakeLastHeard(heard_queued(6, replica_id="deleted-replica"))

    with pytest.raises(OfflineQueueLost) as refused:
        bootstrap(settings_for(db), connect=FakeRecordSource.with_wire_topics, central=central,
                  last_heard=heard)  # fmt: skip
    agent = bootstrap(
        settings_for(db, accept_lost_queue=True),
        connect=FakeRecordSource.with_wire_topics,
        central=central,
        last_heard=heard,
    )
    agent.close()

    assert refused.value.details["central_offline_queue"] == 6


def test_a_replica_central_heard_from_starts_whatever_its_queue(tmp_path, central):
    db = tmp_path / "replica.db"
    replica_with_sales(db, count=0)
    replica_id = read_identity(agent_replica(db)).replica_id
    heard = FakeLastHeard(heard_queued(6, replica_id=replica_id))

    agent = bootstrap(
        settings_for(db), connect=FakeRecordSource.with_wire_topics, central=central,
        last_heard=heard,
    )  # fmt: skip
    agent.close()

    assert heard.asked == 1


def test_no_heartbeat_goes_out_before_the_queue_check_and_a_loss_found_then_stops_the_agent(
    tmp_path, central
):
    db = tmp_path / "replica.db"
    heard = FakeLastHeard(heard_queued(6, replica_id="deleted-replica"), down=True)
    beats = RecordingHeartbeat()
    agent = bootstrap(
        settings_for(db, heartbeat_seconds=0.02),
        connect=FakeRecordSource.with_wire_topics,
        central=central,
        heartbeat=beats,
        last_heard=heard,
    )

    thread, outcome = serving(agent)
    eventually(lambda: heard.asked >= 3, 10, "heartbeats asking central first")
    heard.down = False
    eventually(lambda: outcome, 10, "the agent stopped")
    stop(agent, thread)

    assert beats.reports == []
    [refusal] = outcome
    assert isinstance(refusal, OfflineQueueLost)


def test_heartbeats_carry_the_replica_id_once_the_check_passed(tmp_path, central):
    db = tmp_path / "replica.db"
    beats = RecordingHeartbeat()
    agent = bootstrap(
        settings_for(db, heartbeat_seconds=0.02),
        connect=FakeRecordSource.with_wire_topics,
        central=central,
        heartbeat=beats,
        last_heard=FakeLastHeard(None),  # a central that keeps no record: nothing to compare
    )
    thread, _ = serving(agent)
    try:
        eventually(lambda: beats.reports, 10, "a heartbeat")
    finally:
        stop(agent, thread)

    replica_id = read_identity(agent_replica(db)).replica_id
    assert beats.reports[0]["replica_id"] == replica_id


def test_the_store_id_is_written_on_new_sales(replica, central, clock):
    stocked(replica)
    sales = sales_of(replica, central, clock, store_id="store-a")

    assert sell(till(sales, replica), "k-1").status_code == 201

    assert LocalOrders(replica).by_key("k-1").store_id == "store-a"
