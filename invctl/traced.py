"""An invctl command as a trace (invwire.tracing): off unless the OTEL_* variables ask for it,
and then nothing of OpenTelemetry is imported, so `invctl --help` stays fast.

On, the command is a root span "invctl {command path}" (`invctl.command`, `invctl.outcome`),
every HTTP call sends its context as the W3C `traceparent` header (invctl.client), the
X-Request-ID is the trace id (invctl.context.new_request_id), and the spans are exported
before the process exits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from invctl.errors import ConfigError, InvctlError
from invwire import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

SERVICE = "invctl"  # the spans' service name unless OTEL_SERVICE_NAME names another
# A command waits for its spans to be sent before it exits: with the collector unreachable,
# the exporter's default (10 s of retries) would hold every command that long.
EXPORT_TIMEOUT_SECONDS = "2"
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


@contextmanager
def traced_command(ctx: typer.Context, root: TyperGroup) -> Iterator[None]:
    """Around the whole command: its root span when tracing is wanted, and the export of
    every span before returning. Wanted but impossible (no OTLP exporter installed):
    ConfigError (exit 2), before the command runs."""
    if not tracing.wanted():
        yield
        return
    if not tracing.enabled():
        bound_export_time(os.environ)
    try:
        tracing.setup(SERVICE)
    except tracing.TracingUnavailable as exc:
        raise ConfigError(
            exc.message,
            code=exc.code,
            hint="install the exporter, or unset OTEL_EXPORTER_OTLP_ENDPOINT",
        ) from None
    try:
        with _root_span(command_path(ctx, root)):
            yield
    finally:
        tracing.shutdown()  # a CLI exits at once: what is buffered is sent now


@contextmanager
def _root_span(path: str) -> Iterator[None]:
    """The command's span. Whatever ends the command ends the span first and is raised again
    after it: the span holds the outcome (`ok`, the error's code, `exit N`), never an error's
    message, which may quote what the user typed or what a server answered."""
    name = f"invctl {path}" if path else "invctl"
    ended: BaseException | None = None
    with tracing.span(name, attributes={"invctl.command": path}) as span:
        try:
            yield
        except BaseException as exc:  # raised again below, once the span has ended
            ended = exc
        _end(span, outcome_of(ended))
    if ended is not None:
        raise ended


def outcome_of(ended: BaseException | None) -> str:
    """What the command came to, as its span says it."""
    if ended is None:
        return "ok"
    if isinstance(ended, typer.Exit):
        return "ok" if ended.exit_code == 0 else f"exit {ended.exit_code}"
    if isinstance(ended, InvctlError):
        return ended.code
    if isinstance(ended, typer.TyperException):
        return "usage"
    if isinstance(ended, typer.Abort | KeyboardInterrupt):
        return "interrupted"
    return "internal"


def _end(span: Span | None, outcome: str) -> None:
    tracing.annotate(span, outcome=outcome)
    if outcome != "ok" and span is not None:
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR)


def bound_export_time(env: MutableMapping[str, str]) -> None:
    """EXPORT_TIMEOUT_SECONDS for the exporter, unless an OTEL_* variable sets its own."""
    if not any(env.get(name) for name in TIMEOUT_VARIABLES):
        env[TIMEOUT_VARIABLES[0]] = EXPORT_TIMEOUT_SECONDS


def command_path(ctx: typer.Context, root: TyperGroup) -> str:
    """The command's path below `root` ("orders cancel"), from the words left to parse: only
    words that name a command, never an argument's or an option's value."""
    # click keeps the first word after the root's options apart until the command runs.
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    names: list[str] = []
    command: object = root
    for word in words:
        if not isinstance(command, TyperGroup):
            break
        command = command.get_command(ctx, word)
        if command is None:
            break
        names.append(word)
    return " ".join(names)
