"""Central's epochs at the agent: changes ordered by (epoch, version), a malformed epoch header
dead-lettered, and a newer epoch (central restored from a backup) rebuilding the replica from
that epoch's records alone while the live replica keeps serving the till."""

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.waiting import eventually
from storeagent.http.app import create_app
from storeagent.replica.db import SCHEMA_VERSION, Replica, open_replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sales.shelf import Shelf
from storeagent.sync.apply import apply_batch
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.upstream.client import confirmed, interpret
from tests.support.agent_fakes import (
    FakeRecordSource,
    FixedClock,
    HeldConnections,
    category_event,
    epoch_headers,
    product_event,
    stock_event,
)
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

FAST = LoopTuning(poll_timeout_ms=20, max_records=500, backoff_initial_s=0.01, backoff_max_s=0.05)
Headers = tuple[tuple[str, bytes | None], ...]


def apply(replica: Replica, *records: tuple[tuple[str, bytes, bytes], Headers]):
    batch = [
        Record(topic, 0, offset, key, value, headers)
        for offset, ((topic, key, value), headers) in enumerate(records)
    ]
    return apply_batch(replica, batch, prefix="", now=FixedClock()())


def in_epoch(
    epoch: int, event: tuple[str, bytes, bytes]
) -> tuple[tuple[str, bytes, bytes], Headers]:
    return event, epoch_headers(epoch)


def row(replica: Replica, table: str, key_column: str, key: object) -> dict[str, object]:
    cursor = replica.db.execute_sql(f"SELECT * FROM {table} WHERE {key_column} = ?", (key,))
    names = [column[0] for column in cursor.description]
    found = cursor.fetchone()
    return {} if found is None else dict(zip(names, found, strict=True))


@dataclass(frozen=True)
class Kind:
    table: str
    key_column: str
    key: object
    version_column: str
    value_column: str

    def event(self, version: int, value: str) -> tuple[str, bytes, bytes]:
        if self.table == "categories":
            return category_event(id=self.key, name=value, version=version)
        if self.table == "products":
            return product_event(sku=self.key, name=value, version=version)
        return stock_event(sku=self.key, quantity=int(value), stock_version=version)


KINDS = [
    Kind("categories", "id", 3, "version", "name"),
    Kind("products", "sku", "MILK-1L", "version", "name"),
    Kind("stock", "sku", "MILK-1L", "stock_version", "quantity"),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.table)
def test_a_newer_epoch_wins_with_a_lower_version(replica, kind):
    apply(replica, in_epoch(1, kind.event(version=40, value="10")))

    result = apply(replica, in_epoch(2, kind.event(version=3, value="20")))

    stored = row(replica, kind.table, kind.key_column, kind.key)
    assert (stored["epoch"], stored[kind.version_column]) == (2, 3)
    assert str(stored[kind.value_column]) == "20"
    assert (result.applied, result.stale) == (1, 0)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.table)
def test_an_older_epoch_loses_with_a_higher_version(replica, kind):
    apply(replica, in_epoch(2, kind.event(version=3, value="20")))

    result = apply(replica, in_epoch(1, kind.event(version=99, value="10")))

    stored = row(replica, kind.table, kind.key_column, kind.key)
    assert (stored["epoch"], stored[kind.version_column], str(stored[kind.value_column])) == (
        2,
        3,
        "20",
    )
    assert (result.applied, result.stale) == (0, 1)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.table)
def test_within_one_epoch_the_version_decides(replica, kind):
    apply(replica, in_epoch(2, kind.event(version=5, value="20")))

    result = apply(
        replica,
        in_epoch(2, kind.event(version=4, value="30")),
        in_epoch(2, kind.event(version=6, value="40")),
    )

    stored = row(replica, kind.table, kind.key_column, kind.key)
    assert (stored[kind.version_column], str(stored[kind.value_column])) == (6, "40")
    assert (result.applied, result.stale) == (1, 1)


