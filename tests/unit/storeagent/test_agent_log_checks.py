"""Kafka's log found not to be the one the replica read (sync.log_checks): records deleted
before they were read, a topic re-created and refilled past the stored offsets (its id), a
broker that lost its data and was refilled (the last record read, read again), and none of it
taken for a loss where the log is only compacted. Each is `kafka.log_behind` with its reason,
and a rebuild from the log as it is ends it."""

import logging
import threading
import zlib
from collections.abc import Iterator

import pytest

from harness.waiting import eventually
from invwire.errors.agent import SourceUnavailable
from invwire.topics import PARTITIONS, TOPIC_INVENTORY
from storeagent.replica.db import META_LOG_BEHIND, Replica, open_replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.log_checks import (
    LogLoss,
    Mark,
    MarkCheck,
    Reason,
    batch_marks,
    before_start,
    digest,
    read_marks,
    skipped_ahead,
    topic_replaced,
)
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record, RecordSource, TopicPartition
from tests.support.agent_fakes import FakeRecordSource, HeldConnections, stock_event

FAST = LoopTuning(poll_timeout_ms=20, backoff_initial_s=0.01, backoff_max_s=0.05)


def skus_in_one_partition(count: int) -> tuple[list[str], TopicPartition]:
    """`count` SKUs whose stock records share one partition of the inventory topic."""
    by_partition: dict[int, list[str]] = {}
    for n in range(100):
        sku = f"SKU-{n}"
        partition = zlib.crc32(sku.encode()) % PARTITIONS[TOPIC_INVENTORY]  # as produce() does
        found = by_partition.setdefault(partition, [])
        found.append(sku)
        if len(found) == count:
            return found, TopicPartition(TOPIC_INVENTORY, partition)
    raise AssertionError("no partition got enough SKUs")


(X, Y), TP = skus_in_one_partition(2)


def stock(fake: FakeRecordSource, sku: str, quantity: int, version: int) -> Record:
    return fake.produce(*stock_event(sku=sku, quantity=quantity, stock_version=version))


def quantities(replica: Replica) -> dict[str, int]:
    return {row.sku: row.quantity for row in ReplicaReads(replica).stock_levels().values()}


def rebuild_state(loop: SyncLoop) -> object:
    return (loop.progress.rebuild() or {}).get("state")


def codes(loop: SyncLoop) -> list[str]:
    return [problem.code for problem in loop.progress.problems()]


def message(loop: SyncLoop) -> str:
    return loop.progress.problems()[0].message


def reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        getattr(record, "event_fields", {}).get("reason")
        for record in caplog.records
        if record.getMessage() == "kafka.log_behind"
    ]


class Agent:
    """A sync loop in a thread over `connect`, stopped by stop() (or at the test's end)."""

    def __init__(self, replica: Replica, connect) -> None:
        self.loop = SyncLoop(
            replica,
            connect,
            prefix="",
            stop=threading.Event(),
            progress=SyncProgress(),
            tuning=FAST,
        )
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture
def run(replica: Replica, agents: list[Agent]):
    def start(connect) -> Agent:
        agent = Agent(replica, connect)
        agents.append(agent)
        return agent

    return start


@pytest.fixture
def fake() -> FakeRecordSource:
    return FakeRecordSource.with_wire_topics()


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def caught_up(replica: Replica, fake: FakeRecordSource, run, expected: dict[str, int]) -> None:
    """An agent ran over `fake` until the replica held `expected`, and stopped."""
    agent = run(fake.connection)
    eventually(lambda: quantities(replica) == expected and not codes(agent.loop), 5, "caught up")
    agent.stop()


# --- a stopped agent ------------------------------------------------------------------------


