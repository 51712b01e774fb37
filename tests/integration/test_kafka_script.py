"""scripts/kafka against real brokers: start, serve, restart with data, stop without leftovers;
and `--security sasl_ssl`: TLS + SCRAM for clients, certificate-authenticated nodes, ACLs."""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ConfigResource,
    ConfigResourceType,
    ResourcePattern,
    ResourceType,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError
from kafka.structs import TopicPartition

from harness.topics import create_topics
from harness.waiting import eventually

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.kafka_security import KafkaCluster
    from tests.conftest import KafkaScript

Settings = dict[str, Any]
INTERNAL_PORT_OFFSET = 200
SECURE_ENV_KEYS = [
    "INVCTL_KAFKA_SECURITY_PROTOCOL",
    "INVCTL_KAFKA_SASL_MECHANISM",
    "INVCTL_KAFKA_CA_FILE",
    "INVCTL_KAFKA_USERNAME",
    "INVCTL_KAFKA_PASSWORD_FILE",
    "INVCTL_KAFKA",
]
# How long a client that must be turned away keeps trying before it gives up.
REFUSED_TIMEOUT_MS = 1500


@dataclass
class Cluster:
    """One cluster directory driven through scripts/kafka."""

    script: KafkaScript
    dir: Path
    nodes: int
    port: int
    security: str = "plaintext"

    def run(self, command: str, *args: str) -> tuple[int, str, str]:
        result = self.script(command, "--dir", str(self.dir), *args)
        return result.returncode, result.stdout, result.stderr

    def start(self) -> str:
        code, out, err = self.run(
            "start",
            "--nodes", str(self.nodes),
            "--port", str(self.port),
            "--security", self.security,
        )  # fmt: skip
        assert code == 0, err
        return out.strip().splitlines()[-1]

    def client_env(self) -> dict[str, str]:
        """DIR/client.env as a dict (its values are shell-quoted)."""
        pairs = {}
        for line in (self.dir / "client.env").read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                [pairs[key]] = shlex.split(value)
        return pairs

    def admin_settings(self) -> Settings:
        """kafka-python settings for the admin, from client.env alone."""
        env = self.client_env()
        return {
            "security_protocol": env["INVCTL_KAFKA_SECURITY_PROTOCOL"],
            "sasl_mechanism": env["INVCTL_KAFKA_SASL_MECHANISM"],
            "sasl_plain_username": env["INVCTL_KAFKA_USERNAME"],
            "sasl_plain_password": Path(env["INVCTL_KAFKA_PASSWORD_FILE"]).read_text().strip(),
            "ssl_cafile": env["INVCTL_KAFKA_CA_FILE"],
            "ssl_check_hostname": True,
        }

    def user_settings(self, user: str, password: str) -> Settings:
        admin = self.admin_settings()
        return {**admin, "sasl_plain_username": user, "sasl_plain_password": password}

    @property
    def tls(self) -> Path:
        return self.dir / "tls"

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


def produce(bootstrap: str, topic: str, *values: bytes, **settings: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **settings)
    try:
        for value in values:
            producer.send(topic, key=b"key", value=value).get(timeout=60)
    finally:
        producer.close()


