"""`invctl sales replay FILE`: each saved sale sent to central as the store with its original
key; central's replayed answers counted as already placed; voided sales never sent (central's
copy cancelled); another store's sales skipped; truthful counts and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
STORE = "store-042"


def saved(key: str, **overrides: Any) -> dict[str, Any]:
    """A line of `storeagent salvage`'s file: a sale queued offline."""
    line = {
        "idempotency_key": key,
        "local_ref": f"ref-{key}",
        "lines": [{"sku": "MILK-1L", "quantity": 2}],
        "status": "queued",
        "store_id": STORE,
        "created_at": "2026-11-29T10:00:00+00:00",
        "queued_at": "2026-11-29T10:00:00+00:00",
        "instance_id": "gone",
        "replay": True,
        "voided": False,
        "at_central": False,
        "reason": "central.unavailable",
    }
    return {**line, **overrides}


def salvage_file(tmp_path: Path, *sales: dict[str, Any]) -> Path:
    path = tmp_path / "sales.jsonl"
    path.write_text("".join(json.dumps(sale) + "\n" for sale in sales))
    return path


class Central:
    """Central's orders as the store sees them: a key it holds answers its first order with
    Idempotent-Replayed; `refuse` maps keys to a refusal."""

    def __init__(self, server: FakeServer, held: dict[str, str] | None = None) -> None:
        self.held = dict(held or {})  # key -> order id
        self.cancelled: list[str] = []
        self.refuse: dict[str, tuple[int, str]] = {}
        self.down = False
        server.on(
            "GET", f"{API}/auth/me", body={"subject": STORE, "role": "store", "store_id": STORE}
        )
        server.on_call("POST", f"{API}/orders", self.place)
        server.on_call("GET", f"{API}/orders", self.find)

    def place(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, json=error_body("central.unavailable", "down"))
        key = request.headers["Idempotency-Key"]
        if key in self.refuse:
            status, code = self.refuse[key]
            return httpx.Response(status, json=error_body(code, "refused"))
        replayed = key in self.held
        order_id = self.held.setdefault(key, f"order-{key}")
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return httpx.Response(201, json={"id": order_id, "status": "confirmed"}, headers=headers)

    def find(self, request: httpx.Request) -> httpx.Response:
        key = request.url.params["idempotency_key"]
        items = [{"id": self.held[key], "status": "confirmed"}] if key in self.held else []
        return httpx.Response(200, json={"items": items, "next_before": None})

    def allow_cancel(self, server: FakeServer, order_id: str) -> None:
        def cancel(request: httpx.Request) -> httpx.Response:
            self.cancelled.append(order_id)
            return httpx.Response(200, json={"id": order_id, "status": "cancelled"})

        server.on_call("POST", f"{API}/orders/{order_id}/cancel", cancel)


def replay(cli: CliHarness, path: Path, *args: str):
    return cli("--central", CENTRAL, "--json", "sales", "replay", str(path), *args,
               env={"INVCTL_API_KEY": "store-key-1"})  # fmt: skip


def first_json(stdout: str) -> Any:
    """The summary, printed before the error that follows it (both JSON in --json mode)."""
    return json.JSONDecoder().raw_decode(stdout.lstrip())[0]


def posted_keys(server: FakeServer) -> list[str]:
    return [
        r.headers["Idempotency-Key"]
        for r in server.requests
        if r.method == "POST" and r.url.path == "/api/v1/orders"
    ]


def test_each_sale_is_sent_with_its_own_key_and_counted_as_central_answered(cli, server, tmp_path):
    central = Central(server, held={"sent-before": "order-1"})
    central.refuse["gone-short"] = (409, "stock.insufficient")
    central.allow_cancel(server, "order-void")
    central.held["voided-held"] = "order-void"
    path = salvage_file(
        tmp_path,
        saved("new-1"),
        saved("sent-before"),
        saved("gone-short"),
        saved("voided-held", replay=False, voided=True, at_central=True),
        saved("voided-not-held", replay=False, voided=True, at_central=True),
        saved("other", store_id="store-007"),
    )

    result = replay(cli, path)

    assert result.exit_code == 4, result.output  # a refusal: its customer has the goods
    summary = first_json(result.stdout)
    assert {k: summary[k] for k in ("replayed", "already_placed", "refused")} == {
        "replayed": 1,
        "already_placed": 1,
        "refused": 1,
    }
    assert (summary["voided_cancelled"], summary["skipped_voided"]) == (1, 1)
    assert summary["skipped_other_store"] == 1
    assert posted_keys(server) == ["new-1", "sent-before", "gone-short"]
    assert central.cancelled == ["order-void"]
    sent = [r for r in server.requests if r.method == "POST" and r.url.path == "/api/v1/orders"]
    assert json.loads(sent[0].content) == {"lines": [{"sku": "MILK-1L", "quantity": 2}]}
    assert "sales.refused" in result.output


def test_a_second_run_places_nothing_again(cli, server, tmp_path):
    central = Central(server)
    path = salvage_file(tmp_path, saved("k-1"), saved("k-2"))

    first = replay(cli, path)
    second = replay(cli, path)

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert json.loads(first.stdout)["replayed"] == 2
    assert json.loads(second.stdout)["already_placed"] == 2
    assert sorted(central.held) == ["k-1", "k-2"]


def test_a_bad_line_stops_everything_before_anything_is_sent(cli, server, tmp_path):
    Central(server)
    path = salvage_file(tmp_path, saved("k-1"), saved("k 2"))

    result = replay(cli, path)

    assert result.exit_code == 2
    assert "line 2" in result.output
    assert posted_keys(server) == []


def test_a_credential_that_is_no_stores_is_refused(cli, server, tmp_path):
    Central(server)
    server.on("GET", f"{API}/auth/me", body={"subject": "admin", "role": "admin", "store_id": None})

    result = replay(cli, salvage_file(tmp_path, saved("k-1")))

    assert result.exit_code == 6
    assert "auth.not_a_store" in result.output
    assert posted_keys(server) == []


def test_central_going_away_midway_reports_what_was_done_and_exits_5(cli, server, tmp_path):
    central = Central(server)
    path = salvage_file(tmp_path, saved("k-1"), saved("k-2"))

    def down_after_first(request: httpx.Request) -> httpx.Response:
        answer = central.place(request)
        central.down = True
        return answer

    server.on_call("POST", f"{API}/orders", down_after_first)

    result = replay(cli, path)

    assert result.exit_code == 5
    summary = first_json(result.stdout)
    assert (summary["replayed"], summary["unsent"]) == (1, 1)


def test_the_stores_key_file_is_used_when_given_and_must_be_private(cli, server, tmp_path):
    Central(server)
    key = tmp_path / "store.key"
    key.write_text("store-key-from-file\n")
    key.chmod(0o644)
    path = salvage_file(tmp_path, saved("k-1"))

    wide = replay(cli, path, "--api-key-file", str(key))
    key.chmod(0o600)
    done = replay(cli, path, "--api-key-file", str(key))

    assert wide.exit_code == 2
    assert done.exit_code == 0
    assert server.requests[-1].headers["X-API-Key"] == "store-key-from-file"