def test_records_deleted_before_a_stopped_agent_read_them_are_reported_not_skipped(
    replica, fake, run, caplog
):
    for version in (1, 2, 3):
        stock(fake, X, version, version)
    caught_up(replica, fake, run, {X: 3})
    stock(fake, Y, 40, 1)  # offset 3: never read
    stock(fake, X, 5, 5)
    fake.delete_records(TP, 4)  # retention or DeleteRecords: the log starts at 4 now

    held = HeldConnections(fake)
    held.held.set()
    agent = run(held)

    eventually(lambda: codes(agent.loop) == ["kafka.log_behind"], 5, "log_behind shown")
    assert f"{TP.topic}[{TP.partition}]: the replica read up to offset 3" in message(agent.loop)
    assert "the log now starts at 4, so records it never read were deleted" in message(agent.loop)
    assert reasons(caplog) == ["before_start"]
    held.held.clear()
    eventually(lambda: rebuild_state(agent.loop) == "adopted", 5, "rebuilt from the log")
    assert codes(agent.loop) == []
    assert quantities(replica) == {X: 5}  # Y's only record is gone: central must republish it


def test_a_topic_recreated_and_refilled_past_the_stored_offsets_is_found_by_its_id(
    replica, fake, run, caplog
):
    for version in (1, 2, 3):
        stock(fake, X, version, version)
    caught_up(replica, fake, run, {X: 3})
    fake.recreate_topic(TOPIC_INVENTORY)
    stock(fake, Y, 7, 1)  # central's republish, at the current versions, and more
    stock(fake, Y, 8, 2)
    stock(fake, X, 9, 4)
    stock(fake, X, 10, 5)  # the log ends at 4, past the replica's offset 3

    held = HeldConnections(fake)
    held.held.set()
    agent = run(held)

    eventually(lambda: codes(agent.loop) == ["kafka.log_behind"], 5, "log_behind shown")
    assert f"{TOPIC_INVENTORY} was deleted and re-created: its topic id was" in message(agent.loop)
    assert reasons(caplog)[0] == "topic_replaced"
    assert replica.get_meta(META_LOG_BEHIND)
    held.held.clear()
    eventually(lambda: rebuild_state(agent.loop) == "adopted", 5, "rebuilt from the log")
    assert quantities(replica) == {X: 10, Y: 8}  # Y was before the old offset: read now
    assert codes(agent.loop) == []


def test_a_broker_that_lost_its_data_and_was_refilled_is_found_by_the_last_record_read(
    replica, fake, run, caplog, agents
):
    for version in (1, 2, 3):
        stock(fake, X, version, version)
    caught_up(replica, fake, run, {X: 3})
    fake.lose_data(TOPIC_INVENTORY)  # the topic id stays: only the records tell
    for version in (1, 2, 3):
        stock(fake, Y, 10 + version, version)
    stock(fake, X, 9, 4)

    held = HeldConnections(fake)
    held.held.set()
    agent = run(held)

    eventually(lambda: codes(agent.loop) == ["kafka.log_behind"], 5, "log_behind shown")
    assert (
        f"{TP.topic}[{TP.partition}]: the record at offset 2 is not the one the replica read "
        "there, so the log was replaced and refilled"
    ) in message(agent.loop)
    assert reasons(caplog) == ["record_changed"]
    agent.stop()  # a restart before the rebuild ends does not forget it
    agents.remove(agent)
    held = HeldConnections(fake)
    agent = run(held)
    eventually(lambda: rebuild_state(agent.loop) == "adopted", 5, "rebuilt from the log")
    assert quantities(replica) == {X: 9, Y: 13}
    assert codes(agent.loop) == []
    agent.stop()
    agents.remove(agent)

    again = run(fake.connection)  # the adopted replica's marks are the new log's
    eventually(again.loop.progress.is_consuming, 5, "consuming")
    assert codes(again.loop) == []


