"""`invctl import`: local validation first, then atomic chunks, a summary and exit 1 on bad rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_BATCH, CliHarness, FakeImports, FakeServer, error_body
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
IMPORT_URL = f"{API}/import"
HEADER = "kind,name,sku,price,category,description,active,quantity\n"


def _counting(request: httpx.Request) -> httpx.Response:
    rows = json.loads(request.content)["rows"]
    return httpx.Response(200, json={"created": len(rows), "updated": 0, "unchanged": 0})


def _write_csv(tmp_path: Path, *rows: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def _stock_rows(count: int) -> list[str]:
    return [f"stock,,SKU-{i},,,,,{i}" for i in range(count)]


def _run(cli: CliHarness, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("--central", CENTRAL, "--json", "import", *args)
    return result.exit_code, json.loads(result.stdout)


def test_good_file_is_sent_in_chunks(cli: CliHarness, server: FakeServer, tmp_path: Path) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = _write_csv(tmp_path, *_stock_rows(5))

    code, summary = _run(cli, str(path), "--chunk-size", "2")

    assert code == 0
    assert [len(server.sent_json(i)["rows"]) for i in range(3)] == [2, 2, 1]
    assert server.sent_json(0)["rows"][0] == {
        "line": 2,
        "kind": "stock",
        "sku": "SKU-0",
        "quantity": 0,
    }
    assert summary["created"] == 5
    assert summary["bad_rows"] == 0
    assert summary["errors"] == []


def test_bad_rows_are_reported_and_good_rows_still_sent(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = _write_csv(tmp_path, "stock,,GOOD,,,,,1", "stock,,bad,,,,,1", "stock,,ALSO,,,,,-2")

    code, summary = _run(cli, str(path))

    assert code == 1
    assert [row["sku"] for row in server.sent_json()["rows"]] == ["GOOD"]
    assert summary["bad_rows"] == 2
    assert [(e["line"], e["code"]) for e in summary["errors"]] == [
        (3, "sku.invalid"),
        (4, "quantity.invalid"),
    ]


def test_all_or_nothing_sends_nothing_when_a_row_is_bad(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    path = _write_csv(tmp_path, "stock,,GOOD,,,,,1", "stock,,bad,,,,,1")

    code, summary = _run(cli, str(path), "--all-or-nothing")

    assert code == 1
    assert server.requests == []
    assert summary["skipped"] == 1


def test_rows_central_cannot_apply_are_listed_and_the_rest_of_the_chunk_is_applied(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    central = FakeImports()
    central.install(server, API)
    path = _write_csv(
        tmp_path,
        "category,Dairy,,,,,,",
        "product,Cod,COD,9,Fish,,,",
        "product,Milk,MILK,1,Dairy,,,",
        "product,Eel,EEL,9,Fish,,,",
    )

    code, summary = _run(cli, str(path))

    assert code == 1
    assert [row["line"] for row in central.applied] == [2, 4]
    assert [(e["line"], e["code"]) for e in summary["errors"]] == [
        (3, "category.not_found"),
        (5, "category.not_found"),
    ]
    assert (summary["created"], summary["bad_rows"], summary["skipped"]) == (2, 2, 0)


def test_a_rejection_naming_no_row_of_the_chunk_skips_the_chunk_and_says_which_lines(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on("POST", IMPORT_URL, 422, error_body("import.invalid", "at most 1000 rows"))
    path = _write_csv(tmp_path, *_stock_rows(3))

    code, summary = _run(cli, str(path))

    assert code == 1
    assert summary["errors"] == [
        {
            "line": 2,
            "code": "import.invalid",
            "message": "at most 1000 rows (lines 2-4 were not applied)",
        }
    ]
    assert (summary["bad_rows"], summary["skipped"]) == (1, 2)


def test_all_or_nothing_stages_every_chunk_then_commits_once(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    central = FakeImports()
    central.install(server, API)
    path = _write_csv(tmp_path, *_stock_rows(5))

    code, summary = _run(cli, str(path), "--chunk-size", "2", "--all-or-nothing")

    assert code == 0
    sent = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in server.requests]
    assert sent == [("POST", "batches"), *[("POST", "rows")] * 3, ("POST", "commit")]
    assert len(central.applied) == 5
    assert summary["created"] == 5


def test_all_or_nothing_applies_nothing_when_central_cannot_apply_the_last_row(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    central = FakeImports(categories={"Dairy"})
    central.install(server, API)
    rows = [f"product,P{i},P-{i},1,Dairy,,," for i in range(5)]
    path = _write_csv(tmp_path, *rows, "product,Cod,COD,9,Fish,,,")

    code, summary = _run(cli, str(path), "--chunk-size", "2", "--all-or-nothing")

    assert code == 1
    assert central.applied == []
    assert summary["errors"] == [
        {"line": 7, "code": "category.not_found", "message": "unknown category"}
    ]
    assert (summary["created"], summary["bad_rows"], summary["skipped"]) == (0, 1, 5)


def test_all_or_nothing_counts_the_errors_central_did_not_list(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    listed = [{"line": 2 + i, "code": "category.not_found", "message": "?"} for i in range(100)]
    body = error_body("import.invalid", "bad", errors=listed, error_count=150, bad_rows=150)
    server.on("POST", f"{API}/import/batches", 201, {"id": FAKE_BATCH})
    server.on("POST", f"{API}/import/batches/{FAKE_BATCH}/rows", 200, {"id": FAKE_BATCH})
    server.on("POST", f"{API}/import/batches/{FAKE_BATCH}/commit", 422, body)
    path = _write_csv(tmp_path, *[f"product,P{i},P-{i},1,Fish,,," for i in range(200)])

    code, summary = _run(cli, str(path), "--all-or-nothing")

    assert code == 1
    assert (summary["error_count"], summary["errors_omitted"]) == (150, 50)
    assert (summary["bad_rows"], summary["skipped"]) == (150, 50)


def test_all_or_nothing_drops_the_batch_when_staging_is_refused(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    central = FakeImports()
    central.install(server, API)
    refused = error_body("import.invalid", "bad", errors=[{"line": 3, "code": "x", "message": "y"}])
    server.on("POST", f"{API}/import/batches/{FAKE_BATCH}/rows", 422, refused)
    path = _write_csv(tmp_path, *_stock_rows(2))

    code, summary = _run(cli, str(path), "--all-or-nothing")

    assert code == 1
    assert [r.method for r in server.requests][-1] == "DELETE"
    assert central.staged is None and central.applied == []
    assert (summary["bad_rows"], summary["skipped"]) == (1, 1)


def test_all_or_nothing_without_an_answer_to_the_commit_says_the_outcome_is_unknown(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    central = FakeImports()
    central.install(server, API)
    server.on_call("POST", f"{API}/import/batches/{FAKE_BATCH}/commit", silent)
    path = _write_csv(tmp_path, *_stock_rows(2))

    result = cli("--central", CENTRAL, "import", str(path), "--all-or-nothing")

    assert result.exit_code == 5
    assert "all the rows or none" in result.stderr
    assert "timed out after 900s" in result.stderr
    assert "run the same import again" in result.stderr


def test_all_or_nothing_against_a_central_without_batches_says_so(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on("POST", f"{API}/import/batches", 404, error_body("not_found", "Not Found"))
    path = _write_csv(tmp_path, *_stock_rows(2))

    result = cli("--central", CENTRAL, "import", str(path), "--all-or-nothing")

    assert result.exit_code == 1
    assert "[import.atomic_unsupported]" in result.stderr


def test_human_summary_lists_bad_lines(cli: CliHarness, server: FakeServer, tmp_path: Path) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = _write_csv(tmp_path, "stock,,GOOD,,,,,1", "stock,,bad,,,,,1")

    result = cli("--central", CENTRAL, "import", str(path))

    assert result.exit_code == 1
    assert "sku.invalid" in result.stdout
    assert "created" in result.stdout


def test_jsonl_by_extension(cli: CliHarness, server: FakeServer, tmp_path: Path) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = tmp_path / "stock.ndjson"
    path.write_text('{"kind": "stock", "sku": "A", "quantity": 3}\n', encoding="utf-8")

    code, summary = _run(cli, str(path))

    assert code == 0
    assert summary["format"] == "jsonl"


def test_format_option_overrides_extension(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    server.on_call("POST", IMPORT_URL, _counting)
    path = _write_csv(tmp_path, "stock,,A,,,,,1", name="export.txt")

    code, summary = _run(cli, str(path), "--format", "csv")

    assert code == 0
    assert summary["created"] == 1


def test_unknown_extension_is_a_usage_error(cli: CliHarness, tmp_path: Path) -> None:
    path = _write_csv(tmp_path, "stock,,A,,,,,1", name="export.txt")

    result = cli("--central", CENTRAL, "import", str(path))

    assert result.exit_code == 2
    assert "--format" in result.stderr


@pytest.mark.parametrize("content", [None, b"\xff\xfe\x00k\x00i"])
def test_unreadable_file_exits_1(
    cli: CliHarness, server: FakeServer, tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "broken.csv"
    if content is not None:
        path.write_bytes(content)

    result = cli("--central", CENTRAL, "import", str(path))

    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert server.requests == []


def test_chunk_size_is_capped_at_centrals_limit(cli: CliHarness, tmp_path: Path) -> None:
    path = _write_csv(tmp_path, "stock,,A,,,,,1")

    assert cli("--central", CENTRAL, "import", str(path), "--chunk-size", "1001").exit_code == 2


def test_central_going_away_mid_import_is_unavailable(
    cli: CliHarness, server: FakeServer, tmp_path: Path
) -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > 1:
            raise httpx.ConnectError("connection refused", request=request)
        return _counting(request)

    server.on_call("POST", IMPORT_URL, flaky)
    path = _write_csv(tmp_path, *_stock_rows(4))

    result = cli("--central", CENTRAL, "import", str(path), "--chunk-size", "2")

    assert result.exit_code == 5
    assert "2 rows were applied before this error" in result.stderr
