"""`invctl buy` and `invctl orders` exit as docs/wire.md documents (3 not found, 4 refused,
5 unavailable, 6 auth) with a hint naming the real cause; `--status` takes every status a list
shows; `--since today|1d|DATE` is sent with its offset; `buy --help` tells how queuing is."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
ORDER_ID = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"


def agent_refuses(server: FakeServer, status: int, code: str, **details: Any) -> None:
    server.on("POST", f"{AGENT}/orders", status, error_body(code, f"refused: {code}", **details))


# --- buy: exit codes and hints ---------------------------------------------------------------


def test_a_revoked_store_key_exits_6_with_a_hint_naming_the_key_and_the_way_out(
    cli: CliHarness, server: FakeServer
) -> None:
    agent_refuses(server, 502, "central.auth_failed", central_code="auth.invalid", store_id="s-7")

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 6
    assert "[central.auth_failed]" in result.stderr
    hint = result.stderr.split("hint: ", 1)[1]
    assert "store agent's API key (store s-7)" in hint
    assert "invctl store rotate-key s-7" in hint
    assert "STOREAGENT_API_KEY" in hint
    assert "try again" not in hint


def test_a_revoked_key_at_central_directly_exits_6_naming_invctl_api_key(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/orders", 401, error_body("auth.invalid", "invalid API key"))

    result = cli("--central", CENTRAL, "buy", "MILK-1L", env={"INVCTL_API_KEY": "k"})

    assert result.exit_code == 6
    assert "INVCTL_API_KEY" in result.stderr


@pytest.mark.parametrize("target", ["agent", "central"])
def test_an_unknown_sku_exits_3_as_stock_show_does(
    cli: CliHarness, server: FakeServer, target: str
) -> None:
    url = f"{AGENT}/orders" if target == "agent" else f"{API}/orders"
    server.on("POST", url, 422, error_body("order.sku_unknown", "unknown SKU", skus=["NOPE"]))
    central = ["--central", CENTRAL] if target == "central" else []

    result = cli(*central, "buy", "NOPE", env={"INVCTL_API_KEY": "k"})

    assert result.exit_code == 3
    assert "invctl stock show SKU" in result.stderr


def test_an_inactive_sku_is_refused_with_4(cli: CliHarness, server: FakeServer) -> None:
    agent_refuses(server, 422, "order.sku_inactive", skus=["OLD"])

    assert cli("buy", "OLD").exit_code == 4


def test_a_key_used_for_other_lines_is_refused_with_4(cli: CliHarness, server: FakeServer) -> None:
    agent_refuses(server, 422, "idempotency.mismatch", local_ref="L-1")

    result = cli("buy", "MILK-1L", "--idempotency-key", "till-1")

    assert result.exit_code == 4
    assert "use a new key" in result.stderr


def test_central_down_with_offline_off_exits_5_saying_so_not_that_the_agent_is_not_ready(
    cli: CliHarness, server: FakeServer
) -> None:
    agent_refuses(server, 503, "central.unavailable", local_ref="L-1", reason="connect")

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 5
    hint = result.stderr.split("hint: ", 1)[1]
    assert "central is unreachable from the store agent" in hint
    assert "offline selling is off" in hint
    assert "--offline on" in hint
    assert "not ready" not in hint


def test_central_down_with_a_sale_the_offline_policy_refused_names_why(
    cli: CliHarness, server: FakeServer
) -> None:
    offline = {"code": "offline.queue_full", "message": "the offline queue is full"}
    agent_refuses(server, 503, "central.unavailable", local_ref="L-1", offline=offline)

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 5
    assert "could not be queued offline (the offline queue is full)" in result.stderr
    assert "offline selling is off" not in result.stderr


def test_a_sale_another_request_is_settling_exits_5_to_retry(
    cli: CliHarness, server: FakeServer
) -> None:
    agent_refuses(server, 409, "order.in_progress", local_ref="L-1")

    result = cli("buy", "MILK-1L", "--idempotency-key", "till-1")

    assert result.exit_code == 5
    assert "again in a moment" in result.stderr


@pytest.mark.parametrize(
    ("outcome", "words"), [("voided", "the sale is void"), ("not_sent", "nothing was saved")]
)
def test_a_replica_that_cannot_record_the_sale_says_what_became_of_it(
    cli: CliHarness, server: FakeServer, outcome: str, words: str
) -> None:
    agent_refuses(server, 503, "database.unavailable", outcome=outcome, local_ref="L-1")

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 5
    assert words in result.stderr


def test_a_replica_still_building_says_so(cli: CliHarness, server: FakeServer) -> None:
    agent_refuses(server, 503, "replica.not_ready")

    result = cli("buy", "MILK-1L")

    assert result.exit_code == 5
    assert "still building its replica" in result.stderr


def test_buy_help_says_queuing_is_off_by_default_and_how_to_turn_it_on(
    cli: CliHarness,
) -> None:
    text = " ".join(cli("buy", "--help").stdout.split())

    assert "off by default" in text
    assert "storeagent run --offline on" in text
    assert "STOREAGENT_OFFLINE=on" in text
    assert "queues it if central is unreachable" not in text


# --- orders: statuses, since, cancel ---------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["pending", "confirmed", "cancelled", "queued", "rejected", "failed"]
)
def test_every_status_the_agent_shows_is_a_filter(
    cli: CliHarness, server: FakeServer, status: str
) -> None:
    server.on("GET", f"{AGENT}/orders", 200, {"items": []})

    result = cli("orders", "list", "--status", status)

    assert result.exit_code == 0, result.output
    assert server.requests[-1].url.params["status"] == status


@pytest.mark.parametrize("status", ["pending", "queued", "rejected", "failed"])
def test_central_refuses_the_store_only_statuses_before_asking(
    cli: CliHarness, server: FakeServer, status: str
) -> None:
    result = cli("--central", CENTRAL, "orders", "list", "--status", status)

    assert result.exit_code == 2
    assert "exist only at the store agent" in result.stderr
    assert server.requests == []


def _midnight(day: datetime) -> str:
    return day.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("today", _midnight),
        ("yesterday", lambda now: _midnight(now - timedelta(days=1))),
        ("1d", lambda now: (now - timedelta(days=1)).isoformat()),
        ("12h", lambda now: (now - timedelta(hours=12)).isoformat()),
        ("30m", lambda now: (now - timedelta(minutes=30)).isoformat()),
        ("2w", lambda now: (now - timedelta(weeks=2)).isoformat()),
        ("2026-11-01", lambda now: "2026-11-01T00:00:00+00:00"),
        ("2026-11-29T09:00:00+02:00", lambda now: "2026-11-29T09:00:00+02:00"),
    ],
)
def test_since_at_the_agent_is_sent_as_a_moment_with_its_offset(
    cli: CliHarness, server: FakeServer, given: str, expected: Any
) -> None:
    """TZ=UTC in these tests: local midnight is 00:00+00:00."""
    server.on("GET", f"{AGENT}/orders", 200, {"items": []})

    result = cli("orders", "list", "--since", given)

    assert result.exit_code == 0, result.output
    assert server.requests[-1].url.params["since"] == expected(cli.now)


def test_today_is_midnight_in_the_zone_times_are_shown_in(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{AGENT}/orders", 200, {"items": []})

    result = cli("orders", "list", "--since", "today", env={"TZ": "Asia/Tokyo"})

    assert result.exit_code == 0, result.output
    # 10:00 UTC on 29 November is 19:00 in Tokyo, on the same day
    assert server.requests[-1].url.params["since"] == "2026-11-29T00:00:00+09:00"


@pytest.mark.parametrize("given", ["last week", "1y", "0d1", "2026-02-30", "999999w"])
def test_a_since_that_is_no_moment_is_a_usage_error_naming_the_forms(
    cli: CliHarness, server: FakeServer, given: str
) -> None:
    result = cli("orders", "list", "--since", given)

    assert result.exit_code == 2
    assert "today, yesterday" in result.stderr
    assert server.requests == []


def test_until_at_the_agent_is_sent_too(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/orders", 200, {"items": []})

    result = cli("orders", "list", "--since", "yesterday", "--until", "today")

    assert result.exit_code == 0, result.output
    params = server.requests[-1].url.params
    assert (params["since"], params["until"]) == (
        "2026-11-28T00:00:00+00:00",
        "2026-11-29T00:00:00+00:00",
    )


def test_cancel_through_the_agent_with_a_revoked_key_exits_6(
    cli: CliHarness, server: FakeServer
) -> None:
    body = error_body("central.auth_failed", "key refused", store_id="s-7")
    server.on("POST", f"{AGENT}/orders/{ORDER_ID}/cancel", 502, body)

    result = cli("orders", "cancel", ORDER_ID)

    assert result.exit_code == 6
    assert "nothing was cancelled" in result.stderr


def test_cancel_through_the_agent_with_central_down_exits_5_never_queued(
    cli: CliHarness, server: FakeServer
) -> None:
    body = error_body("central.unavailable", "cannot reach central", order_id=ORDER_ID)
    server.on("POST", f"{AGENT}/orders/{ORDER_ID}/cancel", 503, body)

    result = cli("orders", "cancel", ORDER_ID)

    assert result.exit_code == 5
    assert "a cancel is never queued" in result.stderr


def test_cancelling_a_queued_sale_is_refused_with_4(cli: CliHarness, server: FakeServer) -> None:
    body = error_body("order.not_placed", "sale L-1 has no order at central: it is queued")
    server.on("POST", f"{AGENT}/orders/L-1/cancel", 409, body)

    result = cli("orders", "cancel", "L-1")

    assert result.exit_code == 4
    assert "nothing to cancel" in result.stderr


def test_cancel_at_central_is_named_more_explicitly_than_the_agent(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("POST", f"{API}/orders/{ORDER_ID}/cancel", 200, {"id": ORDER_ID, "lines": []})

    result = cli("--central", CENTRAL, "orders", "cancel", ORDER_ID, env={"INVCTL_TOKEN": "t"})

    assert result.exit_code == 0, result.output
    assert [str(r.url) for r in server.requests] == [f"{API}/orders/{ORDER_ID}/cancel"]
