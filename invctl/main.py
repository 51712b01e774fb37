"""The `invctl` entrypoint: global options, command registration and error reporting."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from invctl import __version__
from invctl.commands import (
    auth,
    buy,
    category,
    config,
    importer,
    orders,
    product,
    stock,
    store,
    sync,
    user,
)
from invctl.context import Deps, GlobalOptions, State
from invctl.errors import InvctlError
from invctl.options import JsonFlag
from invctl.output import Output


class InvctlGroup(TyperGroup):
    """The root group: the one place where errors become output and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except InvctlError as err:
            raise _exit(ctx, err) from None
        except Exception as exc:
            if os.environ.get("INVCTL_DEBUG"):
                raise
            raise _exit(ctx, _internal(exc)) from None


def _exit(ctx: typer.Context, err: InvctlError) -> typer.Exit:
    state = ctx.find_object(State)
    Output(json_mode=bool(state and state.json)).error(err)
    return typer.Exit(int(err.exit_code))


def _internal(exc: Exception) -> InvctlError:
    return InvctlError(
        f"internal error: {type(exc).__name__}: {exc}",
        code="internal",
        hint="run again with INVCTL_DEBUG=1 for a traceback and report it",
    )


app = typer.Typer(
    cls=InvctlGroup,
    name="invctl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"invctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            envvar="INVCTL_AGENT",
            metavar="URL",
            show_default=False,
            help="Store agent URL (default: config file, else http://127.0.0.1:8787).",
        ),
    ] = None,
    central: Annotated[
        str | None,
        typer.Option(
            "--central",
            envvar="INVCTL_CENTRAL",
            metavar="URL",
            show_default=False,
            help="Central API URL (default: config file). Also sends reads to central.",
        ),
    ] = None,
    json: JsonFlag = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            envvar="INVCTL_TIMEOUT",
            metavar="SECONDS",
            min=0.1,
            help="HTTP timeout per request.",
        ),
    ] = 10.0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Inventory CLI for store staff, ops and admins (agent or central).

    Reads go to the local store agent; admin commands go to central.
    Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused, 5 unavailable, 6 auth.

    Example: invctl --central http://central:8000 --json product list
    """
    deps = ctx.obj if isinstance(ctx.obj, Deps) else Deps()
    options = GlobalOptions(
        agent=agent,
        central=central,
        timeout=timeout,
        json=json,
        reads_from_central=central is not None and _named_more_explicitly(ctx, "central", "agent"),
    )
    state = State(options, deps)
    ctx.obj = state
    ctx.call_on_close(state.close)


# By name: typer ships its own copy of click, so its ParameterSource is not click's.
_SOURCE_RANK = {"COMMANDLINE": 2, "ENVIRONMENT": 1}


def _named_more_explicitly(ctx: typer.Context, first: str, second: str) -> bool:
    def rank(name: str) -> int:
        source = ctx.get_parameter_source(name)
        return _SOURCE_RANK.get(source.name, 0) if source is not None else 0

    return rank(first) > rank(second)


for module in (auth, buy, orders, category, product, stock, store, user, sync, importer, config):
    module.register(app)


def main() -> None:
    app(prog_name="invctl")
