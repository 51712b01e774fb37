"""scripts/kafka argument and environment handling that needs neither Java nor a broker."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.conftest import KafkaScript

REAL_PYTHON = Path(os.path.realpath(sys.executable))


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A directory holding only a python3, to use as the whole PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(REAL_PYTHON)
    return bin_dir


def fake_java(bin_dir: Path, version: str) -> None:
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(0o755)


def run_with_path(
    script: KafkaScript, bin_dir: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the script through its shebang with PATH=bin_dir and a minimal environment."""
    return subprocess.run(
        [str(script.path), *args],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def record_cluster(
    cluster_dir: Path, nodes: int, port: int, security: str | None = "plaintext"
) -> None:
    """Make cluster_dir look like a formatted cluster that is not running."""
    cluster_dir.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"kafka_version": "4.3.1", "nodes": nodes, "port": port}
    if security is not None:
        state["security"] = security
    (cluster_dir / "cluster.json").write_text(json.dumps({**state, "cluster_id": "x"}))


@pytest.fixture(scope="module")
def script_module(kafka_script: KafkaScript) -> Iterator[ModuleType]:
    """scripts/kafka imported as a module (its main() does not run)."""
    name = "invctl_scripts_kafka"
    loader = importlib.machinery.SourceFileLoader(name, str(kafka_script.path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def openssl(*args: str | Path) -> str:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout


def test_missing_java_gives_one_line_install_hint_and_exit_2(
    kafka_script: KafkaScript, bare_path: Path, tmp_path: Path
) -> None:
    result = run_with_path(kafka_script, bare_path, "start", "--dir", str(tmp_path / "cluster"))

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("scripts/kafka: java 17+ not found")
    assert "apt-get install -y openjdk-17-jre-headless" in line


def test_java_older_than_17_is_rejected_with_its_version(
    kafka_script: KafkaScript, bare_path: Path, tmp_path: Path
) -> None:
    fake_java(bare_path, "11.0.22")

    result = run_with_path(kafka_script, bare_path, "start", "--dir", str(tmp_path / "cluster"))

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "java 17+ not found" in line
    assert "java 11" in line


def test_missing_maven_with_empty_jar_cache_gives_one_line_hint(
    kafka_script: KafkaScript, bare_path: Path, tmp_path: Path
) -> None:
    fake_java(bare_path, "17.0.15")
    cache = tmp_path / "cache" / "libs"

    result = run_with_path(
        kafka_script,
        bare_path,
        "start",
        "--dir",
        str(tmp_path / "cluster"),
        INVCTL_KAFKA_CACHE=str(cache),
    )

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("scripts/kafka: mvn not found")
    assert "apt-get install -y maven" in line
    assert not cache.exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["start"],
        ["launch", "--dir", "x"],
        ["start", "--dir", "x", "--nodes", "0"],
        ["start", "--dir", "x", "--nodes", "10"],
        ["start", "--dir", "x", "--port", "80"],
        ["start", "--dir", "x", "--port", "many"],
        ["kill", "--dir", "x"],
        ["start", "--dir", "x", "--security", "tls"],
    ],
)
def test_bad_arguments_exit_2_with_usage(kafka_script: KafkaScript, args: list[str]) -> None:
    result = kafka_script(*args)

    assert result.returncode == 2
    assert "usage: scripts/kafka" in result.stderr


def test_help_documents_the_port_scheme(kafka_script: KafkaScript) -> None:
    result = kafka_script("--help")

    assert result.returncode == 0
    assert "P + K - 1" in result.stdout
    assert "P + 100 + K - 1" in result.stdout


def test_start_with_another_node_count_than_recorded_is_refused(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=3, port=19092)

    result = kafka_script("start", "--dir", str(tmp_path), "--nodes", "1")

    assert result.returncode == 2
    assert "holds a 3-node cluster, not 1 nodes" in result.stderr


def test_start_with_another_port_than_recorded_is_refused(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=1, port=19092)

    result = kafka_script("start", "--dir", str(tmp_path), "--port", "19500")

    assert result.returncode == 2
    assert "base port 19092, not 19500" in result.stderr


