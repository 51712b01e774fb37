"""scripts/kafka argument and environment handling that needs neither Java nor a broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
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


def record_cluster(cluster_dir: Path, nodes: int, port: int) -> None:
    """Make cluster_dir look like a formatted cluster that is not running."""
    cluster_dir.mkdir(parents=True, exist_ok=True)
    state = {"kafka_version": "4.3.1", "nodes": nodes, "port": port, "cluster_id": "x"}
    (cluster_dir / "cluster.json").write_text(json.dumps(state))


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
