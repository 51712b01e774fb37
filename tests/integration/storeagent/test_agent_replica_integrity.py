"""The replica file is the store's own, with real processes and real files: `central serve`,
`storeagent run` agents on their replica files, the real broker, `storeagent salvage` and
`invctl sales replay`.

Central is unreachable for sales through a relay that answers every order 503 (heartbeats
pass, so central hears of the queue), so the agents queue their sales offline. Then:

- a replica copied from store B is started as store A: refused (one line, exit 2), and no
  sale of B is placed under A;
- the replica file is deleted while its agent runs: the next sales are refused (503, never
  202) and /readyz says why; restarted on a fresh file, the agent refuses to start while
  central last heard of queued sales;
- the replica is truncated after a checkpoint: the agent refuses it (one line, exit 2),
  `storeagent salvage` gets its queued sales out, `invctl sales replay` places each exactly
  once at central (a second run places nothing).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.agent_command import storeagent_run
from harness.waiting import eventually
from tests.support.central_relay import OrdersRelay
from tests.support.offline_chaos import (
    central_orders,
    central_stock,
    offline_flags,
    orders_for_key,
    replica_file,
)
from tests.support.processes import BIN, Stack, free_port, stack
from tests.support.replica_pages import cut_after_the_sales
from tests.support.shop import Shop, seed_shop

MILK = "MILK-1L"
RUN_TIMEOUT_S = 60.0
NOT_QUEUED = {"central.unavailable", "database.unavailable"}


@pytest.fixture
def running(tmp_path, kafka_cluster, topic_prefix) -> Iterator[Stack]:
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        yield s


def agent_args(s: Stack, store: str, *, db: Path, central: str, extra: list[str]) -> list[str]:
    return storeagent_run(
        store,
        central=central,
        kafka=s.kafka.bootstrap,
        db=db,
        port=free_port(),
        topic_prefix=s.prefix,
        extra=extra,
    )


def run_to_exit(
    s: Stack, shop: Shop, store: str, *, db: Path, central: str, extra: list[str] = ()
) -> tuple[int, list[dict[str, Any]]]:
    """`storeagent run` expected to stop by itself: its exit code and its log lines (each must
    be one JSON object: no traceback, no stray output)."""
    done = subprocess.run(
        agent_args(s, store, db=db, central=central, extra=list(extra)),
        env={**s.env, "STOREAGENT_API_KEY": shop.keys[store], **s.kafka.agent_env()},
        cwd=s.workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, [json.loads(line) for line in lines if line.strip()]


def the_one_error(lines: list[dict[str, Any]]) -> dict[str, Any]:
    [error] = [line for line in lines if line["level"] == "error"]
    return error


def start_selling_agent(
    s: Stack,
    shop: Shop,
    store: str,
    relay: OrdersRelay,
    *,
    db: Path,
    heartbeat_s: str = "0",
    flags: tuple[str, ...] = (),
) -> str:
    """An agent of `store` with offline mode on, talking to central through `relay`, once its
    replica is ready to sell."""
    extra = [*offline_flags(10, 50), "--central", relay.url, "--db", str(db)]
    extra += ["--heartbeat-seconds", heartbeat_s, *flags]
    url = s.start_agent(store, shop.keys[store], extra_args=extra).url
    eventually(lambda: stock_known(url), 60, f"{MILK} replicated")
    return url


def sell(s: Stack, agent: str, key: str, quantity: int = 1) -> httpx.Response:
    body = {"lines": [{"sku": MILK, "quantity": quantity}]}
    return httpx.post(
        f"{agent}/orders",
        json=body,
        headers={**s.agent_headers(), "Idempotency-Key": key},
        timeout=30,
    )


def stop_agent(s: Stack, store: str) -> None:
    [service] = [x for x in s.services if x.name == f"agent-{store}" and x.process.poll() is None]
    service.stop()


def local_rows(db: Path) -> dict[str, tuple[str, str | None]]:
    """idempotency key -> (status, store id), read from a replica file."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT idempotency_key, status, store_id FROM local_orders")
        return {key: (status, store) for key, status, store in rows.fetchall()}


def test_a_replica_copied_from_another_store_is_refused_and_none_of_its_sales_placed(
    running: Stack, unique_id: str
):
    s = running
    store_a, store_b = f"a-{unique_id[:8]}", f"b-{unique_id[:8]}"
    shop = seed_shop(s.central_url, {MILK: 50}, [store_a, store_b])
    db_b = replica_file(s, store_b)
    keys = [f"{store_b}-{n}" for n in range(4)]
    with OrdersRelay(s.central_url) as relay:
        agent_b = start_selling_agent(s, shop, store_b, relay, db=db_b)
        assert [sell(s, agent_b, key).status_code for key in keys] == [202] * 4
        stop_agent(s, store_b)
    copy = replica_file(s, store_a)
    shutil.copyfile(db_b, copy)

    code, lines = run_to_exit(s, shop, store_a, db=copy, central=s.central_url)

    error = the_one_error(lines)
    assert code == 2
    assert (error["event"], error["code"]) == ("agent.replica_refused", "replica.other_store")
    assert store_a in error["message"] and store_b in error["message"]
    assert central_orders(shop, store_a) == []
    assert all(orders_for_key(shop, store_b, key) == [] for key in keys)
    assert central_stock(shop)[MILK][0] == 50
    assert {key: local_rows(copy)[key] for key in keys} == {
        key: ("queued", store_b) for key in keys
    }


