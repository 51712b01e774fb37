import threading
from collections.abc import Callable, Mapping
from datetime import datetime

import peewee
import pytest

from harness.waiting import eventually
from invwire.errors.agent import SourceUnavailable
from invwire.events import StockChanged
from invwire.logs import EventLog
from invwire.topics import PARTITIONS
from storeagent.ops.supervisor import SupervisedTask
from storeagent.replica.db import Replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sync import loop as loop_module
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import RecordSource, TopicPartition
from tests.support.agent_fakes import FakeRecordSource, product_event, stock_event

FAST = LoopTuning(poll_timeout_ms=20, max_records=500, backoff_initial_s=0.01, backoff_max_s=0.05)


def make_loop(
    replica: Replica, source: RecordSource | Callable[[], RecordSource], **tuning: int
) -> SyncLoop:
    connect = source if callable(source) else (lambda: source)
    return SyncLoop(
        replica,
        connect,
        prefix="",
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=LoopTuning(**{**FAST.__dict__, **tuning}),
    )


def run_in_thread(loop: SyncLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def stop(loop: SyncLoop, thread: threading.Thread, source: FakeRecordSource | None = None) -> None:
    """Stop the loop and wait until its thread has ended (a loop left running would log its
    last line into a later test). `source`: a fake whose poll may be waiting, woken."""
    loop.stop.set()
    if source is not None:
        source.wake()
    thread.join(30)
    assert not thread.is_alive(), "the sync loop did not stop"


def quantity(replica: Replica, sku: str) -> int | None:
    row = ReplicaReads(replica).stock_level(sku)
    return None if row is None else row.quantity


@pytest.fixture
def fake() -> FakeRecordSource:
    return FakeRecordSource.with_wire_topics()


def test_batch_is_applied_and_the_same_offsets_are_committed_to_the_group(replica, fake):
    fake.produce(*stock_event(sku="A", quantity=5, stock_version=1))
    fake.produce(*product_event(sku="A"))
    loop = make_loop(replica, fake)

    loop.start(fake)
    assert loop.step(fake)

    assert quantity(replica, "A") == 5
    assert fake.committed == replica.stored_offsets()
    assert sum(fake.committed.values()) == 2


def test_replica_is_bootstrapped_once_every_partition_reaches_its_start_end_offset(replica, fake):
    for version in range(1, 4):
        fake.produce(*stock_event(sku="A", stock_version=version))
    loop = make_loop(replica, fake, max_records=1)
    loop.start(fake)

    loop.step(fake)
    loop.step(fake)
    assert not replica.is_bootstrapped()

    loop.step(fake)
    assert replica.is_bootstrapped()


def test_events_produced_after_start_do_not_delay_bootstrap(replica, fake):
    fake.produce(*stock_event(sku="A", stock_version=1))
    loop = make_loop(replica, fake, max_records=1)
    loop.start(fake)
    fake.produce(*stock_event(sku="A", stock_version=2))

    loop.step(fake)

    assert replica.is_bootstrapped()
    assert replica.get_meta("events_applied") == "1"


def test_empty_topics_bootstrap_at_start(replica, fake):
    loop = make_loop(replica, fake)

    loop.start(fake)

    assert replica.is_bootstrapped()


def test_restart_seeks_to_stored_offsets_and_reapplies_nothing(replica, fake):
    fake.produce(*stock_event(sku="A", stock_version=1))
    fake.produce(*stock_event(sku="B", stock_version=1))
    first = make_loop(replica, fake)
    first.start(fake)
    first.step(fake)
    applied = replica.get_meta("events_applied")

    second = make_loop(replica, fake)
    second.start(fake)
    stored = replica.stored_offsets()

    # each partition's last record is read again, to check it is the one read there
    assert {tp: fake.position(tp) for tp in stored} == {tp: n - 1 for tp, n in stored.items()}
    assert second.step(fake)
    assert {tp: fake.position(tp) for tp in stored} == stored
    assert replica.get_meta("events_applied") == applied == "2"


class FailingOnceReplica(Replica):
    """Writing a stock row fails once with `error`, then works."""

    def __init__(self, replica: Replica, error: Exception) -> None:
        super().__init__(replica.db)
        self.error: Exception | None = error

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().upsert_stock(event, occurred_at)


@pytest.mark.parametrize("message", ["database is locked", "disk I/O error"])
def test_failed_apply_rewinds_to_stored_offsets_and_is_retried(replica, fake, message):
    flaky = FailingOnceReplica(replica, peewee.OperationalError(message))
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))
    loop = make_loop(flaky, fake)
    loop.start(fake)

    assert not loop.step(fake)
    assert quantity(replica, "A") is None
    assert all(fake.position(tp) == 0 for tp in loop.progress.end_offsets())

    assert loop.step(fake)
    assert quantity(replica, "A") == 3
    assert replica.get_meta("events_applied") == "1"


