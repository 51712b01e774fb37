"""Commands send the documented requests to the right server and print parseable JSON."""

from __future__ import annotations

import json

import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
STOCK = {"sku": "MILK-1L", "quantity": 40, "stock_version": 7, "updated_at": "2026-11-29T09:00:00Z"}


def test_stock_show_reads_the_agent_by_default(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, {**STOCK, "source": "replica"})

    result = cli("--json", "stock", "show", "MILK-1L")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"] == "replica"


def test_stock_show_reads_central_when_named(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/stock/MILK-1L", 200, STOCK)

    result = cli("--central", CENTRAL, "stock", "show", "MILK-1L", "--json")

    assert json.loads(result.stdout) == STOCK


def test_a_configured_central_does_not_redirect_reads_from_an_agent_named_in_the_environment(
    cli: CliHarness, server: FakeServer
) -> None:
    cli("config", "set", "central", CENTRAL)  # the fixture sets INVCTL_AGENT
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, STOCK)

    assert cli("stock", "show", "MILK-1L").exit_code == 0
    assert str(server.requests[-1].url).startswith(AGENT)


def test_one_request_id_per_invocation(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, STOCK)

    cli("stock", "show", "MILK-1L")
    cli("stock", "show", "MILK-1L")

    first, second = (r.headers["X-Request-ID"] for r in server.requests)
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != second