def stock_known(agent: str) -> bool:
    return httpx.get(f"{agent}/stock/{MILK}", timeout=5).status_code == 200


def last_heard(shop: Shop, store: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{shop.central}/api/v1/stores/heartbeat", headers=shop.store_headers(store), timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["reported"])


def test_a_deleted_replica_file_refuses_new_sales_and_a_fresh_one_refuses_to_start_empty(
    running: Stack, unique_id: str
):
    s, store = running, f"del-{unique_id[:8]}"
    shop = seed_shop(s.central_url, {MILK: 50}, [store])
    db = replica_file(s, store)
    with OrdersRelay(s.central_url) as relay:
        agent = start_selling_agent(s, shop, store, relay, db=db, heartbeat_s="0.5")
        assert [sell(s, agent, f"{store}-{n}", 2).status_code for n in range(2)] == [202, 202]
        eventually(lambda: last_heard(shop, store).get("offline_queue") == 2, 30, "heard")

        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
        after = [sell(s, agent, f"{store}-after-{n}") for n in range(3)]
        ready = httpx.get(f"{agent}/readyz", timeout=10)
        status = httpx.get(f"{agent}/sync/status", timeout=10)
        stop_agent(s, store)

        code, lines = run_to_exit(s, shop, store, db=db, central=relay.url)
        # the operator salvaged the old file's sales: one start with the override
        start_selling_agent(s, shop, store, relay, db=db, flags=("--accept-lost-queue",))
        stop_agent(s, store)

    assert all(a.status_code == 503 for a in after), [a.text for a in after]
    assert {a.json()["error"]["code"] for a in after} <= NOT_QUEUED
    assert (ready.status_code, ready.json()["error"]["code"]) == (503, "replica.missing")
    assert says_replica_missing(status)
    assert orders_for_key(shop, store, f"{store}-after-0") == []
    error = the_one_error(lines)
    assert code == 2
    assert (error["event"], error["code"]) == ("agent.replica_refused", "replica.queue_lost")
    assert error["central_offline_queue"] == 2
    assert "--accept-lost-queue" in error["message"]


def says_replica_missing(response: httpx.Response) -> bool:
    body = response.json()
    if response.status_code == 503:
        return bool(body["error"]["code"] == "replica.missing")
    return body["ready"] is False and "replica.missing" in [p["code"] for p in body["problems"]]


def test_a_truncated_replica_is_refused_and_its_queued_sales_are_salvaged_and_placed_once(
    running: Stack, unique_id: str, tmp_path: Path
):
    s, store = running, f"cut-{unique_id[:8]}"
    shop = seed_shop(s.central_url, {MILK: 50}, [store])
    db = replica_file(s, store)
    keys = {f"{store}-{n}": n + 1 for n in range(3)}  # key -> units
    with OrdersRelay(s.central_url) as relay:
        agent = start_selling_agent(s, shop, store, relay, db=db)
        assert [sell(s, agent, key, units).status_code for key, units in keys.items()] == [202] * 3
        stop_agent(s, store)  # the last connection closes: the log is checkpointed
    assert not db.with_name(db.name + "-wal").exists()
    cut_last_page(db)

    code, lines = run_to_exit(s, shop, store, db=db, central=s.central_url)
    out = tmp_path / "salvaged.jsonl"
    salvaged = subprocess.run(
        [str(BIN / "storeagent"), "salvage", "--db", str(db), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    key_file = tmp_path / "store.key"
    key_file.write_text(shop.keys[store])
    key_file.chmod(0o600)
    first = s.invctl_json("sales", "replay", str(out), "--api-key-file", str(key_file))
    second = s.invctl_json("sales", "replay", str(out), "--api-key-file", str(key_file))

    error = the_one_error(lines)
    assert code == 2
    assert (error["event"], error["code"]) == ("agent.replica_refused", "replica.damaged")
    assert "storeagent salvage" in error["message"]
    assert salvaged.returncode == 0, salvaged.stderr
    sales = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(sale["idempotency_key"] for sale in sales) == sorted(keys)
    assert all(sale["replay"] and sale["store_id"] == store for sale in sales)
    assert (first["replayed"], first["already_placed"], first["refused"]) == (3, 0, 0)
    assert (second["replayed"], second["already_placed"]) == (0, 3)
    for key, units in keys.items():
        [order] = orders_for_key(shop, store, key)
        assert order["status"] == "confirmed"
        assert order["lines"][0]["quantity"] == units
    assert central_stock(shop)[MILK][0] == 50 - sum(keys.values())


def cut_last_page(db: Path) -> None:
    """Truncate the replica by its last page, which must not be the sales table's own."""
    cut_after_the_sales(db, pages=1)