def consume_all(bootstrap: str, topic: str, timeout: float = 60, **settings: Any) -> list[bytes]:
    """Every value in partition 0 of topic, read from the beginning to its end offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **settings)
    partition = TopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []

        def read_to_end() -> bool:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in records)
            return consumer.position(partition) >= end

        eventually(read_to_end, timeout, f"{topic} read to offset {end}", interval=0)
        return values
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def make_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_script: KafkaScript,
    free_kafka_port: Callable[[int], int],
) -> Iterator[Callable[..., Cluster]]:
    """Clusters of this module, each in its own directory and ports; all stopped at the end."""
    clusters: list[Cluster] = []

    def make(nodes: int, security: str = "plaintext") -> Cluster:
        cluster_dir = tmp_path_factory.mktemp(f"kafka{nodes}n")
        cluster = Cluster(kafka_script, cluster_dir, nodes, free_kafka_port(nodes), security)
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


def test_session_cluster_is_secure_and_serves_its_admin(
    kafka_cluster: KafkaCluster, topic_prefix: str
) -> None:
    topic, admin = f"{topic_prefix}session", kafka_cluster.admin_config()
    create_topics(kafka_cluster.bootstrap, partitions={topic: 1}, configs={}, **admin)
    produce(kafka_cluster.bootstrap, topic, b"hello", **admin)

    assert consume_all(kafka_cluster.bootstrap, topic, **admin) == [b"hello"]
    asked_for_plaintext = os.environ.get("INVCTL_TEST_KAFKA") and not os.environ.get(
        "INVCTL_TEST_KAFKA_ENV"
    )
    assert kafka_cluster.secure or asked_for_plaintext, kafka_cluster.env


def test_start_prints_bootstrap_servers_on_its_last_stdout_line(one_node: Cluster) -> None:
    code, out, err = one_node.run(
        "start", "--port", str(one_node.port), "--security", one_node.security
    )

    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"127.0.0.1:{one_node.port}"


def test_single_node_round_trips_a_record(running_one_node: Cluster, topic_prefix: str) -> None:
    topic = f"{topic_prefix}single"
    create_topics(running_one_node.bootstrap, partitions={topic: 1})
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
    create_topics(running_one_node.bootstrap, partitions={topic: 1}, configs={})
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
    create_topics(
        bootstrap, partitions={topic: 1}, replication_factor=3, configs={"min.insync.replicas": "2"}
    )
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
    create_topics(
        cluster.bootstrap,
        partitions={topic: 1},
        replication_factor=3,
        configs={"min.insync.replicas": "2"},
    )
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


# --- --security sasl_ssl -------------------------------------------------------------------


@pytest.fixture(scope="module", params=[1, 3], ids=["1node", "3nodes"])
def secure(
    request: pytest.FixtureRequest, make_cluster: Callable[..., Cluster]
) -> Iterator[Cluster]:
    """A running sasl_ssl cluster, shared by the secure tests: first 1 node, then 3 nodes."""
    cluster = make_cluster(request.param, "sasl_ssl")
    cluster.start()
    yield cluster
    cluster.run("stop")


def secure_admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap, **cluster.admin_settings())


def create_secure_topic(cluster: Cluster, topic: str, *values: bytes) -> None:
    """As the admin: a topic replicated to every node (min ISR 2 on 3 nodes) holding values."""
    configs = {"min.insync.replicas": str(min(2, cluster.nodes))}
    create_topics(
        cluster.bootstrap,
        partitions={topic: 1},
        replication_factor=cluster.nodes,
        configs=configs,
        **cluster.admin_settings(),
    )
    produce(cluster.bootstrap, topic, *values, **cluster.admin_settings())


def end_offset(bootstrap: str, topic: str, **settings: Any) -> int:
    partition = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **settings)
    try:
        return consumer.end_offsets([partition])[partition]
    finally:
        consumer.close()


def list_topics_as(bootstrap: str, **settings: Any) -> list[str]:
    """The topics a client with these settings may see; KafkaTimeoutError if it cannot connect."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, bootstrap_timeout_ms=REFUSED_TIMEOUT_MS, **settings
    )
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def produce_as(bootstrap: str, topic: str, **settings: Any) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        bootstrap_timeout_ms=REFUSED_TIMEOUT_MS,
        max_block_ms=REFUSED_TIMEOUT_MS,
        **settings,
    )
    try:
        producer.send(topic, value=b"intruder").get(timeout=10)
    finally:
        producer.close(timeout=5)


def rejected_logins(cluster: Cluster) -> int:
    """How many SCRAM logins with a wrong password the brokers have logged so far."""
    verdict = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    logs = [cluster.dir / f"node-{n}" / "broker.log" for n in range(1, cluster.nodes + 1)]
    return sum(log.read_text(errors="replace").count(verdict) for log in logs)