class BrokenOffsetsReplica(Replica):
    """Storing a batch's offsets fails with `error`: no one record is to blame."""

    def __init__(self, replica: Replica, error: Exception) -> None:
        super().__init__(replica.db)
        self.error = error

    def save_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        peewee.OperationalError("no such table: stock"),
        peewee.DatabaseError("database disk image is malformed"),
        OSError("Read-only file system"),
    ],
    ids=["schema", "corrupt", "os"],
)
def test_a_broken_database_is_not_blamed_on_the_record_but_ends_the_loop(replica, fake, error):
    broken = FailingOnceReplica(replica, error)
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))
    loop = make_loop(broken, fake)

    with pytest.raises(type(error)):
        loop.run()

    assert quantity(replica, "A") is None
    assert replica.stored_offsets() == {}
    assert replica.dead_letter_count() == 0
    assert fake.closed and not loop.progress.is_consuming()


def test_a_bug_outside_the_records_is_not_retried_but_ends_the_loop(replica, fake):
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))
    loop = make_loop(BrokenOffsetsReplica(replica, RuntimeError("a bug in apply")), fake)

    with pytest.raises(RuntimeError):
        loop.run()

    assert quantity(replica, "A") is None
    assert replica.dead_letter_count() == 0


def test_a_crashed_loop_is_logged_with_its_cause_and_fails_its_supervised_task(
    replica, fake, caplog
):
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))
    loop = make_loop(BrokenOffsetsReplica(replica, RuntimeError("a bug in apply")), fake)
    failures: list[str] = []
    task = SupervisedTask(
        "storeagent-consumer",
        loop.run,
        crashed="consumer.crashed",
        stop=loop.stop,
        on_failure=lambda: failures.append("stop the agent"),
        log=EventLog("storeagent"),
    )

    task.start()
    task.join(5)

    assert not task.is_alive()
    assert task.failed and failures == ["stop the agent"]
    [crash] = [r for r in caplog.records if r.getMessage() == "consumer.crashed"]
    assert crash.exc_info is not None and str(crash.exc_info[1]) == "a bug in apply"
    assert "consumer.apply_failing" not in caplog.messages


def test_a_failed_group_commit_pauses_commits_while_records_go_on_being_applied(
    replica, fake, monkeypatch
):
    monkeypatch.setattr(loop_module, "KAFKA_COMMIT_INTERVAL_S", 0.0)  # a commit every step
    loop = make_loop(replica, fake)
    loop.start(fake)
    fake.failing_commits = 100  # the group's coordinator is down
    attempts = fake.commit_attempts

    for version in range(1, 6):
        fake.produce(*stock_event(sku="A", quantity=version, stock_version=version))
        assert loop.step(fake)

    assert quantity(replica, "A") == 5
    assert fake.commit_attempts == attempts + 1, "one blocking attempt, then a pause"


def test_poll_failure_is_retried_without_losing_records(replica, fake):
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))
    fake.failing_polls = 1
    loop = make_loop(replica, fake)
    loop.start(fake)

    assert not loop.step(fake)
    assert loop.step(fake)

    assert quantity(replica, "A") == 3


