"""scripts/mariadb: start, reuse, connect as invctl, stop without leftovers; a 3-node Galera
cluster that replicates, and takes a stopped or killed node back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from contextlib import closing
from pathlib import Path

import pymysql

from harness.proc import pids_where
from harness.waiting import eventually
from tests.support.galera import (
    connect,
    free_galera_port,
    mariadb_script,
    query,
    start_cluster,
    wsrep_state,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mariadb"


def _have_mariadbd() -> bool:
    return shutil.which("mariadbd") is not None or os.access("/usr/sbin/mariadbd", os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _server_pids(datadir: Path) -> list[int]:
    return pids_where(lambda argv: f"--datadir={datadir}".encode() in argv)


def test_start_reuse_connect_stop(tmp_path: Path) -> None:
    assert _have_mariadbd(), "mariadb-server is not installed: run scripts/dev setup"
    run_dir = tmp_path / "mdb"
    port = _free_port()
    url = f"mysql://invctl:invctl@127.0.0.1:{port}/"
    try:
        started = _run("start", "--dir", str(run_dir), "--port", str(port))
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip().splitlines()[-1] == url

        again = _run("start", "--dir", str(run_dir), "--port", str(port))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == url
        assert "already running" in again.stderr

        status = _run("status", "--dir", str(run_dir))
        assert status.returncode == 0
        assert status.stdout.strip().splitlines()[-1] == url

        conn = pymysql.connect(
            host="127.0.0.1", port=port, user="invctl", password="invctl", autocommit=True
        )
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE probe")
                cur.execute("CREATE TABLE probe.t (id INT PRIMARY KEY, s VARCHAR(8))")
                cur.execute("INSERT INTO probe.t VALUES (1, %s)", ("é🙂",))
                cur.execute("SELECT s FROM probe.t")
                assert cur.fetchone() == ("é🙂",)
                cur.execute("DROP DATABASE probe")
        finally:
            conn.close()
    finally:
        stopped = _run("stop", "--dir", str(run_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert _server_pids(run_dir.resolve() / "data") == []
    assert _run("status", "--dir", str(run_dir)).returncode == 3


def _node_pid(run_dir: Path, node: int) -> int:
    return int((run_dir / f"node-{node}" / "mysqld.pid").read_text().strip())


def _status_lines(run_dir: Path) -> tuple[int, list[str]]:
    status = mariadb_script("status", "--dir", str(run_dir))
    return status.returncode, status.stdout.strip().splitlines()


def test_three_node_cluster_replicates_and_takes_a_node_back(tmp_path: Path) -> None:
    assert _have_mariadbd(), "mariadb-server is not installed: run scripts/dev setup"
    run_dir = tmp_path / "galera"
    port = free_galera_port()
    urls = [f"mysql://invctl:invctl@127.0.0.1:{port + k}/" for k in range(3)]
    try:
        assert start_cluster(run_dir, port) == urls
        for url in urls:
            assert wsrep_state(url) == ("Synced", 3)
        with closing(connect(urls[0])) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE probe")
            cur.execute("CREATE TABLE probe.t (id INT PRIMARY KEY, s VARCHAR(8))")
            cur.execute("INSERT INTO probe.t VALUES (1, %s)", ("é🙂",))
        for url in urls[1:]:
            assert query(url, "SELECT id, s FROM probe.t") == [(1, "é🙂")]
        assert _status_lines(run_dir) == (
            0,
            [f"node-{k + 1} running Synced 3 {url}" for k, url in enumerate(urls)],
        )

        # One node stopped: the others go on; it comes back with what it missed.
        assert mariadb_script("stop", "--dir", str(run_dir), "--node", "2").returncode == 0
        code, lines = _status_lines(run_dir)
        assert (code, lines[1]) == (4, f"node-2 stopped - - {urls[1]}")
        eventually(lambda: wsrep_state(urls[0]) == ("Synced", 2), what="node 2 gone")
        query(urls[0], "INSERT INTO probe.t VALUES (2, 'missed')")
        assert start_cluster(run_dir, port) == urls
        assert query(urls[1], "SELECT COUNT(*) FROM probe.t") == [(2,)]

        # One node killed: it recovers its position and rejoins.
        os.kill(_node_pid(run_dir, 3), signal.SIGKILL)
        eventually(lambda: wsrep_state(urls[0]) == ("Synced", 2), what="node 3 gone")
        query(urls[0], "INSERT INTO probe.t VALUES (3, 'killed')")
        assert start_cluster(run_dir, port) == urls
        for url in urls:
            assert wsrep_state(url) == ("Synced", 3)
        assert query(urls[2], "SELECT COUNT(*) FROM probe.t") == [(3,)]

        # All stopped: the last one down bootstraps the cluster again.
        assert mariadb_script("stop", "--dir", str(run_dir)).returncode == 0
        assert _status_lines(run_dir)[0] == 3
        assert start_cluster(run_dir, port) == urls
        assert query(urls[1], "SELECT COUNT(*) FROM probe.t") == [(3,)]
    finally:
        stopped = mariadb_script("stop", "--dir", str(run_dir))
    assert stopped.returncode == 0, stopped.stderr
    for node in (1, 2, 3):
        assert _server_pids(run_dir.resolve() / f"node-{node}" / "data") == []