def test_status_of_stopped_cluster_lists_nodes_and_exits_3(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=3, port=21000)

    result = kafka_script("status", "--dir", str(tmp_path))

    assert result.returncode == 3
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["node-1", "node-2", "node-3"]
    assert all("stopped" in line for line in lines[:3])
    assert lines[-1] == "127.0.0.1:21000,127.0.0.1:21001,127.0.0.1:21002"


def test_status_of_unknown_dir_exits_3_without_creating_it(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    result = kafka_script("status", "--dir", str(tmp_path / "none"))

    assert result.returncode == 3
    assert not (tmp_path / "none").exists()


def test_stop_with_nothing_running_succeeds(kafka_script: KafkaScript, tmp_path: Path) -> None:
    record_cluster(tmp_path / "stopped", nodes=1, port=21000)

    assert kafka_script("stop", "--dir", str(tmp_path / "stopped")).returncode == 0
    assert kafka_script("stop", "--dir", str(tmp_path / "none")).returncode == 0
    assert not (tmp_path / "none").exists()


def test_stale_pid_file_of_a_foreign_process_counts_as_stopped(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=1, port=21000)
    (tmp_path / "node-1").mkdir()
    (tmp_path / "node-1" / "broker.pid").write_text(f"{os.getpid()}\n")

    status = kafka_script("status", "--dir", str(tmp_path))
    stop = kafka_script("stop", "--dir", str(tmp_path))

    assert status.returncode == 3
    assert "node-1: stopped" in status.stdout
    assert stop.returncode == 0
    assert not (tmp_path / "node-1" / "broker.pid").exists()


def test_kill_of_a_node_outside_the_cluster_exits_2(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=3, port=21000)

    result = kafka_script("kill", "--dir", str(tmp_path), "--node", "4")

    assert result.returncode == 2
    assert "--node must be 1..3" in result.stderr


def test_help_documents_the_security_modes_and_the_default(kafka_script: KafkaScript) -> None:
    result = kafka_script("start", "--help")

    assert result.returncode == 0
    assert "{plaintext,sasl_ssl}" in result.stdout
    assert "else sasl_ssl" in " ".join(result.stdout.split())


def test_a_new_cluster_is_secure_by_default_from_one_constant(script_module: ModuleType) -> None:
    cluster = script_module.cluster_for_start(Path("/nonexistent"), None, None)

    assert script_module.DEFAULT_SECURITY == "sasl_ssl"
    assert cluster.security == script_module.DEFAULT_SECURITY


def test_start_with_another_security_than_recorded_is_refused(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=1, port=19092, security="sasl_ssl")

    result = kafka_script("start", "--dir", str(tmp_path), "--security", "plaintext")

    assert result.returncode == 2
    assert "holds a sasl_ssl cluster, not plaintext" in result.stderr


def test_status_of_a_stopped_sasl_ssl_cluster_shows_every_port_and_the_client_config(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=2, port=21000, security="sasl_ssl")

    result = kafka_script("status", "--dir", str(tmp_path))

    assert result.returncode == 3
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (
        "node-1: stopped, broker 127.0.0.1:21000, inter-broker 127.0.0.1:21200, "
        "controller 127.0.0.1:21100"
    )
    assert lines[-3:] == [
        "security: sasl_ssl",
        f"client config: {tmp_path / 'client.env'}",
        "127.0.0.1:21000,127.0.0.1:21001",
    ]


def test_a_cluster_recorded_before_security_modes_is_plaintext(
    kafka_script: KafkaScript, tmp_path: Path
) -> None:
    record_cluster(tmp_path, nodes=1, port=21000, security=None)

    result = kafka_script("status", "--dir", str(tmp_path))

    assert "security: plaintext" in result.stdout.splitlines()
    assert "inter-broker" not in result.stdout


def test_sasl_ssl_start_without_openssl_gives_one_line_hint(
    kafka_script: KafkaScript,
    bare_path: Path,
    tmp_path: Path,
    free_kafka_port: Callable[[int], int],
) -> None:
    fake_java(bare_path, "17.0.15")
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-4.3.1.jar").touch()
    cluster_dir = tmp_path / "cluster"

    result = run_with_path(
        kafka_script,
        bare_path,
        "start",
        "--dir", str(cluster_dir),
        "--port", str(free_kafka_port(1)),
        "--security", "sasl_ssl",
        INVCTL_KAFKA_CACHE=str(libs),
    )  # fmt: skip

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("scripts/kafka: openssl not found")
    assert "apt-get install -y openssl" in line
    assert not (cluster_dir / "cluster.json").exists()
    assert not (cluster_dir / "tls").exists()


def test_tls_material_is_a_ca_and_a_private_node_certificate_for_loopback(
    script_module: ModuleType, tmp_path: Path
) -> None:
    tls = script_module.Tls(tmp_path / "tls")

    script_module.ensure_tls(tls)

    assert openssl("verify", "-CAfile", tls.ca_cert, tls.node_cert).strip().endswith(": OK")
    assert "CN = kafka-node" in openssl("x509", "-noout", "-subject", "-in", tls.node_cert)
    extensions = openssl(
        "x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage", "-in", tls.node_cert
    )
    assert "IP Address:127.0.0.1" in extensions
    assert "DNS:localhost" in extensions
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in extensions
    modes = {path.name: path.stat().st_mode & 0o777 for path in tls.dir.iterdir()}
    assert modes == {
        "ca.pem": 0o644,
        "ca.key": 0o600,
        "node.pem": 0o644,
        "node.key": 0o600,
        "node-keystore.pem": 0o600,
    }
    assert tls.dir.stat().st_mode & 0o777 == 0o700
    keystore = tls.keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM wants
    assert keystore.count("-----BEGIN CERTIFICATE-----") == 2  # node certificate, then the CA


def test_tls_certificates_are_valid_from_a_day_back_for_clients_whose_clock_is_behind(
    script_module: ModuleType, tmp_path: Path
) -> None:
    tls = script_module.Tls(tmp_path / "tls")

    script_module.ensure_tls(tls)

    for cert in (tls.ca_cert, tls.node_cert):
        start = openssl("x509", "-noout", "-startdate", "-in", cert).strip().split("=", 1)[1]
        valid_from = datetime.strptime(start, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
        assert valid_from < datetime.now(UTC) - timedelta(hours=12), (cert, start)


def test_tls_material_is_reused_by_a_second_start(
    script_module: ModuleType, tmp_path: Path
) -> None:
    tls = script_module.Tls(tmp_path / "tls")
    script_module.ensure_tls(tls)
    before = {path.name: path.read_bytes() for path in tls.dir.iterdir()}

    script_module.ensure_tls(tls)

    assert {path.name: path.read_bytes() for path in tls.dir.iterdir()} == before


def test_sasl_ssl_brokers_grant_nothing_to_unauthenticated_principals(
    script_module: ModuleType, tmp_path: Path
) -> None:
    cluster = script_module.Cluster(tmp_path, 3, 21000, "sasl_ssl")

    props = dict(
        line.split("=", 1)
        for line in script_module.server_properties(cluster, 2).splitlines()
        if not line.startswith("#")
    )

    assert props["listeners"] == (
        "CLIENT://127.0.0.1:21001,INTERNAL://127.0.0.1:21201,CONTROLLER://127.0.0.1:21101"
    )
    assert props["listener.security.protocol.map"] == (
        "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    )
    assert props["listener.name.internal.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.client.connections.max.reauth.ms"] == "60000"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=kafka-node"
    assert "ANONYMOUS" not in props["super.users"]


def test_client_env_is_private_and_shell_quoted(script_module: ModuleType, tmp_path: Path) -> None:
    cluster_dir = tmp_path / "with space"
    cluster_dir.mkdir()
    cluster = script_module.Cluster(cluster_dir, 1, 21000, "sasl_ssl")

    script_module.write_client_env(cluster)

    env_file = cluster_dir / "client.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    sourced = subprocess.run(
        ["sh", "-c", '. "$1" && echo "$INVCTL_KAFKA_CA_FILE|$INVCTL_KAFKA"', "sh", str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout.strip() == f"{cluster_dir}/tls/ca.pem|127.0.0.1:21000"
