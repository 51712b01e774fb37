"""`invctl buy` at a store agent process: the sale is reserved at central and the store's
stock shows it at once (read-your-writes); buying more than there is exits 4."""

import json

from harness.waiting import eventually
from tests.support.processes import stack


def test_buy_at_the_store_is_shown_by_stock_show_at_once_and_overselling_exits_4(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        category = s.invctl_json("category", "add", "Dairy")
        s.invctl(
            "product", "add", "MILK-1L", "--name", "Milk 1 L", "--price", "1.25",
            "--category", str(category["id"]),
        )  # fmt: skip
        s.invctl("stock", "set", "MILK-1L", "40")
        agent = s.start_agent("store-1", store["api_key"])

        def replicated():
            shown = s.invctl(
                "--agent", agent.url, "--json", "stock", "show", "MILK-1L", check=False
            )
            assert shown.returncode == 0, shown.stderr
            stock = json.loads(shown.stdout)
            assert stock["quantity"] == 40
            return stock

        eventually(replicated, what="MILK-1L replicated")

        bought = s.invctl("--agent", agent.url, "--json", "buy", "MILK-1L:2")
        right_after = s.invctl("--agent", agent.url, "--json", "stock", "show", "MILK-1L")
        too_many = s.invctl("--agent", agent.url, "buy", "MILK-1L:39", check=False)
        sales = s.invctl("--agent", agent.url, "--json", "orders", "list")
        agent.stop()

    order = json.loads(bought.stdout)
    assert order["status"] == "confirmed"
    assert order["order"]["lines"][0]["stock"] == {"quantity": 38, "stock_version": 2}
    stock = json.loads(right_after.stdout)
    assert (stock["quantity"], stock["stock_version"]) == (38, 2)
    assert too_many.returncode == 4, too_many.stderr
    assert "stock" in too_many.stderr.lower(), too_many.stderr
    assert [(i["status"], i["order_id"]) for i in json.loads(sales.stdout)] == [
        ("confirmed", order["order"]["id"])
    ]
    assert store["api_key"] not in "\n".join(agent.log_lines())
