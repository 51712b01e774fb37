"""`invctl import` of a 10,000-row file against a real central: everything lands, a re-run
changes nothing, and bad rows are reported by their line number."""

import json

from tests.support.processes import stack


def write_catalog(path, bad_lines=()):
    lines = ["kind,name,sku,price,category,description,active,quantity"]
    lines += [f"category,Cat {i},,,,,," for i in range(10)]
    for i in range(9989):
        lines.append(
            f"product,Product {i},SKU-{i:05d},{i % 90}.{i % 100:02d},Cat {i % 10},,true,{i % 40}"
        )
    for number in bad_lines:
        lines[number - 1] = "product,Broken,bad sku,-1,Cat 0,,maybe,x"
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def test_ten_thousand_rows_import_then_reimport_is_a_no_op(tmp_path, kafka_cluster, topic_prefix):
    catalog = tmp_path / "catalog.csv"
    assert write_catalog(catalog) == 10_000
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        first = s.invctl_json("import", str(catalog))
        again = s.invctl_json("import", str(catalog))
        product = s.invctl_json("product", "show", "SKU-09988")
        stock = s.invctl_json("--central", s.central_url, "stock", "show", "SKU-09988")

    assert (first["created"], first["updated"], first.get("bad_rows", 0)) == (9999, 0, 0)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 9999)
    assert product["name"] == "Product 9988"
    assert stock["quantity"] == 9988 % 40


def test_bad_rows_are_reported_by_line_number(tmp_path, kafka_cluster, topic_prefix):
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog, bad_lines=(15, 4000))
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        result = s.invctl("--json", "import", str(catalog), check=False)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert sorted({row["line"] for row in report["errors"]}) == [15, 4000]
    assert report["created"] == 9997


def test_all_or_nothing_with_a_bad_row_at_the_end_creates_nothing_and_names_it(
    tmp_path, kafka_cluster, topic_prefix
):
    """The last row names a category central does not have: only central can tell, after
    the earlier chunks were sent; with --all-or-nothing none of them is applied."""
    catalog = tmp_path / "catalog.csv"
    lines = ["kind,name,sku,price,category,description,active,quantity", "category,Cat 0,,,,,,"]
    lines += [f"product,Product {i},SKU-{i:05d},1.00,Cat 0,,true,3" for i in range(1_200)]
    lines.append("product,Orphan,ORPHAN-1,1.00,No such category,,,")
    catalog.write_text("\n".join(lines) + "\n")
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        result = s.invctl("--json", "import", str(catalog), "--all-or-nothing", check=False)
        products = s.invctl_json("product", "list", "--all")
        categories = s.invctl_json("category", "list", "--all")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(1_203, "category.not_found")]
    assert (report["created"], report["bad_rows"], report["skipped"]) == (0, 1, 1_201)
    assert "applied none" in result.stderr
    assert (products, categories) == ([], [])


def test_a_price_change_by_import_keeps_the_description_and_the_rest(
    tmp_path, kafka_cluster, topic_prefix
):
    header = "kind,name,sku,price,category,description,active,quantity"
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(
        f"{header}\ncategory,Dairy,,,,,,\nproduct,Milk 1 L,MILK-1L,1.25,Dairy,Whole milk,false,40\n"
    )
    second.write_text(f"{header}\nproduct,Milk 1 L,MILK-1L,1.35,Dairy,,,\n")
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        s.invctl("import", str(first))
        changed = s.invctl_json("import", str(second))
        product = s.invctl_json("product", "show", "MILK-1L")
        stock = s.invctl_json("stock", "show", "MILK-1L")

    assert (changed["updated"], changed["unchanged"]) == (1, 0)
    assert (product["price"], product["description"], product["active"]) == (
        "1.35",
        "Whole milk",
        False,
    )
    assert stock["quantity"] == 40
