"""scripts/mariadb: start, reuse, connect as invctl, stop without leftovers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pymysql

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
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--datadir={datadir}".encode() in argv:
            pids.append(int(entry.name))
    return pids


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