def test_a_record_without_the_header_is_epoch_0_and_any_epoch_outranks_it(replica):
    apply(replica, (stock_event(sku="A", quantity=5, stock_version=50), ()))
    assert row(replica, "stock", "sku", "A")["epoch"] == 0

    apply(replica, in_epoch(1, stock_event(sku="A", quantity=7, stock_version=2)))

    assert (row(replica, "stock", "sku", "A")["quantity"], replica.epoch()) == (7, 1)


@pytest.mark.parametrize("value", [b"two", b"-1", b"", b"99999999999999999999", None], ids=repr)
def test_a_malformed_epoch_header_is_dead_lettered_and_the_batch_goes_on(replica, value):
    bad = (("invctl-epoch", value),)

    result = apply(
        replica,
        (stock_event(sku="A", quantity=1, stock_version=9), bad),
        in_epoch(1, stock_event(sku="B", quantity=2, stock_version=1)),
    )

    assert (result.applied, result.dead_lettered) == (1, 1)
    assert dict(result.dead_letter_reasons) == {"header.invalid": 1}
    assert row(replica, "stock", "sku", "A") == {}
    assert row(replica, "stock", "sku", "B")["quantity"] == 2
    [reason] = [r[0] for r in replica.db.execute_sql("SELECT reason FROM dead_letters")]
    assert reason == "header.invalid"


def test_records_of_an_older_epoch_than_the_replicas_are_stale_even_for_a_new_row(replica):
    apply(replica, in_epoch(2, product_event(sku="KEPT")))

    result = apply(replica, in_epoch(1, product_event(sku="GONE")), (product_event(sku="OLD"), ()))

    assert (result.applied, result.stale) == (0, 2)
    assert "GONE" not in ReplicaReads(replica).products()
    assert "OLD" not in ReplicaReads(replica).products()
    assert replica.epoch() == 2


def test_the_newest_epoch_is_kept_and_reported_once_it_grows(replica):
    first = apply(replica, in_epoch(1, product_event(sku="A")))
    same = apply(replica, in_epoch(1, product_event(sku="B")))
    newer = apply(replica, in_epoch(3, product_event(sku="C")))

    assert (first.new_epoch, same.new_epoch, newer.new_epoch) == ((0, 1), None, (1, 3))
    assert replica.epoch() == 3


def test_only_rows_of_an_older_incarnation_need_a_rebuild(replica):
    apply(replica, (product_event(sku="A"), ()), in_epoch(1, product_event(sku="B")))
    assert not replica.holds_older_rows(), "epochs 0 and 1 are the first incarnation"

    apply(replica, in_epoch(2, product_event(sku="A", version=9)))
    assert replica.holds_older_rows(), "B is still of the first incarnation"

    apply(replica, in_epoch(2, product_event(sku="B", version=9)))
    assert not replica.holds_older_rows()


def test_a_schema_6_replica_keeps_its_rows_at_epoch_0(tmp_path):
    path = tmp_path / "old.db"
    old = open_replica(path)
    apply(old, (category_event(), ()), (product_event(), ()), (stock_event(stock_version=30), ()))
    for table in ("categories", "products", "stock"):
        old.db.execute_sql(f"ALTER TABLE {table} DROP COLUMN epoch")
    old.set_meta({"schema_version": "6"})
    old.close()

    replica = open_replica(path)

    assert replica.get_meta("schema_version") == str(SCHEMA_VERSION) == "9"
    assert row(replica, "categories", "id", 3)["epoch"] == 0
    assert row(replica, "products", "sku", "MILK-1L")["epoch"] == 0
    assert (row(replica, "stock", "sku", "MILK-1L")["quantity"]) == 40
    apply(replica, in_epoch(1, stock_event(quantity=12, stock_version=2)))
    assert row(replica, "stock", "sku", "MILK-1L")["quantity"] == 12, "epoch 1 outranks 0"
    replica.close()


# --- central's answer to a sale ------------------------------------------------------------

ORDER = {
    "id": "o-1",
    "created_at": "2026-11-29T10:00:00+00:00",
    "lines": [{"sku": "A", "quantity": 1, "stock": {"quantity": 4, "stock_version": 2}}],
}