def answers_over_tls(port: int, ca: Path, cert: tuple[Path, Path] | None = None) -> bool:
    """Whether 127.0.0.1:port completes TLS (with this client certificate) and then answers a
    Kafka ApiVersions request; False if the server rejects the handshake or hangs up."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(*map(str, cert))
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"test"  # ApiVersions v0, client id "test"
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(struct.pack(">i", len(request)) + request)
            return len(tls.recv(4)) == 4
    except (ssl.SSLError, ConnectionError):
        return False


def self_signed_node_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate claiming CN=kafka-node, but not signed by the cluster's CA."""
    cert, key = directory / "rogue.pem", directory / "rogue.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=kafka-node", "-days", "1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_secure_start_prints_the_client_config_before_the_bootstrap_servers(
    secure: Cluster,
) -> None:
    code, out, err = secure.run("start")  # a no-op on the running cluster

    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == secure.bootstrap
    assert lines[-2] == f"client config: {secure.dir / 'client.env'}"
    assert "security: sasl_ssl" in lines
    env = secure.client_env()
    assert list(env) == SECURE_ENV_KEYS
    assert env == {
        "INVCTL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "INVCTL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "INVCTL_KAFKA_CA_FILE": str(secure.tls / "ca.pem"),
        "INVCTL_KAFKA_USERNAME": "admin",
        "INVCTL_KAFKA_PASSWORD_FILE": str(secure.dir / "admin.password"),
        "INVCTL_KAFKA": secure.bootstrap,
    }
    status, out, _ = secure.run("status")
    assert status == 0
    assert out.strip().splitlines()[-1] == secure.bootstrap


def test_secure_keys_and_passwords_are_private(secure: Cluster) -> None:
    private = [
        secure.dir / "admin.password",
        secure.dir / "client.env",
        secure.tls / "ca.key",
        secure.tls / "node.key",
        secure.tls / "node-keystore.pem",
    ]

    assert {path.name: path.stat().st_mode & 0o777 for path in private} == {
        path.name: 0o600 for path in private
    }
    assert secure.tls.stat().st_mode & 0o777 == 0o700
    assert len((secure.dir / "admin.password").read_text().strip()) >= 32


def test_secure_admin_from_client_env_creates_produces_and_consumes(
    secure: Cluster, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}secure"
    settings = secure.admin_settings()

    create_secure_topic(secure, topic, b"one", b"two")

    assert consume_all(secure.bootstrap, topic, **settings) == [b"one", b"two"]
    with secure_admin(secure) as admin:
        assert topic in admin.list_topics()
        [described] = admin.describe_topics([topic])
    [partition] = described["partitions"]
    nodes = list(range(1, secure.nodes + 1))
    assert sorted(partition["isr_nodes"]) == nodes  # replication over the certificate listener


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_secure_clients_without_credentials_cannot_list_or_produce(
    secure: Cluster, topic_prefix: str, protocol: str
) -> None:
    topic = f"{topic_prefix}guarded"
    create_secure_topic(secure, topic, b"kept")
    settings: Settings = {"security_protocol": protocol}
    if protocol == "SSL":  # TLS to the right CA, but no SASL login
        settings["ssl_cafile"] = str(secure.tls / "ca.pem")

    with pytest.raises(KafkaTimeoutError):
        list_topics_as(secure.bootstrap, **settings)
    with pytest.raises(KafkaTimeoutError):
        produce_as(secure.bootstrap, topic, **settings)

    assert end_offset(secure.bootstrap, topic, **secure.admin_settings()) == 1


def test_secure_wrong_password_is_an_authentication_error(secure: Cluster) -> None:
    before = rejected_logins(secure)

    # kafka-python 3.0.x retries a bootstrap that failed authentication until its timeout and
    # then raises KafkaTimeoutError. It logs SaslAuthenticationFailedError only when it reads
    # the broker's error response before the connection close that follows it at once (a race
    # it often loses), so the broker's log is the witness here.
    with pytest.raises(KafkaTimeoutError):
        list_topics_as(secure.bootstrap, **secure.user_settings("admin", "not-the-password"))

    assert rejected_logins(secure) > before
    assert list_topics_as(secure.bootstrap, **secure.admin_settings()) is not None


