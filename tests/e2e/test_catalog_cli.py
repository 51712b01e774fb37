"""The catalog through `invctl` against real processes: lists that page or say they were cut,
admin changes (`product update`, `category rename`) that the store's agent then shows, and
staff browsing the catalog at the agent while central is down."""

import json

from harness.waiting import eventually
from tests.support.processes import stack

HEADER = "kind,name,sku,price,category,description,active,quantity"


def write_catalog(path, products, categories=("Dairy", "Bakery")):
    lines = [HEADER, *(f"category,{name},,,,,," for name in categories)]
    for i in range(products):
        category = categories[i % len(categories)]
        lines.append(f"product,Item {i},ITEM-{i:05d},1.{i % 100:02d},{category},Item {i},true,{i}")
    path.write_text("\n".join(lines) + "\n")


def test_a_list_longer_than_its_limit_warns_and_all_shows_every_product(
    tmp_path, kafka_cluster, topic_prefix
):
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog, 1_200)
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        default = s.invctl("--json", "product", "list")
        every = s.invctl("--json", "product", "list", "--all")
        more = s.invctl("--json", "product", "list", "--limit", "1100")

    assert len(json.loads(default.stdout)) == 100
    assert "showing the first 100 products; there are more" in default.stderr
    products = json.loads(every.stdout)
    assert len(products) == 1_200
    assert len({p["sku"] for p in products}) == 1_200
    assert every.stderr == ""
    assert len(json.loads(more.stdout)) == 1_100
    assert "showing the first 1,100 products" in more.stderr


def agent_json(s, agent, *args):
    shown = s.invctl("--agent", agent.url, "--json", *args, check=False)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def start_store(s, products):
    """Central with a catalog of `products`, and store-1's agent once it holds all of it."""
    catalog = s.workdir / "catalog.csv"
    write_catalog(catalog, products)
    s.start_central()
    s.login_admin()
    s.invctl("import", str(catalog))
    store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
    agent = s.start_agent("store-1", store["api_key"])

    def replicated():
        return len(agent_json(s, agent, "product", "list", "--all")) == products

    eventually(replicated, what="the catalog replicated")
    return agent


def test_an_admin_changes_a_price_and_deactivates_a_product_and_the_store_sees_it(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        agent = start_store(s, 4)
        s.invctl("product", "update", "ITEM-00002", "--price", "9.99", "--inactive")
        s.invctl("category", "rename", "Dairy", "Milk & cheese")

        def the_store_sees_it():
            items = agent_json(s, agent, "product", "list", "--search", "item-00002")
            assert [(p["price"], p["active"]) for p in items] == [("9.99", False)]
            names = [c["name"] for c in agent_json(s, agent, "category", "list")]
            return names == ["Milk & cheese", "Bakery"]

        eventually(the_store_sees_it, what="the change replicated")
        refused = s.invctl("--agent", agent.url, "buy", "ITEM-00002:1", check=False)
        product = s.invctl_json("product", "show", "ITEM-00002")
        table = s.invctl("--agent", agent.url, "product", "list", "--category", "Milk & cheese")

    assert refused.returncode != 0 and "order.sku_inactive" in refused.stderr, refused.stderr
    assert (product["price"], product["description"], product["name"]) == (
        "9.99",
        "Item 2",
        "Item 2",
    ), "only the fields given changed"
    assert "Milk & cheese" in table.stdout


def test_staff_browse_by_category_at_the_agent_while_central_is_stopped(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        agent = start_store(s, 30)
        through_central = s.invctl_json("stock", "list", "--category", "Bakery", "--all")
        central = next(service for service in s.services if service.name == "central")
        central.stop()
        dairy = agent_json(s, agent, "product", "list", "--category", "Dairy", "--all")
        low = agent_json(s, agent, "stock", "list", "--category", "Bakery", "--low-stock", "5")
        categories = agent_json(s, agent, "category", "list")
        people = s.invctl("--agent", agent.url, "product", "list", "--category", "dairy")
        at_agent = agent_json(s, agent, "stock", "list", "--category", "Bakery", "--all")

    assert [p["sku"] for p in dairy] == [f"ITEM-{i:05d}" for i in range(0, 30, 2)]
    assert [(p["sku"], p["quantity"]) for p in low] == [("ITEM-00001", 1), ("ITEM-00003", 3),
                                                        ("ITEM-00005", 5)]  # fmt: skip
    assert [c["name"] for c in categories] == ["Dairy", "Bakery"]
    assert people.returncode == 0, people.stderr
    assert "ITEM-00028" in people.stdout and "Dairy" in people.stdout
    assert [(p["sku"], p["quantity"]) for p in at_agent] == [
        (p["sku"], p["quantity"]) for p in through_central
    ], "the agent's replica and central list the same"