@pytest.mark.parametrize(
    ("headers", "epoch"),
    [
        ({"Invctl-Epoch": "3"}, 3),
        ({"invctl-epoch": " 4 "}, 4),
        ({}, None),
        ({"Invctl-Epoch": "x"}, None),
    ],
)
def test_centrals_answer_carries_its_epoch(headers, epoch):
    answer = interpret(httpx.Response(201, json=ORDER, headers=headers))

    assert answer.epoch == epoch


def test_a_sales_stock_is_written_at_the_epoch_central_answered_with(replica):
    apply(replica, in_epoch(1, stock_event(sku="A", quantity=9, stock_version=70)))

    Shelf(replica, ReplicaReads(replica)).restock(confirmed(ORDER, epoch=2))

    assert (
        row(replica, "stock", "sku", "A")["quantity"],
        row(replica, "stock", "sku", "A")["epoch"],
    ) == (4, 2)


def test_without_an_epoch_in_the_answer_a_sales_stock_takes_the_replicas(replica):
    apply(replica, in_epoch(2, stock_event(sku="A", quantity=9, stock_version=1)))

    Shelf(replica, ReplicaReads(replica)).restock(confirmed(ORDER))

    stored = row(replica, "stock", "sku", "A")
    assert (stored["quantity"], stored["epoch"], stored["stock_version"]) == (4, 2, 2)


# --- the Kafka adapter ---------------------------------------------------------------------


