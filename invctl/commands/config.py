"""`invctl config show | set | unset`: defaults kept in config.toml."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from invctl.config import normalize_url
from invctl.context import state_of
from invctl.options import JsonFlag

app = typer.Typer(
    help="Show or change invctl's saved defaults.\n\nExample: invctl config show",
    no_args_is_help=True,
)


class Key(StrEnum):
    agent = "agent"
    central = "central"


KeyArg = Annotated[Key, typer.Argument(metavar="KEY", help="Setting name.", show_default=False)]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="config")


@app.command("show")
def show(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Show where settings live, the effective URLs and whether a login is saved.

    The token itself is never shown.

    Example: invctl config show
    """
    state = state_of(ctx, json_out)
    saved = state.config.load()
    central = state.central_url() if state.options.central or saved.get("central") else None
    record = {
        "config_file": str(state.config.path),
        "credentials_file": str(state.credentials.path),
        "agent": state.agent_url(),
        "central": central,
        "logged_in": bool(central and state.credentials.get(central)),
    }
    state.out.emit(record, title="invctl configuration")


@app.command("set")
def set_value(
    ctx: typer.Context,
    key: KeyArg,
    value: Annotated[str, typer.Argument(metavar="URL", help="A URL.", show_default=False)],
    json_out: JsonFlag = False,
) -> None:
    """Save a default URL for the agent or central.

    Example: invctl config set central http://central.example:8000
    """
    state = state_of(ctx, json_out)
    url = normalize_url(value)
    state.config.set(key.value, url)
    state.out.done({key.value: url}, f"Saved {key.value} = {url} in {state.config.path}.")


@app.command("unset")
def unset_value(ctx: typer.Context, key: KeyArg, json_out: JsonFlag = False) -> None:
    """Remove a saved default.

    Example: invctl config unset central
    """
    state = state_of(ctx, json_out)
    state.config.set(key.value, None)
    state.out.done({key.value: None}, f"Removed {key.value} from {state.config.path}.")
