"""A product created at central appears in a running agent's replica through Kafka, and
`invctl stock show` at the store prints it."""

import json

from harness.waiting import eventually
from tests.support.processes import stack


def agent_stock(s, agent_url, sku):
    result = s.invctl("--agent", agent_url, "--json", "stock", "show", sku, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_product_created_at_central_is_shown_by_the_store(tmp_path, kafka_cluster, topic_prefix):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central = s.start_central()
        s.login_admin()
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        category = s.invctl_json("category", "add", "Dairy")
        s.invctl(
            "product",
            "add",
            "MILK-1L",
            "--name",
            "Milk 1 L",
            "--price",
            "1.25",
            "--category",
            str(category["id"]),
        )
        s.invctl("stock", "set", "MILK-1L", "40")
        agent = s.start_agent("store-1", store["api_key"])

        stock = eventually(lambda: agent_stock(s, agent.url, "MILK-1L"), what="MILK-1L replicated")
        assert (stock["sku"], stock["quantity"], stock["stock_version"]) == ("MILK-1L", 40, 1)

        s.invctl("stock", "adjust", "MILK-1L", "--delta", "-5")

        def adjusted():
            stock = agent_stock(s, agent.url, "MILK-1L")
            assert stock["quantity"] == 35
            return stock

        eventually(adjusted, what="the adjustment replicated")
        human = s.invctl("--agent", agent.url, "stock", "show", "MILK-1L").stdout
        assert "MILK-1L" in human and "35" in human

        assert agent.stop() == 0
        assert central.stop() == 0