class OneBatchConsumer:
    """Stands in for kafka-python's KafkaConsumer: the first poll() answers one batch of
    records, the others nothing."""

    def __init__(self, records: list[object]) -> None:
        self.records = records

    def poll(self, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
        records, self.records = self.records, []
        return {"tp": records} if records else {}


def test_the_kafka_source_passes_the_records_headers():
    from kafka.consumer.fetcher import ConsumerRecord

    def consumed(offset: int, headers: object) -> object:
        return ConsumerRecord(
            "inventory-updated", 0, -1, offset, 0, 0, b"A", b"{}", headers, None, 1, 2, 3
        )

    source = KafkaRecordSource(
        OneBatchConsumer([consumed(0, [("invctl-epoch", b"2")]), consumed(1, [])])
    )  # type: ignore[arg-type]

    first, second = source.poll(10, 10)

    assert (first.headers, second.headers) == ((("invctl-epoch", b"2"),), ())


# --- a new epoch: the loop rebuilds ---------------------------------------------------------


def produce(fake: FakeRecordSource, epoch: int, event: tuple[str, bytes, bytes]) -> None:
    topic, key, value = event
    fake.produce(topic, key, value, epoch_headers(epoch) if epoch else ())


@pytest.fixture
def fake() -> FakeRecordSource:
    """Central's first epoch: products KEPT and GONE, stock of KEPT at version 30."""
    fake = FakeRecordSource.with_wire_topics()
    produce(fake, 1, category_event())
    produce(fake, 1, product_event(sku="KEPT", name="Kept v1", version=5))
    produce(fake, 1, product_event(sku="GONE", name="Gone", version=2))
    produce(fake, 1, stock_event(sku="KEPT", quantity=50, stock_version=30))
    return fake


def start_loop(replica: Replica, connect: HeldConnections) -> tuple[SyncLoop, threading.Thread]:
    loop = SyncLoop(
        replica, connect, prefix="", stop=threading.Event(), progress=SyncProgress(), tuning=FAST
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return loop, thread


@pytest.fixture
def running(replica: Replica, fake: FakeRecordSource) -> Iterator[tuple[SyncLoop, HeldConnections]]:
    connections = HeldConnections(fake)
    loop, thread = start_loop(replica, connections)
    eventually(
        lambda: stock_of(replica, "KEPT") == 50 and replica.is_bootstrapped(), 5, "caught up"
    )
    yield loop, connections
    connections.held.clear()
    loop.stop.set()
    thread.join(5)
    assert not thread.is_alive()


def stock_of(replica: Replica, sku: str) -> int | None:
    level = ReplicaReads(replica).stock_levels().get(sku)
    return None if level is None else level.quantity


def rebuild_state(loop: SyncLoop) -> object:
    return (loop.progress.rebuild() or {}).get("state")


def republish_epoch_2(fake: FakeRecordSource) -> None:
    """Central restored from a backup: epoch 2, its whole state again, at lower versions."""
    produce(fake, 2, category_event(version=1))
    produce(fake, 2, product_event(sku="KEPT", name="Kept v2", version=3))
    produce(fake, 2, stock_event(sku="KEPT", quantity=45, stock_version=4))


def test_a_new_epoch_rebuilds_the_replica_from_that_epochs_records_alone(
    replica, fake, running, caplog
):
    caplog.set_level(logging.INFO, "storeagent.consumer")
    loop, _ = running

    republish_epoch_2(fake)

    eventually(lambda: rebuild_state(loop) == "adopted", 5, "the rebuild adopted")
    products = ReplicaReads(replica).products()
    assert "GONE" not in products, "a product of the old epoch only is gone"
    assert products["KEPT"].name == "Kept v2"
    assert stock_of(replica, "KEPT") == 45
    assert not replica.holds_older_rows()
    assert replica.epoch() == 2
    [seen] = [r for r in caplog.records if r.getMessage() == "consumer.new_epoch"]
    assert seen.event_fields["old"] == 1  # type: ignore[attr-defined]
    assert seen.event_fields["new"] == 2  # type: ignore[attr-defined]
    assert seen.event_fields["rebuild"] is True  # type: ignore[attr-defined]


def test_the_till_reads_the_live_replica_while_it_is_rebuilt_for_a_new_epoch(
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

    republish_epoch_2(fake)

    eventually(lambda: rebuild_state(loop) == "running", 5, "the rebuild running")
    eventually(lambda: client.get("/stock/KEPT").json().get("quantity") == 45, 5, "live applies")
    assert client.get("/stock/GONE").status_code == 200, "the live replica serves meanwhile"
    assert client.get("/sync/status").json()["epoch"] == 2

    connections.held.clear()

    eventually(lambda: rebuild_state(loop) == "adopted", 5, "the rebuild adopted")
    assert client.get("/stock/GONE").status_code == 404
    assert client.get("/stock/KEPT").json()["quantity"] == 45
    status = client.get("/sync/status").json()
    assert (status["epoch"], status["rebuild"]["state"]) == (2, "adopted")


def test_an_old_epochs_record_arriving_after_the_new_epoch_is_stale(replica, fake, running):
    loop, _ = running
    republish_epoch_2(fake)
    eventually(lambda: rebuild_state(loop) == "adopted", 5, "the rebuild adopted")
    stale_before = loop.progress.totals()["stale"]

    produce(fake, 1, stock_event(sku="KEPT", quantity=1, stock_version=99))
    produce(fake, 1, product_event(sku="LATE", version=9))
    produce(fake, 2, product_event(sku="NEW", version=1))

    eventually(lambda: "NEW" in ReplicaReads(replica).products(), 5, "applied")
    assert "LATE" not in ReplicaReads(replica).products()
    assert stock_of(replica, "KEPT") == 45
    assert loop.progress.totals()["stale"] - stale_before >= 2


def test_a_newer_epoch_during_a_rebuild_starts_it_over_for_that_epoch(
    replica, fake, running, caplog
):
    caplog.set_level(logging.INFO, "storeagent.consumer")
    loop, connections = running
    connections.held.set()
    republish_epoch_2(fake)
    produce(fake, 2, product_event(sku="ONLY-IN-2", version=1))
    eventually(lambda: rebuild_state(loop) == "running", 5, "the rebuild for epoch 2 running")

    produce(fake, 3, product_event(sku="KEPT", name="Kept v3", version=1))
    produce(fake, 3, stock_event(sku="KEPT", quantity=44, stock_version=1))
    eventually(lambda: replica.epoch() == 3, 5, "epoch 3 seen")
    connections.held.clear()

    eventually(
        lambda: rebuild_state(loop) == "adopted" and not replica.holds_older_rows(), 5, "adopted"
    )
    assert list(ReplicaReads(replica).products()) == ["KEPT"]
    assert stock_of(replica, "KEPT") == 44
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("consumer.rebuild_dropped") == 1, "the rebuild for epoch 2 was dropped"
    assert logged.count("consumer.rebuild_adopted") == 1, "only the rebuild for epoch 3 adopted"


def test_a_replica_left_with_older_rows_by_a_restart_is_rebuilt_when_the_loop_starts(
    tmp_path, fake
):
    replica = open_replica(tmp_path / "replica.db")
    republish_epoch_2(fake)
    apply(
        replica,
        in_epoch(1, product_event(sku="GONE", version=2)),
        in_epoch(2, product_event(sku="KEPT", version=3)),
    )
    assert replica.holds_older_rows()

    loop, thread = start_loop(replica, HeldConnections(fake))
    try:
        eventually(lambda: rebuild_state(loop) == "adopted", 5, "rebuilt at start")
        assert "GONE" not in ReplicaReads(replica).products()
    finally:
        loop.stop.set()
        thread.join(30)
        replica.close()
    assert not thread.is_alive()


def test_a_new_replica_that_first_reads_a_restored_epoch_is_not_rebuilt(tmp_path):
    fake = FakeRecordSource.with_wire_topics()
    republish_epoch_2(fake)
    replica = open_replica(tmp_path / "replica.db")

    loop, thread = start_loop(replica, HeldConnections(fake))
    try:
        eventually(replica.is_bootstrapped, 5, "bootstrapped")
        assert (replica.epoch(), stock_of(replica, "KEPT")) == (2, 45)
        assert loop.progress.rebuild() is None, "nothing of an older epoch to drop"
    finally:
        loop.stop.set()
        thread.join(30)
        replica.close()
    assert not thread.is_alive()


def test_no_rebuild_when_central_first_sends_epochs(replica):
    """An upgraded central's first records carry epoch 1: the replica's rows (epoch 0, no
    header) are of the same database, and nothing is rebuilt."""
    apply(replica, (product_event(sku="A"), ()))

    apply(replica, in_epoch(1, product_event(sku="B")))

    assert (replica.epoch(), replica.holds_older_rows()) == (1, False)


def test_a_rebuild_file_is_not_left_behind(replica, fake, running):
    loop, _ = running
    republish_epoch_2(fake)
    eventually(lambda: rebuild_state(loop) == "adopted", 5, "the rebuild adopted")

    assert not Path(str(replica.db.database) + ".rebuild").exists()


class StillPublishing(FakeRecordSource):
    """A broker central is still republishing to: right after each poll that hands out
    records, `more` of them land on the log, as the relay's next batch would."""

    def __init__(self, source: FakeRecordSource, more: list[tuple[str, bytes, bytes]]) -> None:
        self.__dict__.update(source.connection().__dict__)
        self._more = more

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        batch = super().poll(timeout_ms, max_records)
        if batch and self._more:
            produce(self, 2, self._more.pop(0))
        return batch


def test_a_rebuild_goes_on_to_what_central_publishes_while_it_catches_up(tmp_path):
    fake = FakeRecordSource.with_wire_topics()
    republish_epoch_2(fake)
    later = [product_event(sku=f"LATER-{i}", version=1) for i in range(3)]
    source = StillPublishing(fake, later)
    rebuilt = open_replica(tmp_path / "rebuilt.db")
    loop = SyncLoop(
        rebuilt,
        lambda: source,
        prefix="",
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=FAST,
        mirror_offsets=False,
        epoch_floor=2,
    )

    loop.start(source)
    for _ in range(20):
        if rebuilt.is_bootstrapped():
            break
        loop.step(source)

    assert rebuilt.is_bootstrapped()
    assert {"LATER-0", "LATER-1", "LATER-2"} <= set(ReplicaReads(rebuilt).products())
    rebuilt.close()
