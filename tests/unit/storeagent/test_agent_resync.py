"""`POST /sync/resync`: the replica is rebuilt from the topics; local sales survive."""

import threading

from storeagent.http.app import create_app
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from tests.support.agent_fakes import FakeRecordSource, product_event, stock_event
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

FAST = LoopTuning(poll_timeout_ms=20, max_records=500, backoff_initial_s=0.01, backoff_max_s=0.05)


def make_loop(replica, source):
    return SyncLoop(
        replica,
        lambda: source,
        prefix="",
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=FAST,
    )


def stock(replica):
    rows = ReplicaReads(replica).stock_levels().values()
    return {row.sku: (row.quantity, row.stock_version) for row in rows}


def test_resync_rebuilds_the_same_state_from_the_topics(replica):
    fake = FakeRecordSource.with_wire_topics()
    fake.produce(*product_event(sku="A"))
    for version in (1, 2, 3):
        fake.produce(*stock_event(sku="A", quantity=10 - version, stock_version=version))
    loop = make_loop(replica, fake)
    loop.start(fake)
    loop.step(fake)
    before = stock(replica)
    replica.set_stock("GHOST", 1, 99, updated_at="2026-01-01T00:00:00+00:00")
    orders = LocalOrders(replica)
    with replica.transaction():
        orders.add_pending("r1", "k1", "f", [])
        orders.queue("r1", "central.unavailable", "central is down")

    loop.request_resync()
    loop.step(fake)

    assert replica.is_bootstrapped()
    assert stock(replica) == before, "rebuilt from the topics alone; the stray row is gone"
    assert orders.by_key("k1") is not None, "local sales survive a resync"


def test_reads_answer_503_until_the_rebuild_is_done(replica):
    fake = FakeRecordSource.with_wire_topics()
    fake.produce(*product_event(sku="A"))
    fake.produce(*stock_event(sku="A", quantity=4, stock_version=1))
    loop = make_loop(replica, fake)
    loop.start(fake)
    loop.step(fake)
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=[],
        resync=loop.request_resync,
        terminal_token=TERMINAL_TOKEN,
    )
    client = terminal_client(app, raise_server_exceptions=True)
    assert client.get("/stock/A").status_code == 200

    answer = client.post("/sync/resync", json={})
    assert answer.status_code == 202
    assert "503" in answer.json()["unavailable_meanwhile"]

    with replica.transaction():
        replica.clear_replicated_state()
    assert client.get("/stock/A").json()["error"]["code"] == "replica.not_ready"
    loop.step(fake)
    assert client.get("/stock/A").json()["quantity"] == 4
