"""Text from a server never acts on the terminal: tables, records, notes and errors show
control characters as visible escapes and rich markup as typed; JSON stays the exact data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import Result

from invwire.text import first_refused_char
from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
# Sets the terminal's title to "owned", rings the bell and clears the screen.
HOSTILE = "Milk\x1b]0;owned\x07\x1b[2J"
HOSTILE_SHOWN = "Milk\\x1b]0;owned\\x07\\x1b[2J"
MARKUP = "[red]x[/red]"
# Characters json.dumps(ensure_ascii=False) would leave raw: DEL, a C1 CSI, a bidi
# override, a line separator, a lone surrogate and a format character beyond the BMP.
RAW_IN_JSON = "a\x7fb\x9bc\u202ed\u2028e\ud800f\U000e0001g"
# Rich prints ANSI styles to a terminal; FORCE_COLOR makes it treat the runner as one.
TERMINAL = {"FORCE_COLOR": "1"}
PIPE = {"FORCE_COLOR": None, "TERM": "dumb"}


@pytest.fixture(autouse=True)
def _categories(server: FakeServer) -> None:
    """Product tables name each product's category: central's one category, hostile too."""
    server.on("GET", f"{API}/categories", 200, {"items": [{"id": 3, "name": HOSTILE}]})


def _product(name: str) -> dict[str, Any]:
    return {"sku": "MILK-1L", "name": name, "price": "1.25", "category_id": 3, "active": True}


def _hostile_sequences_in(text: str) -> list[str]:
    return [seq for seq in ("\x1b]", "\x07", "\x1b[2J", "\x9b", "\u202e") if seq in text]


@pytest.mark.parametrize("env", [TERMINAL, PIPE], ids=["terminal", "pipe"])
def test_product_show_escapes_control_characters(
    cli: CliHarness, server: FakeServer, env: dict[str, str | None]
) -> None:
    server.on("GET", f"{API}/products/MILK-1L", 200, _product(HOSTILE))

    result = cli("--central", CENTRAL, "product", "show", "MILK-1L", env=env)

    assert result.exit_code == 0, result.output
    assert HOSTILE_SHOWN in result.stdout
    assert _hostile_sequences_in(result.stdout) == []


def test_terminal_output_still_has_its_own_styles(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/products/MILK-1L", 200, _product(HOSTILE))

    result = cli("--central", CENTRAL, "product", "show", "MILK-1L", env=TERMINAL)

    assert "\x1b[1m" in result.stdout  # the bold field names: rich did write to a "terminal"


def test_pipe_output_has_no_escape_character_at_all(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/products", 200, {"items": [_product(HOSTILE)]})

    result = cli("--central", CENTRAL, "product", "list", env=PIPE)

    assert HOSTILE_SHOWN in result.stdout
    assert "\x1b" not in result.stdout


@pytest.mark.parametrize("env", [TERMINAL, PIPE], ids=["terminal", "pipe"])
def test_table_cells_print_markup_as_typed(
    cli: CliHarness, server: FakeServer, env: dict[str, str | None]
) -> None:
    server.on("GET", f"{API}/products", 200, {"items": [_product(MARKUP), _product(HOSTILE)]})

    result = cli("--central", CENTRAL, "product", "list", env=env)

    assert result.exit_code == 0, result.output
    assert MARKUP in result.stdout
    assert "\x1b[31m" not in result.stdout  # not turned red
    assert HOSTILE_SHOWN in result.stdout
    assert _hostile_sequences_in(result.stdout) == []


def test_unencodable_and_invisible_characters_are_shown(
    cli: CliHarness, server: FakeServer
) -> None:
    server.on("GET", f"{API}/products", 200, {"items": [_product(RAW_IN_JSON)]})

    result = cli("--central", CENTRAL, "product", "list", env=PIPE)

    assert result.exit_code == 0, result.output
    assert "\\x7f" in result.stdout
    assert "\\u202e" in result.stdout
    assert "\\ud800" in result.stdout


def test_keys_and_titles_from_a_server_are_escaped_and_literal(
    cli: CliHarness, server: FakeServer
) -> None:
    category = {"id": 1, "name": MARKUP, f"\x1b[2J{MARKUP}": "v"}
    server.on("POST", f"{API}/categories", 201, category)

    result = cli("--central", CENTRAL, "category", "add", "Dairy", env=TERMINAL)

    assert result.exit_code == 0, result.output
    assert f"\\x1b[2J{MARKUP}" in result.stdout
    assert _hostile_sequences_in(result.stdout) == []


def test_a_title_built_from_server_text_is_not_markup(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/sync/stores", 200, {"kafka": f"[bold]{HOSTILE}", "items": []})

    result = cli("--central", CENTRAL, "sync", "status", "--all", env=PIPE)

    assert result.exit_code == 0, result.output
    assert f"Stores (Kafka: [bold]{HOSTILE_SHOWN})" in result.stdout


def test_notes_are_escaped(cli: CliHarness, server: FakeServer) -> None:
    server.on("POST", f"{AGENT}/sync/resync", 202, {"unavailable_meanwhile": HOSTILE})

    result = cli("sync", "resync", "--no-wait", env=PIPE)

    assert result.exit_code == 0, result.output
    assert HOSTILE_SHOWN in result.stderr
    assert _hostile_sequences_in(result.stderr) == []


def _refusal(server: FakeServer) -> None:
    body = error_body(
        "price.invalid",
        f"bad {HOSTILE}",
        errors=[{"line": 2, "code": MARKUP, "message": HOSTILE}],
        raw=RAW_IN_JSON,
        **{f"field{HOSTILE}": HOSTILE},
    )
    server.on("GET", f"{API}/products/MILK-1L", 422, body)


def test_error_message_and_details_are_escaped(cli: CliHarness, server: FakeServer) -> None:
    _refusal(server)

    result = cli("--central", CENTRAL, "product", "show", "MILK-1L", env=TERMINAL)

    assert result.exit_code == 1
    assert f"bad {HOSTILE_SHOWN} [price.invalid]" in result.stderr
    assert f"line 2: {HOSTILE_SHOWN} [{MARKUP}]" in result.stderr
    assert f"field{HOSTILE_SHOWN}: {HOSTILE_SHOWN}" in result.stderr
    assert "raw: a\\x7fb\\x9bc\\u202ed\\u2028e\\ud800f\\ue0001g" in result.stderr
    assert _hostile_sequences_in(result.stderr) == []


def _no_raw_refused_character(result: Result) -> None:
    for line in result.stdout.splitlines():
        assert first_refused_char(line) is None, repr(line)


def test_json_is_the_exact_data_with_every_refused_character_escaped(
    cli: CliHarness, server: FakeServer
) -> None:
    products = [_product(HOSTILE), _product(MARKUP), _product(RAW_IN_JSON), _product("Crème")]
    server.on("GET", f"{API}/products", 200, {"items": products})

    result = cli("--central", CENTRAL, "--json", "product", "list")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == products
    _no_raw_refused_character(result)
    assert "Crème" in result.stdout  # readable text stays readable
    assert "\\ud800" in result.stdout
    assert "\\udb40\\udc01" in result.stdout  # U+E0001 as a JSON surrogate pair


def test_json_error_is_the_exact_error(cli: CliHarness, server: FakeServer) -> None:
    _refusal(server)

    result = cli("--central", CENTRAL, "--json", "product", "show", "MILK-1L")

    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["message"] == f"bad {HOSTILE}"
    assert error["details"]["errors"] == [{"line": 2, "code": MARKUP, "message": HOSTILE}]
    assert error["details"]["raw"] == RAW_IN_JSON
    _no_raw_refused_character(result)
