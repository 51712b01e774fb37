"""Help reads as prose at any width: paragraphs rewrapped, examples whole, values named as
they are typed (no `<bool>`, `<list[str]>`, `<int range>`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from invctl.main import app

pytestmark = pytest.mark.unit

TYPE_LABEL = re.compile(r"<[a-z][a-z_ \[\]|,]*>")


def _paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _paths(sub, (*path, name))


PATHS = list(_paths(typer.main.get_command(app)))


def _help(*path: str, columns: int = 80) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "invctl")
def test_help_names_no_python_types_and_fits_80_columns_but_examples(
    path: tuple[str, ...],
) -> None:
    text = _help(*path)

    assert TYPE_LABEL.findall(text) == []
    assert [line for line in text.splitlines() if len(line) > 80 and "Example" not in line] == []


def _early_breaks(text: str, width: int) -> list[str]:
    """Lines of the description that end well before the width although their paragraph
    goes on: what keeping the docstring's own line breaks looks like."""
    description = text.split("\n\n", 1)[1]
    for section in ("Arguments:", "Options:"):
        description = description.split(section, 1)[0]
    early = []
    for paragraph in description.split("\n\n"):
        lines = paragraph.splitlines()
        longest_next_word = 20
        early += [line for line in lines[:-1] if len(line) < width - 2 - longest_next_word]
    return early


@pytest.mark.parametrize("columns", [50, 60, 80])
def test_paragraphs_are_rewrapped_to_the_width_not_broken_where_the_docstring_broke(
    columns: int,
) -> None:
    for path in (("buy",), ("orders", "list"), ("sync", "status"), ()):
        assert _early_breaks(_help(*path, columns=columns), columns) == [], path


def test_an_example_is_never_broken_over_two_lines() -> None:
    text = _help("orders", "list", columns=60)

    example = next(line for line in text.splitlines() if "Example:" in line)
    assert example.strip().endswith("--all-pages")


def test_values_are_named_as_typed() -> None:
    text = _help("buy")
    listing = _help("orders", "list")
    importing = _help("import")

    assert "Usage: invctl buy [OPTIONS] SKU[:QTY]..." in text
    assert "-n, --limit LIMIT" in listing
    assert "[default: 50; 1 to 200]" in listing
    assert "--format [csv|jsonl]" in importing


def test_choices_hidden_by_a_metavar_are_listed() -> None:
    text = _help("config", "set")

    assert "one of: agent, central, agent_token_file" in text


def test_a_group_lists_its_commands_with_their_whole_first_sentence() -> None:
    text = _help()

    assert "..." not in text.split("Commands:")[1]
    assert "whoami" in text and "which credentials were used." in text


def test_shell_completion_is_offered() -> None:
    text = _help()

    assert "--install-completion" in text
    assert "--show-completion" in text