def test_invctl_request_id_sets_the_request_id(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/MILK-1L", 200, STOCK)

    cli("stock", "show", "MILK-1L", env={"INVCTL_REQUEST_ID": "nightly-check.42"})
    cli("stock", "show", "MILK-1L", env={"INVCTL_REQUEST_ID": "not usable: spaces"})

    chosen, replaced = (r.headers["X-Request-ID"] for r in server.requests)
    assert chosen == "nightly-check.42"
    assert len(replaced) == 32


def test_path_segments_are_quoted(cli: CliHarness, server: FakeServer) -> None:
    cli("stock", "show", "A/B C")

    assert server.requests[-1].url.raw_path == b"/stock/A%2FB%20C"


def test_stock_set_puts_quantity_and_note(cli: CliHarness, server: FakeServer) -> None:
    server.on("PUT", f"{API}/stock/MILK-1L", 200, STOCK)

    result = cli("--central", CENTRAL, "stock", "set", "MILK-1L", "40", "--note", "count")

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {"quantity": 40, "note": "count"}


@pytest.mark.parametrize(
    "delta_args",
    [["-3"], ["--", "-3"], ["--delta", "-3"], ["--delta=-3"]],
    ids=["bare", "double-dash", "option", "option-equals"],
)
def test_negative_delta_parses(cli: CliHarness, server: FakeServer, delta_args: list[str]) -> None:
    server.on("POST", f"{API}/stock/MILK-1L/adjustments", 200, STOCK)

    result = cli("--central", CENTRAL, "stock", "adjust", "MILK-1L", *delta_args)

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {"delta": -3, "reason": "adjust"}


@pytest.mark.parametrize("args", [[], ["2", "--delta", "3"], ["0"], ["x"]])
def test_delta_must_be_given_once_and_not_zero(
    cli: CliHarness, server: FakeServer, args: list[str]
) -> None:
    result = cli("--central", CENTRAL, "stock", "adjust", "MILK-1L", *args)

    assert result.exit_code == 2
    assert server.requests == []


def test_stock_history_passes_limit(cli: CliHarness, server: FakeServer) -> None:
    movement = {"id": 1, "at": "2026-11-29T09:00:00Z", "actor": "alice", "reason": "set"}
    server.on("GET", f"{API}/stock/MILK-1L/movements", 200, {"items": [movement]})

    result = cli("--central", CENTRAL, "--json", "stock", "history", "MILK-1L", "--limit", "5")

    assert server.requests[-1].url.params["limit"] == "5"
    assert json.loads(result.stdout) == [movement]


def test_product_add_sends_the_catalog_body(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/products", 201, {"sku": "MILK-1L"})
    server.on("GET", f"{API}/categories", 200, {"items": [{"id": 3, "name": "Dairy"}]})

    result = cli(
        "--central", CENTRAL, "product", "add", "MILK-1L",
        "--name", "Milk 1 L", "--price", "1.5", "--category", "3", "--inactive",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {
        "sku": "MILK-1L",
        "name": "Milk 1 L",
        "price": "1.50",
        "category_id": 3,
        "active": False,
    }


@pytest.mark.parametrize(("sku", "price"), [("milk", "1.00"), ("MILK", "1.234"), ("MILK", "-1")])
def test_product_add_checks_sku_and_price_locally(
    cli: CliHarness, server: FakeServer, sku: str, price: str
) -> None:
    args = ["product", "add", sku, "--name", "M", "--price", price, "--category", "1"]

    result = cli("--central", CENTRAL, *args)

    assert result.exit_code == 2
    assert server.requests == []


def test_lists_print_json_arrays(cli: CliHarness, server: FakeServer) -> None:
    items = [{"id": 1, "name": "Dairy"}, {"id": 2, "name": "Bakery"}]
    server.on("GET", f"{API}/categories", 200, {"items": items})

    result = cli("--central", CENTRAL, "category", "list", "--json")

    assert json.loads(result.stdout) == items


def test_lists_print_tables_for_people(cli: CliHarness, server: FakeServer) -> None:
    product = {"sku": "MILK-1L", "name": "Milk", "price": "1.25", "category_id": 3, "active": True}
    server.on("GET", f"{API}/products", 200, {"items": [product]})
    server.on("GET", f"{API}/categories", 200, {"items": [{"id": 3, "name": "Dairy"}]})

    result = cli("--central", CENTRAL, "product", "list")

    assert result.exit_code == 0
    assert "MILK-1L" in result.stdout
    assert "Dairy" in result.stdout, "the category by name"
    assert "yes" in result.stdout


def test_store_add_prints_the_key_once_with_a_warning(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/stores", 201, {"id": "s1", "name": "Main", "api_key": "sk_abc"})

    result = cli("--central", CENTRAL, "store", "add", "s1", "--name", "Main")

    assert server.sent_json() == {"id": "s1", "name": "Main"}
    assert result.stdout.count("sk_abc") == 1
    assert "shown only once" in result.stderr


def test_store_add_json_includes_the_key(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/stores", 201, {"id": "s1", "name": "Main", "api_key": "sk_abc"})

    result = cli("--central", CENTRAL, "--json", "store", "add", "s1", "--name", "Main")

    assert json.loads(result.stdout)["api_key"] == "sk_abc"


def test_store_add_tells_what_the_agent_needs_without_repeating_the_key(
    cli: CliHarness, server: FakeServer
) -> None:
    created = {"id": "s1", "name": "Main", "api_key": "sk_abc", "key_id": 1}
    server.on("POST", f"{API}/stores", 201, created | {"kafka_username": "store.s1.0123abcd"})

    result = cli("--central", CENTRAL, "store", "add", "s1", "--name", "Main")

    assert "--store-id s1 --api-key-file" in result.stderr
    assert "store.s1.0123abcd" in result.stderr
    assert "sk_abc" not in result.stderr


def test_store_add_without_kafka_identities_names_no_kafka_user(
    cli: CliHarness, server: FakeServer
) -> None:
    created = {"id": "s1", "name": "Main", "api_key": "sk_abc", "key_id": 1}
    server.on("POST", f"{API}/stores", 201, created | {"kafka_username": None})

    result = cli("--central", CENTRAL, "store", "add", "s1", "--name", "Main")

    assert result.exit_code == 0
    assert "Kafka password" not in result.stderr


def test_store_rotate_and_revoke_key(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/stores/s1/keys", 201, {"id": "s1", "api_key": "k2", "key_id": "9"})
    server.on("DELETE", f"{API}/stores/s1/keys/8", 204)

    assert cli("--central", CENTRAL, "store", "rotate-key", "s1").exit_code == 0
    result = cli("--central", CENTRAL, "--json", "store", "revoke-key", "s1", "8")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"key_id": "8", "revoked": True, "store_id": "s1"}


def test_user_add_reads_password_from_stdin(cli: CliHarness, server: FakeServer) -> None:
    created = {"id": 4, "username": "bob", "role": "staff", "store_id": "s1"}
    server.on("POST", f"{API}/users", 201, created)

    result = cli(
        "--central", CENTRAL, "user", "add", "bob", "--role", "staff", "--store", "s1",
        "--password-stdin", input="s3cret\n",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert server.sent_json() == {
        "username": "bob",
        "password": "s3cret",
        "role": "staff",
        "store_id": "s1",
    }
    assert "s3cret" not in result.output


def test_user_add_prompt_needs_matching_confirmation(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{API}/users", 201, {"id": 5, "username": "eve", "role": "ops"})

    result = cli("--central", CENTRAL, "user", "add", "eve", "--role", "ops", input="a\nb\nc\nc\n")

    assert result.exit_code == 0, result.output
    assert server.sent_json()["password"] == "c"


def test_user_add_rejects_unknown_role(cli: CliHarness, server: FakeServer) -> None:
    result = cli("--central", CENTRAL, "user", "add", "x", "--role", "root", "--password-stdin")

    assert result.exit_code == 2
    assert server.requests == []


SYNC = {
    "store_id": "store-042",
    "ready": True,
    "last_event_at": "2026-11-29T09:58:30+00:00",
    "last_applied_at": "2026-11-29T09:59:58+00:00",
    "events_applied": 1234,
    "dead_letters": 2,
    "partitions": [
        {"topic": "inventory-updated", "partition": 0, "offset": 10, "end_offset": 12, "lag": 2},
        {"topic": "inventory-updated", "partition": 1, "offset": 7, "end_offset": 8, "lag": 1},
    ],
}


def test_sync_status_shows_lag_age_and_dead_letters(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/sync/status", 200, SYNC)

    result = cli("sync", "status")

    assert result.exit_code == 0, result.output
    assert "1m 30s ago" in result.stdout
    assert "inventory-updated" in result.stdout
    lines = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines() if line}
    assert lines["dead"] == "2"
    assert lines["total"] == "3"


def test_sync_status_json_is_the_agents_report(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/sync/status", 200, SYNC)

    result = cli("sync", "status", "--json")

    assert json.loads(result.stdout) == SYNC


def test_sync_status_goes_to_the_agent_even_with_central(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{AGENT}/sync/status", 200, SYNC)

    assert cli("--central", CENTRAL, "sync", "status").exit_code == 0


def test_sync_status_shows_the_offline_queue_rejections_and_the_replay_backoff(
    cli: CliHarness, server: FakeServer
) -> None:
    queue = {
        "offline": "on",
        "depth": 3,
        "units": 7,
        "oldest_age_s": 95.0,
        "overdue": False,
        "rejected": 1,
        "pending": 0,
        "next_attempt_in_s": 8.0,
        "consecutive_failures": 4,
        "last_error": "cannot reach central",
    }
    server.on("GET", f"{AGENT}/sync/status", 200, {**SYNC, "offline_queue": queue})

    result = cli("sync", "status")

    assert result.exit_code == 0, result.output
    rows = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "offline queue 3 sales, 7 units; oldest 1m 35s" in rows
    assert "rejected offline 1" in rows
    assert "replay retry in 8s after 4 failures: cannot reach central" in rows


def test_sync_status_of_an_agent_without_an_offline_queue_shows_no_queue_rows(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{AGENT}/sync/status", 200, SYNC)

    assert "offline queue" not in cli("sync", "status").stdout


def test_sync_status_shows_the_sales_left_to_give_back_to_a_restored_central(
    cli: CliHarness, server: FakeServer
) -> None:
    recovery = {
        "epoch": 2,
        "to_check": 40,
        "present": 7,
        "recovered": 3,
        "unrecovered": 2,
        "next_attempt_in_s": 4.0,
        "consecutive_failures": 3,
        "last_error": "cannot reach central",
    }
    server.on("GET", f"{AGENT}/sync/status", 200, {**SYNC, "recovery": recovery})

    result = cli("sync", "status")

    assert result.exit_code == 0, result.output
    rows = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "recovery 40 sales to send to central (epoch 2); 3 recovered, 7 present" in rows
    assert "unrecovered 2" in rows
    assert "recovery error 3 failures: cannot reach central" in rows


def test_sync_status_shows_no_recovery_rows_before_central_was_ever_restored(
    cli: CliHarness, server: FakeServer
) -> None:
    recovery = {"epoch": 1, "to_check": 0, "present": 0, "recovered": 0, "unrecovered": 0}
    server.on("GET", f"{AGENT}/sync/status", 200, {**SYNC, "recovery": recovery})

    assert "recovery" not in cli("sync", "status").stdout