def test_loop_waits_for_missing_topics_then_consumes(replica, caplog):
    source = FakeRecordSource()
    loop = make_loop(replica, source)
    thread = run_in_thread(loop)
    eventually(lambda: "consumer.waiting_for_topics" in caplog.messages, 5, "waiting logged")
    assert not replica.is_bootstrapped()

    for topic, partitions in PARTITIONS.items():
        source.create_topic(topic, partitions)
    source.produce(*stock_event(sku="LATE", quantity=9, stock_version=1))

    eventually(lambda: quantity(replica, "LATE") == 9)
    stop(loop, thread, source)


def test_loop_reconnects_until_kafka_answers(replica, fake):
    attempts = []

    def connect() -> RecordSource:
        attempts.append(1)
        if len(attempts) < 3:
            raise SourceUnavailable("KafkaTimeoutError: bootstrap timed out")
        return fake

    fake.produce(*stock_event(sku="A", quantity=2, stock_version=1))
    loop = make_loop(replica, connect)
    thread = run_in_thread(loop)

    eventually(lambda: quantity(replica, "A") == 2)
    stop(loop, thread, fake)
    assert len(attempts) == 3


class StuckClient(FakeRecordSource):
    """A client of `fake`'s broker stuck as kafka-python's can be after a node came back:
    every request times out and poll() answers nothing, while a new client gets answers."""

    def __init__(self, source: FakeRecordSource) -> None:
        self.__dict__.update(source.__dict__)
        self.stuck = False

    def end_offsets(self, partitions):
        if self.stuck:
            raise SourceUnavailable("KafkaTimeoutError: Failed to get offsets by timestamps")
        return super().end_offsets(partitions)

    def poll(self, timeout_ms, max_records):
        if self.stuck:
            return []
        records = super().poll(timeout_ms, max_records)
        # a poll already waiting when the client got stuck must not bring its records
        return [] if self.stuck else records


def test_a_client_kafka_stopped_answering_is_replaced_by_a_new_one(replica, fake):
    clients: list[StuckClient] = []

    def connect() -> RecordSource:
        clients.append(StuckClient(fake))
        return clients[-1]

    loop = make_loop(replica, connect, broker_probe_s=0, client_stale_s=0)
    thread = run_in_thread(loop)
    eventually(replica.is_bootstrapped)
    clients[0].stuck = True
    fake.produce(*stock_event(sku="A", quantity=3, stock_version=1))

    eventually(lambda: quantity(replica, "A") == 3)
    assert loop.progress.broker_reachable()
    stop(loop, thread, fake)
    assert len(clients) == 2 and clients[0].closed


def test_new_record_is_applied_while_the_loop_runs(replica, fake):
    # a poll that waited out its timeout would come back after the wait below gave up
    loop = make_loop(replica, fake, poll_timeout_ms=120_000)
    thread = run_in_thread(loop)
    eventually(replica.is_bootstrapped)

    fake.produce(*stock_event(sku="A", quantity=1, stock_version=1))
    eventually(lambda: quantity(replica, "A") == 1, timeout=60, interval=0.005)

    stop(loop, thread, fake)  # its poll would otherwise wait out the 120 s


def test_stop_event_ends_the_loop_and_closes_the_source(replica, fake):
    loop = make_loop(replica, fake, poll_timeout_ms=200)
    thread = run_in_thread(loop)
    eventually(loop.progress.is_consuming)

    loop.stop.set()
    thread.join(30)

    assert not thread.is_alive()
    assert fake.closed
    assert not loop.progress.is_consuming()


def test_progress_holds_end_offsets_of_every_partition(replica, fake):
    fake.produce(*stock_event(sku="A", stock_version=1))
    loop = make_loop(replica, fake)
    loop.start(fake)
    loop.step(fake)

    ends = loop.progress.end_offsets()

    assert len(ends) == sum(PARTITIONS.values())
    assert sum(ends.values()) == 1
    assert TopicPartition("new-category", 0) in ends


def test_unexpected_error_escapes_run_so_the_agent_can_exit(replica):
    def broken_connect() -> RecordSource:
        raise RuntimeError("bug")

    loop = make_loop(replica, broken_connect)

    with pytest.raises(RuntimeError):
        loop.run()
    assert not loop.progress.is_consuming()
