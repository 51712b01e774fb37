"""scripts/kafka against real brokers: start, serve, restart with data, stop without leftovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import KafkaScript


@dataclass
class Cluster:
    """One cluster directory driven through scripts/kafka."""

    script: KafkaScript
    dir: Path
    nodes: int
    port: int

    def run(self, command: str, *args: str) -> tuple[int, str, str]:
        result = self.script(command, "--dir", str(self.dir), *args)
        return result.returncode, result.stdout, result.stderr

    def start(self) -> str:
        code, out, err = self.run("start", "--nodes", str(self.nodes), "--port", str(self.port))
        assert code == 0, err
        return out.strip().splitlines()[-1]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.nodes))

    def pids(self) -> dict[int, int]:
        files = {n: self.dir / f"node-{n}" / "broker.pid" for n in range(1, self.nodes + 1)}
        return {n: int(f.read_text()) for n, f in files.items() if f.exists()}


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def create_topic(bootstrap: str, topic: str, replicas: int, configs: dict[str, str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": replicas, "configs": configs}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, key=b"key", value=value).get(timeout=60)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, timeout: float = 60) -> list[bytes]:
    """Every value in partition 0 of topic, read from the beginning to its end offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def make_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_script: KafkaScript,
    free_kafka_port: Callable[[int], int],
) -> Iterator[Callable[[int], Cluster]]:
    """Clusters of this module, each in its own directory and ports; all stopped at the end."""
    clusters: list[Cluster] = []

    def make(nodes: int) -> Cluster:
        cluster_dir = tmp_path_factory.mktemp(f"kafka{nodes}n")
        cluster = Cluster(kafka_script, cluster_dir, nodes, free_kafka_port(nodes))
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.run("stop")


@pytest.fixture(scope="module")
def one_node(make_cluster: Callable[[int], Cluster]) -> Cluster:
    return make_cluster(1)


@pytest.fixture(scope="module")
def three_nodes(make_cluster: Callable[[int], Cluster]) -> Cluster:
    return make_cluster(3)


@pytest.fixture
def running_one_node(one_node: Cluster) -> Cluster:
    one_node.start()
    return one_node


@pytest.fixture
def running_three_nodes(three_nodes: Cluster) -> Cluster:
    three_nodes.start()
    return three_nodes


def test_session_broker_serves_clients(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}session"
    create_topic(kafka_bootstrap, topic, 1, {})
    produce(kafka_bootstrap, topic, b"hello")

    assert consume_all(kafka_bootstrap, topic) == [b"hello"]


def test_start_prints_bootstrap_servers_on_its_last_stdout_line(one_node: Cluster) -> None:
    code, out, err = one_node.run("start", "--port", str(one_node.port))

    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"127.0.0.1:{one_node.port}"


def test_single_node_round_trips_a_record(running_one_node: Cluster, topic_prefix: str) -> None:
    topic = f"{topic_prefix}single"
    create_topic(running_one_node.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    produce(running_one_node.bootstrap, topic, b"one")

    assert consume_all(running_one_node.bootstrap, topic) == [b"one"]


def test_second_start_is_a_noop_printing_the_same_bootstrap(running_one_node: Cluster) -> None:
    pids_before = running_one_node.pids()

    code, out, err = running_one_node.run("start")

    assert code == 0
    assert out.strip().splitlines()[-1] == running_one_node.bootstrap
    assert "already running" in err
    assert running_one_node.pids() == pids_before


def test_status_exits_0_and_lists_the_bootstrap_while_running(running_one_node: Cluster) -> None:
    code, out, _ = running_one_node.run("status")

    assert code == 0
    assert "node-1: running" in out
    assert out.strip().splitlines()[-1] == running_one_node.bootstrap


def test_stop_leaves_no_process_behind_and_status_exits_3(running_one_node: Cluster) -> None:
    pids = running_one_node.pids()
    assert pids

    code, _, err = running_one_node.run("stop")

    assert code == 0, err
    assert not any(process_alive(pid) for pid in pids.values())
    assert processes_mentioning(str(running_one_node.dir)) == []
    assert running_one_node.pids() == {}
    assert running_one_node.run("status")[0] == 3
    assert running_one_node.run("stop")[0] == 0


def test_restarted_single_node_keeps_its_data(running_one_node: Cluster, topic_prefix: str) -> None:
    topic = f"{topic_prefix}durable"
    create_topic(running_one_node.bootstrap, topic, 1, {})
    produce(running_one_node.bootstrap, topic, b"before-restart")

    assert running_one_node.run("stop")[0] == 0
    assert running_one_node.start() == running_one_node.bootstrap
    produce(running_one_node.bootstrap, topic, b"after-restart")

    assert consume_all(running_one_node.bootstrap, topic) == [b"before-restart", b"after-restart"]


def test_three_nodes_replicate_a_record_written_with_acks_all(
    running_three_nodes: Cluster, topic_prefix: str
) -> None:
    bootstrap = running_three_nodes.bootstrap
    topic = f"{topic_prefix}replicated"
    create_topic(bootstrap, topic, 3, {"min.insync.replicas": "2"})
    produce(bootstrap, topic, b"replicated")

    assert consume_all(bootstrap, topic) == [b"replicated"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    [partition] = described["partitions"]
    assert sorted(partition["replica_nodes"]) == [1, 2, 3]
    assert sorted(partition["isr_nodes"]) == [1, 2, 3]


def test_killed_node_restarts_alone_and_the_cluster_keeps_its_data(
    running_three_nodes: Cluster, topic_prefix: str
) -> None:
    cluster = running_three_nodes
    topic = f"{topic_prefix}failover"
    create_topic(cluster.bootstrap, topic, 3, {"min.insync.replicas": "2"})
    produce(cluster.bootstrap, topic, b"before-kill")
    survivors = {n: pid for n, pid in cluster.pids().items() if n != 2}

    assert cluster.run("kill", "--node", "2")[0] == 0
    code, out, _ = cluster.run("status")
    assert code == 3
    assert "node-2: stopped" in out
    produce(cluster.bootstrap, topic, b"while-down")

    assert cluster.start() == cluster.bootstrap
    assert {n: pid for n, pid in cluster.pids().items() if n != 2} == survivors
    assert cluster.run("status")[0] == 0
    assert consume_all(cluster.bootstrap, topic) == [b"before-kill", b"while-down"]


def test_three_node_stop_leaves_no_process_behind(running_three_nodes: Cluster) -> None:
    pids = running_three_nodes.pids()
    assert len(pids) == 3

    code, _, err = running_three_nodes.run("stop")

    assert code == 0, err
    assert not any(process_alive(pid) for pid in pids.values())
    assert processes_mentioning(str(running_three_nodes.dir)) == []
    assert running_three_nodes.run("status")[0] == 3
