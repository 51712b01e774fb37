"""The `invctl` entrypoint: global options, command registration and error reporting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from invctl import __version__
from invctl.commands import (
    allowance,
    auth,
    buy,
    category,
    config,
    export,
    importer,
    orders,
    product,
    report,
    sales,
    stock,
    store,
    sync,
    user,
)
from invctl.context import Deps, GlobalOptions, Origin, State
from invctl.errors import InvctlError
from invctl.help import HelpGroup, adopt
from invctl.options import JsonFlag
from invctl.output import Output, OutputFormat, Style, default_format, use_style
from invctl.traced import traced_command


class InvctlGroup(HelpGroup):
    """The root group: the one place where errors become output and an exit code, and where
    every command gets invctl's help layout (`invctl.help`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        adopt(self)

    def invoke(self, ctx: Any) -> Any:
        try:
            with traced_command(ctx, self):
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
    rich_markup_mode=None,  # plain help and usage errors: wrapped as prose, no colour, no boxes
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
            help="Central API URL (default: config file), or several comma-separated: a "
            "request that cannot connect to one goes to the next. Also sends reads to "
            "central, unless the agent is named as explicitly.",
        ),
    ] = None,
    json: JsonFlag = False,
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            envvar="INVCTL_OUTPUT",
            show_default=False,
            help="How data is printed: table (the default on a terminal), tsv (tab-separated "
            "lines with a header; the default when stdout is not a terminal) or json "
            "(the same as --json).",
        ),
    ] = None,
    utc: Annotated[
        bool,
        typer.Option(
            "--utc",
            envvar="INVCTL_UTC",
            help="Show times in UTC (marked Z) instead of local time.",
        ),
    ] = False,
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
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            envvar="INVCTL_INSECURE",
            help="Allow plain http:// to another machine (passwords, tokens and keys then "
            "cross the network in clear). Without it such URLs are refused (exit 2).",
        ),
    ] = False,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            envvar="INVCTL_CA_FILE",
            metavar="FILE",
            show_default=False,
            help="Verify https:// servers against this CA certificate (PEM) instead of the "
            "system's.",
        ),
    ] = None,
    agent_token_file: Annotated[
        Path | None,
        typer.Option(
            "--agent-token-file",
            envvar="INVCTL_AGENT_TOKEN_FILE",
            metavar="FILE",
            show_default=False,
            help="The store agent's terminal token, sent with sales and resyncs (default: "
            "config file, else terminal.token in the user data directory).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Inventory CLI for store staff, ops and admins (agent or central).

    Reads go to the local store agent, or to central when central is named more
    explicitly than the agent: a flag beats an environment variable, which beats the
    config file (`invctl config show --origin` says which applies). Admin commands go to
    central.

    Data prints as a table on a terminal, as tab-separated lines when stdout is not one,
    or as JSON (--json); times in local time to the second (--utc for UTC). Tables show
    ids by their first 8 characters.

    Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused, 5 unavailable, 6 auth,
    7 unhealthy (sync status --all --check).

    Example: invctl --central https://central.example.net --json product list
    """
    deps = ctx.obj if isinstance(ctx.obj, Deps) else Deps()
    shown = OutputFormat.json if json else output or default_format()
    use_style(Style(format=shown, utc=utc))
    options = GlobalOptions(
        agent=agent,
        central=central,
        timeout=timeout,
        json=shown is OutputFormat.json,
        output=shown,
        utc=utc,
        sources=_given(ctx),
        insecure=insecure,
        ca_file=ca_file,
        agent_token_file=agent_token_file,
    )
    state = State(options, deps)
    ctx.obj = state
    ctx.call_on_close(state.close)


# By name: typer ships its own copy of click, so its ParameterSource is not click's.
_GIVEN_AS = {"COMMANDLINE": Origin.flag, "ENVIRONMENT": Origin.env}


def _given(ctx: typer.Context) -> dict[str, Origin]:
    """The global options given on the command line or in the environment, and which."""
    given: dict[str, Origin] = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        origin = _GIVEN_AS.get(source.name) if source is not None else None
        if param.name and origin is not None:
            given[param.name] = origin
    return given


for module in (
    auth,
    buy,
    orders,
    sales,
    report,
    category,
    product,
    stock,
    allowance,
    store,
    user,
    sync,
    importer,
    export,
    config,
):
    module.register(app)


def main() -> None:
    app(prog_name="invctl")
