"""Chaos: MariaDB restarts under load. Central answers 503 `database.unavailable` (never a
500) while it is down, recovers by itself, and no order is lost, duplicated or oversold."""

import subprocess
import threading
import time
import uuid
from collections import Counter

import httpx
import pymysql
import pytest

from harness.waiting import eventually
from tests.conftest import REPO_ROOT
from tests.support.processes import ADMIN, ADMIN_PASSWORD, BIN, SECRET, free_port, wait_http

MARIADB = str(REPO_ROOT / "scripts" / "mariadb")


@pytest.fixture
def own_mariadb(tmp_path):
    directory, port = str(tmp_path / "mariadb"), str(free_port())
    started = subprocess.run(
        [MARIADB, "start", "--dir", directory, "--port", port],
        capture_output=True,
        text=True,
        check=True,
    )
    base = started.stdout.strip().splitlines()[-1]
    with pymysql.connect(
        host="127.0.0.1", port=int(port), user="invctl", password="invctl", autocommit=True
    ) as conn:
        conn.cursor().execute("CREATE DATABASE chaos")
    yield directory, port, base.rstrip("/") + "/chaos"
    subprocess.run([MARIADB, "stop", "--dir", directory], capture_output=True, check=False)


def mariadb(command, directory, port):
    subprocess.run(
        [MARIADB, command, "--dir", directory, "--port", port], capture_output=True, check=True
    )


def start_central(tmp_path, database_url):
    env = {
        "INVCTL_DATABASE_URL": database_url,
        "INVCTL_JWT_SECRET": SECRET,
        "PATH": str(BIN),
        "HOME": str(tmp_path),
    }
    subprocess.run(
        [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD.encode(),
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = (tmp_path / "central.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "central"), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", process=process)
    return process, url


def seed(client):
    token = client.post(
        "/api/v1/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}
    ).json()
    admin = {"Authorization": f"Bearer {token['access_token']}"}
    cat = client.post("/api/v1/categories", json={"name": "C"}, headers=admin).json()
    client.post(
        "/api/v1/products",
        headers=admin,
        json={"sku": "A", "name": "A", "price": "1", "category_id": cat["id"]},
    )
    client.put("/api/v1/stock/A", json={"quantity": 10_000}, headers=admin)
    key = client.post("/api/v1/stores", json={"id": "s1", "name": "S"}, headers=admin).json()
    return admin, key["api_key"]


def buyer(url, api_key, stop, statuses, keys):
    """Buys one at a time; a failed attempt is retried with the same key until it succeeds."""
    with httpx.Client(base_url=url, timeout=15) as client:
        while not stop.is_set():
            key = uuid.uuid4().hex
            while True:
                try:
                    response = client.post(
                        "/api/v1/orders",
                        json={"lines": [{"sku": "A", "quantity": 1}]},
                        headers={"X-API-Key": api_key, "Idempotency-Key": key},
                    )
                    statuses.append((response.status_code, _code(response)))
                    if response.status_code == 201:
                        keys.append((key, response.json()["id"]))
                        break
                except httpx.HTTPError:
                    statuses.append((0, "transport"))
                time.sleep(0.05)


def _code(response):
    try:
        return response.json().get("error", {}).get("code")
    except ValueError:
        return None


def test_central_rides_out_a_database_restart(tmp_path, own_mariadb):
    directory, port, database_url = own_mariadb
    process, url = start_central(tmp_path, database_url)
    try:
        with httpx.Client(base_url=url, timeout=15) as client:
            admin, api_key = seed(client)
            stop, statuses, keys = threading.Event(), [], []
            threads = [
                threading.Thread(target=buyer, args=(url, api_key, stop, statuses, keys))
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            eventually(lambda: len(keys) >= 8, 30, "buyers confirm orders")
            mariadb("stop", directory, port)
            time.sleep(2.0)  # the outage: buyers keep trying all along
            during = client.get("/api/v1/stock/A", headers=admin)
            ready = client.get("/readyz")
            mariadb("start", directory, port)
            eventually(
                lambda: client.get("/api/v1/stock/A", headers=admin).status_code == 200,
                30,
                "central recovered",
                interval=0.2,
            )
            before = len(keys)
            eventually(lambda: len(keys) >= before + 8, 30, "buyers confirm orders again")
            stop.set()
            for t in threads:
                t.join(30)
            final = client.get("/api/v1/stock/A", headers=admin).json()["quantity"]
            orders = client.get("/api/v1/orders?limit=200", headers={"X-API-Key": api_key})
    finally:
        process.terminate()
        process.wait(15)

    assert (during.status_code, during.json()["error"]["code"]) == (503, "database.unavailable")
    assert ready.status_code == 503
    seen = Counter(status for status, _ in statuses)
    assert seen[500] == 0, statuses
    assert seen[503] > 0, "the outage was seen by the buyers"
    assert {code for status, code in statuses if status == 503} == {"database.unavailable"}
    ids = [order_id for _, order_id in keys]
    assert len(ids) == len(set(ids)), "one order per key"
    assert final == 10_000 - len(ids), "stock moved exactly by the confirmed orders"
    assert orders.status_code == 200
