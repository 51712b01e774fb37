"""`central backup` and `central restore` as an operator runs them (real processes), on
SQLite and on the real MariaDB server: a backup taken under a steady order load restores
to a database whose stock, ledger, orders and outbox agree; a restore is refused while
central serves and a damaged backup is refused, both changing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.backup import MariadbLogin, client_options, read_manifest
from central.db import connect
from harness.waiting import eventually
from tests.support.central_harness import (
    SECRET,
    mariadb_database,
    mysql_base_url,
    running_central,
    served,
)
from tests.support.processes import BIN, free_port, wait_http
from tests.support.shop import seed_shop

INITIAL = {f"SKU-{i}": 100_000 for i in range(4)}
STORES = ("store-a", "store-b")


def central_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "central"), *args],
        env=central_env(url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def central_env(url: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("INVCTL_")}
    return {**kept, "INVCTL_DATABASE_URL": url, "INVCTL_JWT_SECRET": SECRET}


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.fixture
def other_database(database_url, tmp_path) -> Iterator[str]:
    """A second, empty database of the same kind: where central's is restored after its loss."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'central.db'}"
        return
    with mariadb_database(mysql_base_url()) as url:
        yield url


class OrderLoad:
    """Threads placing small orders through central's HTTP API until stopped."""

    def __init__(self, url: str, keys: dict[str, str], threads: int = 4) -> None:
        self.url, self.keys, self.threads = url, keys, threads
        self.placed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, args=(STORES[i % len(STORES)], i), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> OrderLoad:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self, store: str, n: int) -> None:
        skus = sorted(INITIAL)
        headers = {"X-API-Key": self.keys[store]}
        with httpx.Client(base_url=f"{self.url}/api/v1", timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                lines = [{"sku": skus[(n + i) % 4], "quantity": 1 + i % 3}]
                if i % 2:
                    lines.append({"sku": skus[(n + i + 1) % 4], "quantity": 1})
                key = {"Idempotency-Key": uuid.uuid4().hex}
                response = http.post("/orders", json={"lines": lines}, headers=headers | key)
                with self._lock:
                    if response.status_code == 201:
                        self.placed += 1
                    else:
                        self.errors.append(f"{response.status_code} {response.text[:200]}")


def restored_state(url: str) -> dict[str, Any]:
    db = connect(url)
    try:
        with db.connection_context():

            def rows(query: str) -> list[tuple[Any, ...]]:
                return list(db.execute_sql(query).fetchall())

            return {
                "stock": {sku: int(q) for sku, q in rows("SELECT sku, quantity FROM stock")},
                "sold": {
                    sku: int(q)
                    for sku, q in rows(
                        "SELECT l.sku, SUM(l.quantity) FROM order_lines l "
                        "JOIN orders o ON o.id = l.order_id WHERE o.status = 'confirmed' "
                        "GROUP BY l.sku"
                    )
                },
                "orders": {r[0] for r in rows("SELECT id FROM orders")},
                "lines": {
                    (o, s, int(q))
                    for o, s, q in rows("SELECT order_id, sku, quantity FROM order_lines")
                },
                "movements": {
                    (o, s, -int(d))
                    for o, s, d in rows(
                        "SELECT order_id, sku, delta FROM stock_movements "
                        "WHERE order_id IS NOT NULL"
                    )
                },
                "events": [json.loads(p) for (p,) in rows("SELECT payload FROM outbox")],
                "outbox_max": int(rows("SELECT COALESCE(MAX(id), 0) FROM outbox")[0][0]),
                "epoch": int(rows("SELECT MAX(epoch) FROM epochs")[0][0]),
            }
    finally:
        db.close_all()


def test_a_backup_under_order_load_restores_stock_ledger_orders_and_outbox_that_agree(
    database_url, other_database, tmp_path
):
    backup = tmp_path / "central.backup"
    with running_central(database_url) as harness, served(harness) as url:
        shop = seed_shop(url, INITIAL, STORES)
        with OrderLoad(url, shop.keys) as load:
            eventually(lambda: load.placed >= 20, 60, "orders flowing")
            before = load.placed
            ok(central_cli(database_url, "backup", "--to", str(backup)))
            after = load.placed
            eventually(lambda: load.placed >= after + 20, 60, "orders flowing after the backup")
        assert load.errors == []

    restored = ok(central_cli(other_database, "restore", str(backup), "--yes"))

    assert "epoch 2" in restored
    manifest = read_manifest(backup)
    state = restored_state(other_database)
    assert before <= len(state["orders"]) <= after + load.threads, "a snapshot taken mid-load"
    for sku, quantity in INITIAL.items():
        assert quantity - state["sold"].get(sku, 0) == state["stock"][sku], sku
    assert {order for order, _, _ in state["lines"]} == state["orders"]
    assert state["movements"] == state["lines"], "every line has its ledger movement"
    order_events = {
        (e["data"]["order_id"], e["data"]["sku"], -e["data"]["delta"])
        for e in state["events"]
        if e["type"] == "stock.changed" and e["data"]["order_id"]
    }
    assert order_events == state["lines"], "every line has its outbox event"
    assert state["outbox_max"] == manifest.facts.outbox_position
    assert manifest.facts.counts["orders"] == len(state["orders"])
    assert manifest.facts.counts["order_lines"] == len(state["lines"])
    assert state["epoch"] == 2


def test_a_restore_is_refused_while_central_serves_and_done_once_it_stopped(database_url, tmp_path):
    ok(central_cli(database_url, "migrate"))
    backup = tmp_path / "central.backup"
    ok(central_cli(database_url, "backup", "--to", str(backup)))
    port = free_port()
    log = (tmp_path / "central.log").open("wb")
    serve = subprocess.Popen(
        [str(BIN / "central"), "serve", "--no-relay", "--port", str(port)],
        env=central_env(database_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process=serve)

        refused = central_cli(database_url, "restore", str(backup), "--yes")

        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1
        assert refused.stderr.rstrip().endswith("[restore.central_running]"), refused.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        log.close()
    assert "epoch 1" in ok(central_cli(database_url, "status"))

    # The server drops a closed connection from its process list a moment after it closed.
    done = eventually(
        lambda: ok(central_cli(database_url, "restore", str(backup), "--yes")),
        30,
        "the restore once central stopped",
    )

    assert "epoch 2" in done
    status = ok(central_cli(database_url, "status"))
    assert status.splitlines()[0] == "epoch 2" and "last restore:" in status


def test_a_damaged_backup_is_refused_and_the_database_is_left_alone(database_url, tmp_path):
    ok(central_cli(database_url, "migrate"))
    backup = tmp_path / "central.backup"
    ok(central_cli(database_url, "backup", "--to", str(backup)))
    with tarfile.open(backup) as tar:
        payload = tar.getmember(read_manifest(backup).payload_name)
    data = bytearray(backup.read_bytes())
    data[payload.offset_data + payload.size // 2] ^= 0x01
    backup.write_bytes(bytes(data))

    refused = central_cli(database_url, "restore", str(backup), "--yes")

    assert refused.returncode == 2
    assert refused.stderr.rstrip().endswith("[backup.checksum_mismatch]"), refused.stderr
    assert ok(central_cli(database_url, "status")).splitlines()[0] == "epoch 1"


def test_a_backup_file_is_never_overwritten(database_url, tmp_path):
    ok(central_cli(database_url, "migrate"))
    backup = tmp_path / "central.backup"
    backup.write_text("an older backup")

    refused = central_cli(database_url, "backup", "--to", str(backup))

    assert refused.returncode == 2 and "[backup.exists]" in refused.stderr
    assert backup.read_text() == "an older backup"


def test_the_mariadb_tools_read_the_password_as_central_has_it(tmp_path):
    password = "p\"w\\#x y'z;"
    login = MariadbLogin("db.example", 3307, "central", password, "invctl")

    with client_options(login) as options:
        assert options.stat().st_mode & 0o777 == 0o600
        assert options.parent.stat().st_mode & 0o777 == 0o700
        printed = subprocess.run(
            ["my_print_defaults", f"--defaults-file={options}", "client"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()

    assert f"--password={password}" in printed
    assert "--host=db.example" in printed and "--port=3307" in printed
    assert not Path(options).exists(), "removed afterwards"
