"""Every registered command documents itself with an example; startup stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from invctl import __version__
from invctl.main import app

pytestmark = pytest.mark.unit


def _walk(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


def _commands() -> list[tuple[tuple[str, ...], object]]:
    return list(_walk(typer.main.get_command(app)))


def _leaves() -> list[tuple[str, ...]]:
    return [path for path, command in _commands() if not hasattr(command, "commands")]


def test_the_documented_commands_are_registered() -> None:
    assert set(_leaves()) >= {
        ("login",), ("logout",), ("whoami",), ("import",),
        ("category", "add"), ("category", "list"),
        ("product", "add"), ("product", "list"), ("product", "show"),
        ("stock", "show"), ("stock", "set"), ("stock", "adjust"), ("stock", "history"),
        ("store", "add"), ("store", "list"), ("store", "rotate-key"), ("store", "revoke-key"),
        ("user", "add"), ("sync", "status"),
    }  # fmt: skip


def test_staff_commands_are_registered() -> None:
    names = {path[0] for path in _leaves()}

    assert {"buy", "orders", "stock", "sync"} <= names


@pytest.mark.parametrize("path", _leaves(), ids=" ".join)
def test_every_command_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    example = next(line for line in result.stdout.splitlines() if "Example:" in line)
    assert "invctl " in example
    assert all(word in example for word in path)


def test_every_command_and_group_help_has_an_example_line() -> None:
    for path, command in _commands():
        help_text = getattr(command, "help", None) or ""
        assert re.search(r"^Example: .*\binvctl ", help_text, re.MULTILINE), path


def test_every_command_takes_json() -> None:
    for path, command in _commands():
        if path and not hasattr(command, "commands"):
            options = {opt for param in command.params for opt in param.opts}  # type: ignore[attr-defined]
            assert "--json" in options, path


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout.strip() == f"invctl {__version__}"


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [])

    assert "Usage" in result.output
    assert "stock" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    assert CliRunner().invoke(app, ["frobnicate"]).exit_code == 2


def test_importing_the_cli_loads_no_http_or_table_libraries() -> None:
    code = (
        "import sys, invctl.main\n"
        "heavy = {'httpx', 'rich', 'platformdirs', 'csv', 'decimal'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"