def test_a_rebuild_short_of_rows_stays_not_ready_across_a_restart_until_they_come_back(
    replica, fake, run, agents
):
    stock(fake, X, 1, 1)
    stock(fake, Y, 1, 1)
    caught_up(replica, fake, run, {X: 1, Y: 1})
    fake.lose_data(TOPIC_INVENTORY)
    stock(fake, X, 2, 2)  # the log ends at 1, before the replica's offset 2

    agent = run(fake.connection)
    eventually(lambda: rebuild_state(agent.loop) == "adopted", 5, "rebuilt from the log")
    assert quantities(replica) == {X: 2}
    assert codes(agent.loop) == ["kafka.log_behind"]
    assert "holds fewer rows than this replica did (stock: 1 of 2)" in message(agent.loop)
    agent.stop()
    agents.remove(agent)

    again = run(fake.connection)
    eventually(again.loop.progress.is_consuming, 5, "consuming")
    assert "stock: 1 of 2" in message(again.loop), "a restart does not forget it"
    assert rebuild_state(again.loop) is None, "nothing to rebuild: the log is read as it is"
    stock(fake, Y, 1, 1)  # central's republish

    eventually(lambda: codes(again.loop) == [], 5, "every row back")
    assert quantities(replica) == {X: 2, Y: 1}


def test_a_restart_on_the_same_log_checks_the_last_record_and_applies_nothing_twice(
    replica, fake, run
):
    for version in (1, 2, 3):
        stock(fake, X, version, version)
    caught_up(replica, fake, run, {X: 3})

    agent = run(fake.connection)
    stock(fake, X, 4, 4)

    eventually(lambda: quantities(replica) == {X: 4}, 5, "the next record applied")
    assert codes(agent.loop) == []
    assert agent.loop.progress.totals() == {"applied": 1, "stale": 0, "dead_lettered": 0}


def test_a_compacted_log_with_gaps_and_its_last_read_record_gone_is_no_loss(
    replica, fake, run, tmp_path
):
    stock(fake, X, 1, 1)  # 0
    stock(fake, Y, 1, 1)  # 1
    stock(fake, X, 2, 2)  # 2
    stock(fake, Y, 2, 2)  # 3: the last record read
    caught_up(replica, fake, run, {X: 2, Y: 2})
    stock(fake, Y, 3, 3)  # 4
    for offset in (0, 1, 3):  # the cleaner keeps the last record of each key
        fake.compact_away(TP, offset)

    agent = run(fake.connection)
    eventually(lambda: quantities(replica) == {X: 2, Y: 3}, 5, "the next record applied")
    assert codes(agent.loop) == []

    fresh = open_replica(tmp_path / "fresh.db")
    try:
        loop = SyncLoop(fresh, fake.connection, prefix="", stop=threading.Event(),
                        progress=SyncProgress(), tuning=FAST)  # fmt: skip
        source = fake.connection()
        loop.start(source)
        while loop.step(source) and not fresh.is_bootstrapped():
            pass
        assert quantities(fresh) == {X: 2, Y: 3}
        assert loop.progress.problems() == []
    finally:
        fresh.close()


# --- a running agent ------------------------------------------------------------------------


class BrokerGoesAway(FakeRecordSource):
    """kafka-python's way: poll() answers nothing while requests to the broker time out."""

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        return [] if self.down.is_set() else super().poll(0, max_records)

    def end_offsets(self, partitions):
        if self.down.is_set():
            raise SourceUnavailable("KafkaTimeoutError")
        return super().end_offsets(partitions)


def stepping(replica: Replica, source: RecordSource) -> SyncLoop:
    loop = SyncLoop(replica, lambda: source, prefix="", stop=threading.Event(),
                    progress=SyncProgress(), tuning=LoopTuning(broker_probe_s=0))  # fmt: skip
    loop.start(source)
    return loop


