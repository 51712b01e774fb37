"""`invctl config show | set | unset`: defaults kept in config.toml."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from invctl.config import CONFIG_DIR_ENV, normalize_url, normalize_url_list
from invctl.context import Origin, State, state_of
from invctl.options import JsonFlag
from invctl.output import Column

app = typer.Typer(
    help="Show or change invctl's saved defaults.\n\nExample: invctl config show",
    no_args_is_help=True,
)


class Key(StrEnum):
    agent = "agent"
    central = "central"
    agent_token_file = "agent_token_file"  # noqa: S105 (a setting name)


KeyArg = Annotated[Key, typer.Argument(metavar="KEY", help="Setting name.", show_default=False)]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="config")


OriginFlag = Annotated[
    bool,
    typer.Option(
        "--origin",
        help="Say where each value came from: a flag, an environment variable, the config "
        "file or the default; and why reads go to the agent or to central.",
    ),
]
ORIGIN_COLUMNS = (
    Column("setting"),
    Column("value", wrap=True),
    Column("origin"),
    Column("source", wrap=True),
)


@app.command("show")
def show(ctx: typer.Context, origin: OriginFlag = False, json_out: JsonFlag = False) -> None:
    """Show where settings live, the effective URLs, where reads go, the agent's token file
    and whether a login is saved.

    No token itself is ever shown. With --origin, one row per setting says where its value
    came from. The rule for reads: they go to central only when central is named more
    explicitly than the agent (a flag beats an environment variable, which beats the config
    file, which beats the default); a tie reads the agent.

    Example: invctl config show --origin
    """
    state = state_of(ctx, json_out)
    if origin:
        state.out.emit(setting_origins(ctx, state), table=ORIGIN_COLUMNS)
        return
    central = _central_or_none(state)
    record = {
        "config_file": str(state.config.path),
        "credentials_file": str(state.credentials.path),
        "agent": state.agent_url(),
        "agent_token_file": str(state.agent_token().path),
        "central": central,
        "reads": state.reads_from(),
        "logged_in": bool(central and state.credentials.get(central)),
    }
    state.out.emit(record, title="invctl configuration")


def _central_or_none(state: State) -> str | None:
    return None if state.origin("central") is Origin.unset else state.central_url()


def setting_origins(ctx: typer.Context, state: State) -> list[dict[str, Any]]:
    """Each setting, its effective value, and where it came from (`source`: the flag, the
    environment variable or the file; none for a default)."""
    names = _option_names(ctx)
    values: dict[str, Any] = {
        "agent": state.agent_url(),
        "central": _central_or_none(state),
        "agent_token_file": str(state.agent_token().path),
        "output": "json" if state.json else state.options.output,
        "utc": state.options.utc,
        "timeout": state.options.timeout,
        "insecure": state.options.insecure,
        "ca_file": str(state.options.ca_file) if state.options.ca_file else None,
    }
    rows = [_config_dir_row(state)]
    for setting, value in values.items():
        where = state.origin(setting)
        source = _source(where, names.get(setting), state)
        if setting == "output" and _chosen_by_json_flag(state):
            where, source = Origin.flag, "--json"
        rows.append(_row(setting, value, where, source))
    rows.append(_reads_row(state))
    return rows


def _chosen_by_json_flag(state: State) -> bool:
    """The root's --json, or the command's (which the root's options do not know)."""
    return "json" in state.options.sources or (state.json and not state.options.json)


def _row(setting: str, value: Any, origin: Origin | str, source: str | None) -> dict[str, Any]:
    return {"setting": setting, "value": value, "origin": str(origin), "source": source}


def _option_names(ctx: typer.Context) -> dict[str, tuple[str, str | None]]:
    """Each global option's flag and environment variable, as the root command declares."""
    root = ctx.find_root().command
    names: dict[str, tuple[str, str | None]] = {}
    for param in root.params:
        if param.name and param.opts:
            envvar = getattr(param, "envvar", None)
            named = envvar if isinstance(envvar, str) else None
            names[param.name] = (max(param.opts, key=len), named)
    return names


def _source(where: Origin, names: tuple[str, str | None] | None, state: State) -> str | None:
    flag, envvar = names or (None, None)
    if where is Origin.flag:
        return flag
    if where is Origin.env:
        return envvar
    if where is Origin.file:
        return str(state.config.path)
    return None


def _config_dir_row(state: State) -> dict[str, Any]:
    named = bool(os.environ.get(CONFIG_DIR_ENV))
    where, source = (Origin.env, CONFIG_DIR_ENV) if named else (Origin.default, None)
    return _row("config_file", str(state.config.path), where, source)


def _reads_row(state: State) -> dict[str, Any]:
    central, agent = state.origin("central"), state.origin("agent")
    reads = state.reads_from()
    if reads == "central":
        why = f"central ({central}) is named more explicitly than the agent ({agent})"
    elif central is Origin.unset:
        why = "no central is configured"
    else:
        why = f"the agent ({agent}) is named at least as explicitly as central ({central})"
    return _row("reads", reads, "rule", why)


@app.command("set")
def set_value(
    ctx: typer.Context,
    key: KeyArg,
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE",
            help="A URL (agent, central; central may take several, comma-separated), or a "
            "file (agent_token_file).",
            show_default=False,
        ),
    ],
    json_out: JsonFlag = False,
) -> None:
    """Save a default: the agent's or central's URL, or the agent's terminal token file.

    Example: invctl config set central http://central.example:8000
    """
    state = state_of(ctx, json_out)
    saved = _saved(key, value)
    state.config.set(key.value, saved)
    state.out.done({key.value: saved}, f"Saved {key.value} = {saved} in {state.config.path}.")


def _saved(key: Key, value: str) -> str:
    if key is Key.agent_token_file:
        return _file(value)
    if key is Key.central:  # one URL, or several comma-separated, tried in turn
        return ",".join(normalize_url_list(value))
    return normalize_url(value)


def _file(value: str) -> str:
    return str(Path(value).expanduser().absolute())


@app.command("unset")
def unset_value(ctx: typer.Context, key: KeyArg, json_out: JsonFlag = False) -> None:
    """Remove a saved default.

    Example: invctl config unset central
    """
    state = state_of(ctx, json_out)
    state.config.set(key.value, None)
    state.out.done({key.value: None}, f"Removed {key.value} from {state.config.path}.")
