"""`invctl export` against a real central: a products export imported back changes nothing
(a second export is byte for byte the first), more than a page of products comes out whole,
and orders and movements are narrowed by --since and --store."""

import json
import uuid

import httpx

from tests.support.processes import stack

PRODUCTS = 1_500  # more than one page (1,000) of GET /exports/products


def write_catalog(path):
    lines = ["kind,name,sku,price,category,description,active,quantity"]
    lines += ["category,Dairy,,,,,,", "category,Bakery,,,,,,", "category,Empty shelf,,,,,,"]
    for i in range(PRODUCTS):
        category = "Dairy" if i % 2 else "Bakery"
        description = '"Rye, ""dark"" & Crème"' if i % 3 == 0 else ""
        active = "false" if i % 5 == 0 else "true"
        lines.append(f"product,Product {i},SKU-{i:05d},{i % 90}.{i % 100:02d},{category},"
                     f"{description},{active},{i % 7}")  # fmt: skip
    lines.append("product,=1+2 @formula,FORMULA-1,1.00,Dairy,-starts with a minus,,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_products_export_imported_back_changes_nothing(tmp_path, kafka_cluster, topic_prefix):
    catalog, first, second = (tmp_path / name for name in ("in.csv", "one.csv", "two.csv"))
    as_lines = tmp_path / "one.jsonl"
    write_catalog(catalog)
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        exported = s.invctl_json("export", "products", "--out", str(first))
        reimported = s.invctl_json("import", str(first))
        s.invctl("export", "products", "--out", str(second))
        s.invctl("export", "products", "--format", "jsonl", "--out", str(as_lines))
        from_lines = s.invctl_json("import", str(as_lines))
        stock = s.invctl("export", "stock").stdout
        formula = s.invctl_json("product", "show", "FORMULA-1")

    rows = PRODUCTS + 1 + 3
    assert exported["rows"] == rows
    assert (reimported["created"], reimported["updated"], reimported["unchanged"]) == (0, 0, rows)
    assert reimported["bad_rows"] == 0
    assert second.read_bytes() == first.read_bytes()
    assert (from_lines["created"], from_lines["updated"], from_lines["unchanged"]) == (0, 0, rows)
    text = first.read_text(encoding="utf-8").splitlines()
    assert text[0] == "kind,name,sku,price,category,description,active"
    assert text[1:4] == ["category,Dairy,,,,,", "category,Bakery,,,,,", "category,Empty shelf,,,,,"]
    assert "product,=1+2 @formula,FORMULA-1,1.00,Dairy,-starts with a minus,true" in text
    assert 'product,Product 0,SKU-00000,0.00,Bakery,"Rye, ""dark"" & Crème",false' in text
    assert sum(line.startswith("product,") for line in text) == PRODUCTS + 1
    assert (formula["name"], formula["description"]) == ("=1+2 @formula", "-starts with a minus")
    stock_lines = stock.splitlines()
    assert stock_lines[0] == "kind,sku,quantity"
    assert len(stock_lines) == PRODUCTS + 2
    assert "stock,SKU-01499,1" in stock_lines


def buy(central_url, api_key, sku, quantity):
    response = httpx.post(
        f"{central_url}/api/v1/orders",
        json={"lines": [{"sku": sku, "quantity": quantity}]},
        headers={"X-API-Key": api_key, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return response.json()


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_orders_and_movements_are_narrowed_by_since_and_store(
    tmp_path, kafka_cluster, topic_prefix
):
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "kind,name,sku,price,category,description,active,quantity\n"
        "category,Dairy,,,,,,\nproduct,Milk,MILK,1.25,Dairy,,,100\n",
        encoding="utf-8",
    )
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("import", str(catalog))
        keys = {
            store: s.invctl_json("store", "add", store, "--name", store)["api_key"]
            for store in ("store-a", "store-b")
        }
        early = buy(s.central_url, keys["store-a"], "MILK", 1)
        late = [
            buy(s.central_url, keys["store-b"], "MILK", 2),
            buy(s.central_url, keys["store-a"], "MILK", 3),
        ]
        since = late[0]["created_at"]
        every_order = jsonl(s.invctl("export", "orders", "--format", "jsonl").stdout)
        recent_of_a = jsonl(
            s.invctl(
                "export", "orders", "--since", since, "--store", "store-a", "-f", "jsonl"
            ).stdout
        )
        order_rows = s.invctl("export", "orders", "--since", since).stdout.splitlines()
        ledger = jsonl(s.invctl("export", "movements", "--format", "jsonl").stdout)
        ledger_of_b = jsonl(
            s.invctl("export", "movements", "--store", "store-b", "-f", "jsonl").stdout
        )
        as_store_a = {
            "INVCTL_CONFIG_DIR": str(tmp_path / "till"),
            "INVCTL_API_KEY": keys["store-a"],
        }
        own = jsonl(s.invctl("export", "movements", "-f", "jsonl", env=as_store_a).stdout)
        refused = s.invctl("export", "movements", "--store", "store-b", env=as_store_a, check=False)

    assert [o["id"] for o in every_order] == [late[1]["id"], late[0]["id"], early["id"]]
    assert recent_of_a == [late[1]]
    assert len(order_rows) == 3 and order_rows[0].startswith("order_id,store_id,status,")
    assert {row.split(",")[0] for row in order_rows[1:]} == {late[0]["id"], late[1]["id"]}
    assert [(m["reason"], m["delta"], m["store_id"]) for m in ledger] == [
        ("import", 100, None),
        ("order", -1, "store-a"),
        ("order", -2, "store-b"),
        ("order", -3, "store-a"),
    ]
    assert [m["order_id"] for m in ledger_of_b] == [late[0]["id"]]
    assert [m["order_id"] for m in own] == [early["id"], late[1]["id"]]
    assert refused.returncode == 6, refused.stderr
    assert "[auth.forbidden]" in refused.stderr
