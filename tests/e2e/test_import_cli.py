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