def test_secure_new_user_authenticates_but_may_only_do_what_acls_allow(
    secure: Cluster, topic_prefix: str, unique_id: str
) -> None:
    topic = f"{topic_prefix}acl"
    create_secure_topic(secure, topic, b"secret")
    user, password = f"reader-{unique_id[:8]}", f"pw-{unique_id}"
    with secure_admin(secure) as admin:
        created = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, "SCRAM-SHA-512", password)]
        )
    assert created == {user: None}
    settings = secure.user_settings(user, password)

    # It can log in (once its credential reached the brokers), but sees no topic...
    [visible] = eventually(
        lambda: [list_topics_as(secure.bootstrap, **settings)],  # a 1-item list: truthy
        60,
        f"{user} logs in",
        ignoring=(KafkaTimeoutError,),
    )
    assert visible == []
    # ...and may neither read nor write.
    with pytest.raises(TopicAuthorizationFailedError):
        end_offset(secure.bootstrap, topic, **settings)
    with pytest.raises(TopicAuthorizationFailedError):
        produce_as(secure.bootstrap, topic, **settings)

    read = ACL(
        f"User:{user}",
        "*",
        ACLOperation.READ,
        ACLPermissionType.ALLOW,
        ResourcePattern(ResourceType.TOPIC, topic),
    )
    with secure_admin(secure) as admin:
        result = admin.create_acls([read])
    assert result["failed"] == []

    assert eventually(
        lambda: consume_all(secure.bootstrap, topic, **settings) == [b"secret"],
        60,
        f"{user} may read {topic}",
        ignoring=(TopicAuthorizationFailedError,),
    )
    with pytest.raises(TopicAuthorizationFailedError):
        produce_as(secure.bootstrap, topic, enable_idempotence=False, **settings)
    # The default (idempotent) producer is stopped earlier: InitProducerId needs WRITE on some
    # topic; kafka-python 3.0.x reports that as a plain KafkaError.
    with pytest.raises(KafkaError, match="AuthorizationFailed"):
        produce_as(secure.bootstrap, topic, **settings)
    assert end_offset(secure.bootstrap, topic, **secure.admin_settings()) == 1


def test_secure_client_listener_asks_for_reauthentication_every_minute(secure: Cluster) -> None:
    broker = ConfigResource(ConfigResourceType.BROKER, "1", configs=None)
    with secure_admin(secure) as admin:
        configs = admin.describe_configs([broker], config_filter="all")["broker"]["1"]

    assert configs["listener.name.client.connections.max.reauth.ms"]["value"] == "60000"


def test_secure_node_listeners_accept_only_the_cluster_certificate(
    secure: Cluster, tmp_path: Path
) -> None:
    ca = secure.tls / "ca.pem"
    node_cert = (secure.tls / "node.pem", secure.tls / "node.key")
    rogue_cert = self_signed_node_certificate(tmp_path)

    for port in (secure.port + 100, secure.port + INTERNAL_PORT_OFFSET):  # controller, internal
        assert answers_over_tls(port, ca, node_cert), port
        assert not answers_over_tls(port, ca), port
        assert not answers_over_tls(port, ca, rogue_cert), port


def test_secure_restart_reuses_certificates_and_credentials(
    secure: Cluster, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}kept"
    create_secure_topic(secure, topic, b"before-restart")
    secret_files = [
        secure.dir / "admin.password",
        *(secure.tls / name for name in ("ca.pem", "ca.key", "node.pem", "node-keystore.pem")),
    ]
    before = {path: path.read_bytes() for path in secret_files}

    assert secure.run("stop")[0] == 0
    code, out, err = secure.run("start")  # the recorded mode, without --security

    assert code == 0, err
    assert out.strip().splitlines()[-1] == secure.bootstrap
    assert {path: path.read_bytes() for path in secret_files} == before
    assert consume_all(secure.bootstrap, topic, **secure.admin_settings()) == [b"before-restart"]