def test_records_deleted_ahead_of_a_running_agent_are_found_when_its_fetch_skips_them(
    replica, fake
):
    stock(fake, X, 1, 1)
    loop = stepping(replica, fake)
    assert loop.step(fake) and quantities(replica) == {X: 1}
    stock(fake, Y, 5, 1)  # 1: deleted before it is read
    stock(fake, X, 2, 2)  # 2
    fake.delete_records(TP, 2)

    assert loop.step(fake)

    assert codes(loop) == ["kafka.log_behind"]
    assert "the replica read up to offset 1 but the log now starts at 2" in message(loop)


def test_a_broker_that_comes_back_refilled_is_found_by_the_last_record_read(replica):
    source = BrokerGoesAway.with_wire_topics()
    source.down = threading.Event()
    for version in (1, 2, 3):
        stock(source, X, version, version)
    loop = stepping(replica, source)
    assert loop.step(source) and quantities(replica) == {X: 3}

    source.down.set()
    assert loop.step(source)  # the probe fails: the last records are to be read again
    assert loop.progress.broker_error() == "KafkaTimeoutError"
    source.lose_data(TOPIC_INVENTORY)
    for version in (4, 5, 6, 7):  # refilled past offset 3 before the agent fetched again
        stock(source, X, version, version)
    source.down.clear()
    assert loop.step(source)

    assert codes(loop) == ["kafka.log_behind"]
    assert "the record at offset 2 is not the one the replica read there" in message(loop)


# --- the checks themselves ------------------------------------------------------------------


def record(offset: int, value: bytes = b"v", headers=()) -> Record:
    return Record(TP.topic, TP.partition, offset, b"k", value, tuple(headers))


def test_a_digest_tells_records_apart_by_key_value_and_headers():
    same = digest(record(1)), digest(record(7))
    assert same[0] == same[1]  # the offset is the mark's, not the digest's
    others = {
        digest(record(1, b"w")),
        digest(record(1, headers=[("event_id", b"a")])),
        digest(record(1, headers=[("event_id", b"b")])),
        digest(Record(TP.topic, TP.partition, 1, None, b"v")),
        digest(Record(TP.topic, TP.partition, 1, b"kv", b"")),
    }
    assert len(others) == 5 and same[0] not in others


def test_marks_are_the_last_record_of_each_partition_and_read_back():
    other = TopicPartition("product-updated", 0)
    records = [record(4), record(5, b"w"), Record(other.topic, 0, 9, b"k", b"v")]

    marks = read_marks({**batch_marks(records), "log_mark:bad": "x", "epoch": "2"})

    assert marks == {TP: Mark(5, digest(records[1])), other: Mark(9, digest(records[2]))}


def test_a_mark_is_checked_only_where_it_matches_the_stored_offset():
    check = MarkCheck()
    other = TopicPartition("product-updated", 0)
    check.arm({TP: Mark(5, digest(record(5))), other: Mark(3, "x")}, {TP: 6, other: 9})

    assert check.seek_target(TP, 6) == 5
    assert check.seek_target(other, 9) == 9
    kept, loss = check.check([record(5), record(6)])
    assert [r.offset for r in kept] == [6] and loss is None
    assert check.seek_target(TP, 6) == 6, "checked once"


def test_pure_checks_name_the_partition_and_the_offsets():
    assert before_start({TP: 3, TP._replace(partition=9): None}, {TP: 3}) is None
    assert before_start({TP: 2}, {TP: 3}) == LogLoss(
        Reason.BEFORE_START,
        f"{TP.topic}[{TP.partition}]: the replica read up to offset 2 but the log now starts "
        "at 3, so records it never read were deleted",
    )
    assert skipped_ahead({TP: 2}, [record(5), record(6)]) == {TP: 2}
    assert skipped_ahead({TP: 5}, [record(5), record(9)]) == {}
    assert topic_replaced({"t": "a"}, {"t": None, "u": "b"}) is None
    assert topic_replaced({"t": "a"}, {"t": "b"}) == LogLoss(
        Reason.TOPIC_REPLACED, "t was deleted and re-created: its topic id was a and is now b"
    )
