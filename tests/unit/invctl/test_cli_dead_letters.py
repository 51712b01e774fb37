"""`invctl sync dead-letters list | show`: the agent's dead letters, paged newest first and cut
with a warning, shown one at a time with an untrusted value that never reaches the terminal
raw."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

LIST = f"{AGENT}/sync/dead-letters"
MOMENT = "2026-11-29T10:00:00.000000+00:00"


def letter(letter_id: int, **overrides: Any) -> dict[str, Any]:
    return {
        "id": letter_id,
        "topic": "inventory-updated",
        "partition": 2,
        "offset": 100 + letter_id,
        "key": {"encoding": "text", "data": "MILK-1L", "size": 7, "truncated": False},
        "value_size": 15,
        "code": "json.invalid",
        "message": "the value is not UTF-8 JSON",
        "created_at": MOMENT,
        **overrides,
    }


def paged_agent(server: FakeServer, count: int) -> None:
    """An agent holding dead letters 1..count, answering pages as the real one does."""

    def answer(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        before = int(request.url.params.get("before", count + 1))
        ids = [i for i in range(count, 0, -1) if i < before]
        page = ids[:limit]
        following = page[-1] if len(ids) > limit else None
        body = {"items": [letter(i) for i in page], "total": count, "next_before": following}
        return httpx.Response(200, json=body)

    server.on_call("GET", LIST, answer)


def test_the_list_shows_id_when_where_code_and_message(cli: CliHarness, server: FakeServer):
    paged_agent(server, 2)

    result = cli("sync", "dead-letters", "list")

    assert result.exit_code == 0, result.output
    header, _, first, second = result.stdout.splitlines()[:4]
    assert header.split() == ["id", "when", "topic", "part", "offset", "code", "message"]
    when = ["2026-11-29", "10:00:00"]
    assert first.split()[:7] == ["2", *when, "inventory-updated", "2", "102", "json.invalid"]
    assert "the value is not UTF-8 JSON" in first
    assert second.split()[0] == "1"
    assert result.stderr == ""


def test_a_cut_list_warns_on_stderr_and_all_follows_every_page(cli: CliHarness, server: FakeServer):
    paged_agent(server, 450)

    cut = cli("--json", "sync", "dead-letters", "list", "--limit", "3")
    every = cli("--json", "sync", "dead-letters", "list", "--all")

    assert [item["id"] for item in json.loads(cut.stdout)] == [450, 449, 448]
    assert "showing the first 3 dead letters; there are more" in cut.stderr
    ids = [item["id"] for item in json.loads(every.stdout)]
    assert ids == list(range(450, 0, -1))
    assert every.stderr == ""
    pages = [r for r in server.requests if r.url.params.get("limit") == "200"]
    assert [r.url.params.get("before") for r in pages] == [None, "251", "51"]


def test_a_cursor_that_does_not_go_down_is_a_server_error(cli: CliHarness, server: FakeServer):
    body = {"items": [letter(5)], "total": 9, "next_before": 5}
    server.on("GET", LIST, 200, body)

    result = cli("sync", "dead-letters", "list", "--all")

    assert result.exit_code != 0
    assert "did not go down" in result.stderr


def test_show_prints_the_fields_and_the_value_whole(cli: CliHarness, server: FakeServer):
    value = {"encoding": "text", "data": "not json at all", "size": 15, "truncated": False}
    server.on("GET", f"{LIST}/7", 200, {**letter(7), "value": value})

    result = cli("sync", "dead-letters", "show", "7")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Dead letter 7" in out
    for text in ("inventory-updated", "107", "MILK-1L", "json.invalid", "2026-11-29 10:00:00"):
        assert text in out
    assert "Value (15 bytes, as text):" in out
    assert out.rstrip().endswith("not json at all")


def test_show_says_how_a_value_is_shown_and_that_it_was_cut(cli: CliHarness, server: FakeServer):
    value = {"encoding": "base64", "data": "//4gbm90", "size": 900000, "truncated": True}
    key = {"encoding": "escaped", "data": "K\\x1b", "size": 2, "truncated": False}
    server.on("GET", f"{LIST}/7", 200, {**letter(7, key=key), "value": value})

    result = cli("sync", "dead-letters", "show", "7")

    assert "Value (900000 bytes, as not UTF-8, base64; only its first bytes are shown):" in (
        result.stdout
    )
    assert "K\\x1b (text, control characters escaped)" in result.stdout


def test_text_from_the_agent_never_reaches_the_terminal_raw(cli: CliHarness, server: FakeServer):
    raw = "Milk\x1b]0;owned\x07\u202e"  # an agent that did not escape: invctl still does
    value = {"encoding": "text", "data": raw, "size": 9, "truncated": False}
    server.on("GET", f"{LIST}/7", 200, {**letter(7, message=raw), "value": value})
    server.on("GET", LIST, 200, {"items": [letter(7, message=raw)], "next_before": None})

    shown = cli("sync", "dead-letters", "show", "7")
    listed = cli("sync", "dead-letters", "list")

    for result in (shown, listed):
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
        assert "\\x1b" in result.stdout
    assert "Milk\\x1b]0;owned\\x07\\u202e" in shown.stdout


def test_show_json_prints_the_agents_answer(cli: CliHarness, server: FakeServer):
    body = {**letter(7), "value": None}
    server.on("GET", f"{LIST}/7", 200, body)

    result = cli("--json", "sync", "dead-letters", "show", "7")

    assert json.loads(result.stdout) == body


def test_an_unknown_id_exits_3_with_the_agents_code(cli: CliHarness, server: FakeServer):
    server.on("GET", f"{LIST}/99", 404, error_body("dead_letter.not_found", "no such", id=99))

    result = cli("sync", "dead-letters", "show", "99")

    assert result.exit_code == 3
    assert "[dead_letter.not_found]" in result.stderr


@pytest.mark.parametrize("given", ["0", "abc", "-1", "9223372036854775808"])
def test_an_id_that_is_not_a_positive_whole_number_exits_2_asking_nothing(
    cli: CliHarness, server: FakeServer, given: str
):
    result = cli("sync", "dead-letters", "show", given)

    assert result.exit_code == 2
    assert server.requests == []
