"""`POST /sync/resync`: the replica is rebuilt from the topics beside the live one, which
serves meanwhile and takes the rebuilt rows in one step; local sales survive."""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.waiting import eventually
from storeagent.http.app import create_app
from storeagent.replica.db import META_LOG_BEHIND, Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from storeagent.sync.rebuild import rebuild_path
from tests.support.agent_fakes import FakeRecordSource, HeldConnections, product_event, stock_event
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

FAST = LoopTuning(poll_timeout_ms=20, max_records=500, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def fake() -> FakeRecordSource:
    fake = FakeRecordSource.with_wire_topics()
    fake.produce(*product_event(sku="A"))
    for version in (1, 2, 3):
        fake.produce(*stock_event(sku="A", quantity=10 - version, stock_version=version))
    return fake


@pytest.fixture
def running(replica: Replica, fake: FakeRecordSource) -> Iterator[tuple[SyncLoop, HeldConnections]]:
    connections = HeldConnections(fake)
    loop = SyncLoop(
        replica,
        connections,
        prefix="",
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=FAST,
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    eventually(lambda: stock(replica).get("A") == (7, 3), 5, "caught up")
    yield loop, connections
    loop.stop.set()
    thread.join(5)
    assert not thread.is_alive()


def stock(replica: Replica) -> dict[str, tuple[int, int]]:
    rows = ReplicaReads(replica).stock_levels().values()
    return {row.sku: (row.quantity, row.stock_version) for row in rows}


def rebuild_state(loop: SyncLoop) -> object:
    return (loop.progress.rebuild() or {}).get("state")


def test_resync_rebuilds_the_same_state_from_the_topics_and_keeps_local_sales(replica, running):
    loop, _ = running
    before = stock(replica)
    with replica.transaction():
        replica.set_stock("GHOST", 1, 99, updated_at="2026-01-01T00:00:00+00:00")
        orders = LocalOrders(replica)
        orders.add_pending("r1", "k1", "f", [])
        orders.queue("r1", "central.unavailable", "central is down")

    requested = loop.request_resync()

    eventually(lambda: rebuild_state(loop) == "adopted", 5, "rebuild adopted")
    assert stock(replica) == before, "rebuilt from the topics alone; the stray row is gone"
    assert orders.by_key("k1") is not None, "local sales survive a resync"
    assert replica.is_bootstrapped()
    shown = loop.progress.rebuild() or {}
    assert str(shown["started_at"]) >= requested.isoformat()
    assert shown["applied"] == 4
    assert not rebuild_path(Path(replica.db.database)).exists(), "the rebuilt file is gone"


def test_reads_keep_answering_from_the_live_replica_until_the_rebuild_replaces_it(
    replica, fake, running
):
    loop, connections = running
    app = create_app(
        replica,
        loop.progress,
        store_id="s1",
        topics=[],
        resync=loop.request_resync,
        terminal_token=TERMINAL_TOKEN,
    )
    client = terminal_client(app, raise_server_exceptions=True)
    connections.held.set()

    answer = client.post("/sync/resync", json={})
    eventually(lambda: rebuild_state(loop) == "running", 5, "rebuild running")
    fake.produce(*stock_event(sku="A", quantity=2, stock_version=4))  # the live loop applies

    assert answer.status_code == 202
    assert "goes on serving" in answer.json()["meanwhile"]
    assert answer.json()["requested_at"]
    eventually(lambda: client.get("/stock/A").json().get("quantity") == 2, 5, "live applies")
    assert client.get("/sync/status").json()["rebuild"]["state"] == "running"

    connections.held.clear()

    eventually(lambda: rebuild_state(loop) == "adopted", 5, "rebuild adopted")
    assert client.get("/stock/A").json()["quantity"] == 2  # read again after the rebuild
    assert client.get("/sync/status").json()["rebuild"]["state"] == "adopted"


def test_a_resync_asked_while_one_runs_starts_another_once_it_is_adopted(replica, running):
    loop, connections = running
    connections.held.set()
    loop.request_resync()
    eventually(lambda: rebuild_state(loop) == "running", 5, "first rebuild running")
    first = (loop.progress.rebuild() or {})["started_at"]

    second_asked = loop.request_resync()
    connections.held.clear()

    def second_adopted() -> bool:
        shown = loop.progress.rebuild() or {}
        return shown.get("state") == "adopted" and shown["started_at"] >= second_asked.isoformat()

    eventually(second_adopted, 5, "a second rebuild, started after the second request")
    assert (loop.progress.rebuild() or {})["started_at"] != first


def test_a_rebuild_clears_a_log_found_behind_the_replica(replica, fake, running):
    loop, _ = running
    with replica.transaction():
        replica.set_meta({META_LOG_BEHIND: "noted before"})
    loop.progress.log_behind("noted before")

    loop.request_resync()

    eventually(lambda: rebuild_state(loop) == "adopted", 5, "rebuild adopted")
    assert loop.progress.problems() == []
    assert replica.get_meta(META_LOG_BEHIND) == ""
