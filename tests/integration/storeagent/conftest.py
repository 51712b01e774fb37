"""Real-broker fixtures for the store agent: prefixed wire topics, a producer, a loop runner.

They work on the session cluster whatever its security (the `kafka_cluster` fixture): the
admin login creates topics and produces, and a loop runner logs in as a store of its own,
whose Kafka user and ACLs are made as central makes them (nothing to make on PLAINTEXT)."""

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from harness.kafka_security import KafkaCluster
from harness.topics import create_topics
from harness.waiting import eventually
from storeagent.replica.db import Replica, open_replica
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import LoopTuning, SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import TopicPartition


@pytest.fixture
def admin(kafka_cluster: KafkaCluster) -> Iterator[KafkaAdminClient]:
    config = kafka_cluster.admin_config()
    with KafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap, **config) as client:
        yield client


@pytest.fixture
def make_wire_topics(
    kafka_cluster: KafkaCluster, topic_prefix: str
) -> Iterator[Callable[[], None]]:
    """`make_wire_topics()` creates this test's prefixed topics (1/3/6 partitions, compacted)."""
    created: list[bool] = []
    config = kafka_cluster.admin_config()

    def create() -> None:
        create_topics(kafka_cluster.bootstrap, topic_prefix, **config)
        created.append(True)

    yield create
    if created:
        with KafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap, **config) as admin:
            admin.delete_topics(list(topic_names(topic_prefix)))


@pytest.fixture
def wire_topics(make_wire_topics: Callable[[], None], topic_prefix: str) -> str:
    make_wire_topics()
    return topic_prefix


class Publisher:
    def __init__(self, kafka: KafkaCluster, prefix: str) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap, linger_ms=0, **kafka.admin_config()
        )
        self._prefix = prefix
        self.ends: dict[TopicPartition, int] = {}

    def send(self, *events: tuple[str, bytes, bytes | None]) -> None:
        """Send (unprefixed topic, key, value) records in order and wait until all are stored;
        `ends` then holds the next offset of every partition written to."""
        futures = [
            self._producer.send(self._prefix + topic, key=key, value=value)
            for topic, key, value in events
        ]
        self._producer.flush()
        for future in futures:
            meta = future.get(timeout=10)
            tp = TopicPartition(meta.topic, meta.partition)
            self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)

    def close(self) -> None:
        self._producer.close()


@pytest.fixture
def publish(kafka_cluster: KafkaCluster, topic_prefix: str) -> Iterator[Publisher]:
    """Sends to this test's topics; they must exist (the wire_topics fixture) before sending."""
    publisher = Publisher(kafka_cluster, topic_prefix)
    yield publisher
    publisher.close()


def store_login(kafka: KafkaCluster, store_id: str, prefix: str) -> KafkaLogin:
    """A login of its own for a test store: on a secure cluster, a new API key whose Kafka
    user and ACLs (the `prefix` topics, the store's group) are made as central makes them."""
    api_key = secrets.token_urlsafe(24)
    kafka.provision_store(store_id, api_key, prefix)
    return KafkaLogin.for_store(kafka.protocol, store_id, api_key, kafka.ca_file or None)


class LoopRunner:
    """Runs the real sync loop (real Kafka consumer) in a thread against a replica file."""

    def __init__(
        self, bootstrap: str, prefix: str, db_path: Path, store_id: str, login: KafkaLogin
    ) -> None:
        self.bootstrap, self.prefix, self.db_path = bootstrap, prefix, db_path
        self.group_id = f"storeagent.{store_id}"
        self.login = login
        self.replica: Replica | None = None
        self.loop: SyncLoop | None = None
        self._thread: threading.Thread | None = None

    def connect(self) -> KafkaRecordSource:
        return KafkaRecordSource.connect(
            self.bootstrap, group_id=self.group_id, client_id="agent-test", login=self.login
        )

    def start(self) -> Replica:
        self.replica = open_replica(self.db_path)
        self.loop = SyncLoop(
            self.replica,
            self.connect,
            prefix=self.prefix,
            stop=threading.Event(),
            progress=SyncProgress(),
            tuning=LoopTuning(poll_timeout_ms=200, backoff_initial_s=0.05, backoff_max_s=0.5),
        )
        self._thread = threading.Thread(target=self.loop.run, daemon=True)
        self._thread.start()
        return self.replica

    @property
    def progress(self) -> SyncProgress:
        assert self.loop is not None
        return self.loop.progress

    def wait_applied(self, ends: dict[TopicPartition, int], timeout: float = 20.0) -> None:
        """Bootstrapped, and the stored offsets reached `ends` (e.g. Publisher.ends)."""
        assert self.replica is not None
        replica = self.replica

        def caught_up() -> bool:
            stored = replica.stored_offsets()
            reached = all(stored.get(tp, 0) >= end for tp, end in ends.items())
            return reached and replica.is_bootstrapped()

        eventually(caught_up, timeout, f"replica caught up to {ends}", interval=0.005)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        assert self.loop is not None and self._thread is not None and self.replica is not None
        self.loop.stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        self.replica.close()


@pytest.fixture
def agent_login(kafka_cluster: KafkaCluster, topic_prefix: str, unique_id: str) -> KafkaLogin:
    """The Kafka login of this test's store `unique_id` (see store_login)."""
    return store_login(kafka_cluster, unique_id, topic_prefix)


@pytest.fixture
def agent_loop(
    kafka_cluster: KafkaCluster,
    topic_prefix: str,
    tmp_path: Path,
    unique_id: str,
    agent_login: KafkaLogin,
) -> Iterator[Callable[[], LoopRunner]]:
    """`agent_loop()` makes a LoopRunner on this test's topics and replica file, logged in as
    the store `unique_id`."""
    runners: list[LoopRunner] = []

    def make() -> LoopRunner:
        db = tmp_path / "replica.db"
        runner = LoopRunner(kafka_cluster.bootstrap, topic_prefix, db, unique_id, agent_login)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        if runner.running:
            runner.stop()
