"""Problems that keep the replica from following Kafka are states, not crashes: a database
that is busy (`apply_failing`) and a Kafka that refuses the store (`kafka.auth_failed`,
`kafka.not_authorized`) are retried with back-off, named by /readyz, /sync/status and a
gauge, logged once (not once per attempt), and end by themselves when the cause does."""

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import peewee
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from harness.waiting import eventually
from invwire.errors.agent import KafkaAuthFailed, KafkaNotAuthorized, SourceUnavailable
from invwire.events import StockChanged
from invwire.topics import TOPIC_INVENTORY
from storeagent.http.app import create_app
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import Replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import LoopTuning, SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import RecordSource, TopicPartition
from tests.support.agent_fakes import (
    FailingKafkaConsumer,
    FakeRecordSource,
    HeldConnections,
    stock_event,
)
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

FAST = LoopTuning(poll_timeout_ms=20, backoff_initial_s=0.01, backoff_max_s=0.05)


def refused() -> KafkaAuthFailed:
    return KafkaAuthFailed(
        "127.0.0.1:9093 refused user store.s1.0123456789abcdef: Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    )


class LockedReplica(Replica):
    """While `locked` is set, writing a stock row fails as SQLite does when another
    connection holds the write lock too long."""

    def __init__(self, replica: Replica) -> None:
        super().__init__(replica.db)
        self.locked = threading.Event()
        self.attempts = 0

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        if self.locked.is_set():
            self.attempts += 1
            raise peewee.OperationalError("database is locked")
        return super().upsert_stock(event, occurred_at)


class LockedOffsetsReplica(LockedReplica):
    """The same lock, met while storing the batch's offsets rather than inside a record."""

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        return Replica.upsert_stock(self, event, occurred_at)

    def save_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.locked.is_set():
            self.attempts += 1
            raise peewee.OperationalError("database is locked")
        super().save_offsets(offsets)


@dataclass
class Agent:
    loop: SyncLoop
    thread: threading.Thread
    client: TestClient

    def readyz(self) -> tuple[int, dict]:
        response = self.client.get("/readyz")
        return response.status_code, response.json()

    def status(self) -> dict:
        return self.client.get("/sync/status").json()

    def problem_codes(self) -> list[str]:
        return [problem["code"] for problem in self.status()["problems"]]

    def total_lag(self) -> int:
        return sum(p["lag"] or 0 for p in self.status()["partitions"])

    def gauge(self, problem: str) -> float:
        text = self.client.get("/metrics").text
        return next(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "storeagent_sync_problem" and sample.labels["problem"] == problem
        )


@pytest.fixture
def run_agent(replica: Replica) -> Iterator[Callable[..., Agent]]:
    """`run_agent(loop_replica, connect)` runs a sync loop in a thread, and the store API on
    the test's replica and the loop's progress."""
    started: list[Agent] = []

    def run(loop_replica: Replica, connect: Callable[[], RecordSource]) -> Agent:
        progress = SyncProgress()
        loop = SyncLoop(
            loop_replica, connect, prefix="", stop=threading.Event(), progress=progress, tuning=FAST
        )
        metrics = AgentMetrics()
        metrics.watch(WatchedState(Vitals(replica, LocalOrders(replica), progress)))
        app = create_app(
            replica,
            progress,
            store_id="s1",
            topics=topic_names(""),
            metrics=metrics,
            terminal_token=TERMINAL_TOKEN,
        )
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        agent = Agent(loop, thread, terminal_client(app))
        started.append(agent)
        return agent

    yield run
    for agent in started:
        agent.loop.stop.set()
        agent.thread.join(5)
        assert not agent.thread.is_alive()


def quantity(replica: Replica, sku: str) -> int | None:
    row = ReplicaReads(replica).stock_level(sku)
    return None if row is None else row.quantity


def messages(caplog: pytest.LogCaptureFixture, event: str) -> int:
    return sum(1 for record in caplog.records if record.getMessage() == event)


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


@pytest.fixture
def fake() -> FakeRecordSource:
    return FakeRecordSource.with_wire_topics()


@pytest.mark.parametrize("kind", [LockedReplica, LockedOffsetsReplica], ids=["record", "batch"])
def test_a_locked_database_is_retried_reported_as_apply_failing_and_the_lag_stays_true(
    replica, fake, run_agent, caplog, kind
):
    locked = kind(replica)
    locked.locked.set()
    for version in (1, 2, 3):
        fake.produce(*stock_event(sku="A", quantity=version, stock_version=version))
    agent = run_agent(locked, lambda: fake)

    eventually(lambda: agent.problem_codes() == ["apply_failing"], 5, "apply_failing shown")
    status, body = agent.readyz()
    assert status == 503
    assert body["error"]["details"]["checks"]["applying"] is False
    assert "apply_failing: OperationalError: database is locked" in body["error"]["message"]
    assert agent.gauge("apply_failing") == 1.0
    eventually(lambda: agent.total_lag() == 3, 5, "lag of the unapplied batch")

    fake.produce(*stock_event(sku="B", quantity=1, stock_version=1))
    fake.produce(*stock_event(sku="C", quantity=1, stock_version=1))
    eventually(lambda: agent.total_lag() == 5, 5, "lag growing while apply fails")
    eventually(lambda: locked.attempts >= 5, 5, "retried")
    assert agent.thread.is_alive()
    assert replica.dead_letter_count() == 0  # the database's fault, not the records'
    assert quantity(replica, "A") is None
    assert messages(caplog, "consumer.apply_failing") == 1  # not once per attempt

    locked.locked.clear()

    eventually(lambda: quantity(replica, "C") == 1, 5, "applied once the lock is gone")
    eventually(lambda: agent.readyz()[0] == 200, 5, "ready again")
    assert agent.status()["problems"] == []
    assert agent.total_lag() == 0
    assert agent.gauge("apply_failing") == 0.0
    assert quantity(replica, "A") == 3
    assert messages(caplog, "consumer.apply_recovered") == 1


def test_a_refused_login_is_reported_retried_and_cleared_once_kafka_takes_the_key(
    replica, fake, run_agent, caplog
):
    refusing = threading.Event()
    refusing.set()
    attempts: list[int] = []

    def connect() -> RecordSource:
        attempts.append(1)
        if refusing.is_set():
            raise refused()
        return fake

    fake.produce(*stock_event(sku="A", quantity=4, stock_version=1))
    agent = run_agent(replica, connect)

    eventually(lambda: agent.problem_codes() == ["kafka.auth_failed"], 5, "auth failure shown")
    eventually(lambda: len(attempts) >= 4, 5, "connection retried")
    status, body = agent.readyz()
    assert status == 503
    assert body["error"]["details"]["checks"]["kafka_access"] is False
    [problem] = body["error"]["details"]["problems"]
    assert problem["code"] == "kafka.auth_failed"
    assert "invalid credentials" in problem["message"]
    assert problem["failures"] >= 4
    assert agent.gauge("kafka.auth_failed") == 1.0
    assert agent.thread.is_alive()
    assert messages(caplog, "kafka.auth_failed") == 1  # rate-limited, not one per attempt

    refusing.clear()

    eventually(lambda: quantity(replica, "A") == 4, 5, "consuming once the key works")
    eventually(lambda: agent.readyz()[0] == 200, 5, "ready again")
    assert agent.problem_codes() == []
    assert agent.gauge("kafka.auth_failed") == 0.0
    assert messages(caplog, "kafka.access_restored") == 1


def test_a_key_revoked_while_running_stops_the_sync_and_says_so(replica, fake, run_agent):
    agent = run_agent(replica, lambda: fake)
    fake.produce(*stock_event(sku="A", quantity=1, stock_version=1))
    eventually(lambda: quantity(replica, "A") == 1, 5, "first event applied")

    fake.deny(refused())
    eventually(lambda: agent.problem_codes() == ["kafka.auth_failed"], 5, "revocation shown")
    fake.produce(*stock_event(sku="A", quantity=2, stock_version=2))
    failures = agent.status()["problems"][0]["failures"]
    eventually(lambda: agent.status()["problems"][0]["failures"] >= failures + 3, 5, "retries")

    assert agent.readyz()[0] == 503
    assert quantity(replica, "A") == 1
    assert agent.thread.is_alive()

    fake.allow()

    eventually(lambda: quantity(replica, "A") == 2, 5, "consuming once the key is restored")
    eventually(lambda: agent.problem_codes() == [], 5, "problem cleared")


class GroupDeniedSource(FakeRecordSource):
    """Topics may be read, but the store may not commit in its consumer group."""

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        raise KafkaNotAuthorized("GroupAuthorizationFailedError: storeagent.s1")


def test_a_group_it_may_not_use_is_reported_as_not_authorized_without_flapping(replica, run_agent):
    source = GroupDeniedSource.with_wire_topics()
    source.produce(*stock_event(sku="A", quantity=1, stock_version=1))
    agent = run_agent(replica, lambda: source)

    eventually(lambda: agent.problem_codes() == ["kafka.not_authorized"], 5, "denial shown")
    codes = [agent.problem_codes() for _ in range(20)]  # the loop retries meanwhile

    assert codes == [["kafka.not_authorized"]] * 20
    assert agent.readyz()[1]["error"]["details"]["checks"]["kafka_access"] is False
    assert agent.thread.is_alive()


def stop(agent: Agent) -> None:
    agent.loop.stop.set()
    agent.thread.join(5)
    assert not agent.thread.is_alive()


def test_a_topic_recreated_while_the_agent_was_stopped_is_reported_and_rebuilt_from(
    replica, fake, run_agent, caplog
):
    for version in (1, 2, 3):
        fake.produce(*stock_event(sku="A", quantity=version, stock_version=version))
    first = run_agent(replica, fake.connection)
    eventually(lambda: first.readyz()[0] == 200 and quantity(replica, "A") == 3, 5, "caught up")
    stop(first)

    fake.recreate_topic(TOPIC_INVENTORY)
    fake.produce(*stock_event(sku="A", quantity=7, stock_version=1))  # lower than the replica's
    held = HeldConnections(fake)
    held.held.set()  # the rebuild it starts stays running until let go
    second = run_agent(replica, held)

    eventually(lambda: second.problem_codes() == ["kafka.log_behind"], 5, "log_behind shown")
    status, body = second.readyz()
    assert status == 503
    assert body["error"]["details"]["checks"]["kafka_log"] is False
    message = second.status()["problems"][0]["message"]
    assert "inventory-updated[" in message and "the replica read up to offset 3" in message
    assert "being rebuilt from the log" in message
    assert second.gauge("kafka.log_behind") == 1.0
    assert messages(caplog, "kafka.log_behind") == 1
    eventually(lambda: second.status().get("rebuild", {}).get("state") == "running", 5, "rebuild")
    assert quantity(replica, "A") == 3  # version 1 after version 3: taken for stale
    stop(second)

    held = HeldConnections(fake)
    held.held.set()
    third = run_agent(replica, held)  # a restart does not forget it, and rebuilds again
    eventually(lambda: third.problem_codes() == ["kafka.log_behind"], 5, "still shown")
    eventually(lambda: third.status().get("rebuild", {}).get("state") == "running", 5, "rebuild")
    assert third.readyz()[0] == 503

    held.held.clear()

    eventually(lambda: third.readyz()[0] == 200, 5, "ready once rebuilt from the log")
    assert third.status()["problems"] == []
    assert third.status()["rebuild"]["state"] == "adopted"
    assert third.gauge("kafka.log_behind") == 0.0
    assert quantity(replica, "A") == 7  # the log as it is now


def test_a_broker_that_lost_its_data_under_a_running_agent_is_reported_not_a_crash(
    replica, fake, run_agent
):
    for version in (1, 2, 3):
        fake.produce(*stock_event(sku="A", quantity=version, stock_version=version))
        fake.produce(*stock_event(sku="B", quantity=version, stock_version=version))
    held = HeldConnections(fake)
    held.held.set()
    agent = run_agent(replica, held)
    eventually(lambda: quantity(replica, "A") == 3, 5, "caught up")

    fake.recreate_topic(TOPIC_INVENTORY)
    fake.produce(*stock_event(sku="A", quantity=4, stock_version=4))  # at offset 0 now

    eventually(lambda: agent.problem_codes() == ["kafka.log_behind"], 5, "log_behind shown")
    assert agent.readyz()[0] == 503
    assert "the replica read up to offset 3" in agent.status()["problems"][0]["message"]
    eventually(lambda: quantity(replica, "A") == 4, 5, "the loop goes on applying")
    assert quantity(replica, "B") == 3  # the till keeps what it had while the rebuild runs
    assert agent.thread.is_alive()

    held.held.clear()

    eventually(lambda: agent.status().get("rebuild", {}).get("state") == "adopted", 5, "rebuilt")
    assert quantity(replica, "A") == 4
    assert quantity(replica, "B") is None  # the log lost it: until central republishes it
    assert agent.readyz()[0] == 503, "short of a row: not ready"
    message = agent.status()["problems"][0]["message"]
    assert "holds fewer rows than this replica did (stock: 1 of 2)" in message
    assert "until central republishes its state" in message

    fake.produce(*stock_event(sku="B", quantity=3, stock_version=3))  # central's republish

    eventually(lambda: agent.readyz()[0] == 200, 5, "ready once the log holds every row again")
    assert quantity(replica, "B") == 3
    assert agent.status()["problems"] == []


@pytest.mark.parametrize("error", [KeyError("inventory-updated"), AssertionError("no leader")])
def test_any_error_of_the_kafka_client_is_the_source_failing_never_a_crash(
    replica, run_agent, error
):
    source = KafkaRecordSource(FailingKafkaConsumer(error))
    tp = TopicPartition(TOPIC_INVENTORY, 0)
    for call in (
        lambda: source.end_offsets([tp]),
        lambda: source.poll(10, 10),
        lambda: source.seek(tp, 3),
        lambda: source.commit({tp: 3}),
        lambda: source.partitions_for(TOPIC_INVENTORY),
    ):
        with pytest.raises(SourceUnavailable, match=type(error).__name__):
            call()
    assert source.position(tp) is None
    assert source.highwater(tp) is None
    source.close()

    agent = run_agent(replica, lambda: KafkaRecordSource(FailingKafkaConsumer(error)))
    eventually(lambda: agent.loop.progress.broker_error() is not None, 5, "broker failing")
    status, body = agent.readyz()
    assert status == 503 and body["error"]["details"]["checks"]["broker"] is False
    assert agent.thread.is_alive()
