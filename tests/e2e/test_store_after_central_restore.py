"""Central restored from a backup under a running store, with real processes: the restored
central republishes its state at a new epoch, and the store's agent, whose replica holds
changes of the lost database at higher versions, rebuilds it from the new epoch and ends
equal to central; `/sync/status` shows the new epoch."""

import subprocess

import httpx

from harness.waiting import eventually
from tests.support.processes import BIN, stack, wait_http

HEADER = "kind,name,sku,price,category,description,active,quantity"
PRODUCTS = 6


def write_catalog(path):
    rows = [HEADER, "category,Dairy,,,,,,"]
    rows += [f"product,Item {i},ITEM-{i:03d},1.00,Dairy,,true,{20 + i}" for i in range(PRODUCTS)]
    path.write_text("\n".join(rows) + "\n")


def central_cli(s, *args):
    return subprocess.run(
        [str(BIN / "central"), *args],
        env={**s.env, **s.central_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def restart_central(s):
    """`central serve` again on the same port: the agent keeps its URL."""
    port = s.central_url.rsplit(":", 1)[1]
    central = s.spawn(
        "central", [str(BIN / "central"), "serve", "--port", port], s.central_url, s.central_env()
    )
    wait_http(f"{s.central_url}/readyz", process=central.process)
    return central


def test_a_store_rebuilds_its_replica_at_the_new_epoch_after_central_is_restored(
    tmp_path, kafka_cluster, topic_prefix
):
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog)
    backup = tmp_path / "central.backup"
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central = s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        agent = s.start_agent("store-1", store["api_key"])
        s.invctl("--agent", agent.url, "buy", "ITEM-000:2")
        s.invctl("stock", "set", "ITEM-001", "30")
        eventually(lambda: s.stock_at_agent(agent.url) == s.stock_at_central(), 30, "replicated")

        backed_up = central_cli(s, "backup", "--to", str(backup))
        for quantity in (40, 41, 42):  # versions above the backup's, lost with the database
            s.invctl("stock", "set", "ITEM-002", str(quantity))
        s.invctl("--agent", agent.url, "buy", "ITEM-003:1")
        [dairy] = s.invctl_json("category", "list", "--all")
        s.invctl(
            "product", "add", "LOST-1", "--name", "Lost", "--price", "2.00",
            "--category", str(dairy["id"]),
        )  # fmt: skip
        s.invctl("stock", "set", "LOST-1", "7")
        eventually(lambda: s.stock_at_agent(agent.url).get("LOST-1") == 7, 30, "the lost changes")

        assert central.stop() == 0
        restored = central_cli(s, "restore", str(backup), "--yes")
        restart_central(s)

        def equal_to_central():
            at_central = s.stock_at_central()
            return at_central if s.stock_at_agent(agent.url) == at_central else None

        expected = eventually(equal_to_central, 60, "the replica equals central")
        status = httpx.get(f"{agent.url}/sync/status").json()
        ready = httpx.get(f"{agent.url}/readyz")

    assert backed_up.returncode == 0, backed_up.stderr
    assert restored.returncode == 0, restored.stderr
    assert "LOST-1" not in expected and expected["ITEM-002"] == 22
    assert expected["ITEM-001"] == 30
    assert status["epoch"] == 2
    assert status["rebuild"]["state"] == "adopted"
    assert ready.status_code == 200, ready.text
