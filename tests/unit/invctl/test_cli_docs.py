"""docs/cli.md is the commands' own help: regenerated, it does not change."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from invctl import docs
from invctl.main import app

pytestmark = pytest.mark.unit


def test_cli_md_is_current() -> None:
    current = docs.DOC.read_text(encoding="utf-8")

    assert docs.updated(current, docs.reference()) == current, (
        "docs/cli.md is stale: run `python -m invctl.docs` and commit the result"
    )


def test_every_command_is_in_the_reference() -> None:
    root = typer.main.get_command(app)
    reference = docs.reference()

    paths = [
        ctx.command_path for _, ctx in docs.commands(root, docs._context(root, "invctl", None))
    ]

    assert len(paths) > 40
    for path in paths:
        assert f"### {path}\n" in reference
        assert f"Usage: {path} " in reference


def test_regenerating_replaces_only_the_part_between_the_markers() -> None:
    text = f"# hand-written\n\n{docs.BEGIN}\nold\n{docs.END}\n\nafter\n"

    assert (
        docs.updated(text, "new") == f"# hand-written\n\n{docs.BEGIN}\nnew\n{docs.END}\n\nafter\n"
    )


def test_a_file_without_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        docs.updated("# no markers\n", "new")


def test_check_fails_on_a_stale_file_until_it_is_regenerated(tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(f"{docs.BEGIN}\nold\n{docs.END}\n", encoding="utf-8")
    given = ["--file", str(stale)]

    assert docs.main([*given, "--check"]) == 1
    assert docs.main(given) == 0
    assert docs.main([*given, "--check"]) == 0
    assert "### invctl buy" in stale.read_text(encoding="utf-8")
