"""`invctl sync status`: how current this store's replica is."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from invctl.context import state_of
from invctl.options import JsonFlag
from invctl.output import rows_table

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="Replication status of the store agent.\n\nExample: invctl sync status",
    no_args_is_help=True,
)
PARTITION_COLUMNS = ("topic", "partition", "offset", "end_offset", "lag")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sync")


@app.command("status")
def status(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Show how current this store's replica is.

    Lag per partition, age of the last applied event, dead letters and readiness.

    Example: invctl --agent http://127.0.0.1:8787 sync status
    """
    state = state_of(ctx, json_out)
    answer = state.agent().get("/sync/status")
    state.out.emit(answer, render=status_view(state.deps.now))


def status_view(now: Callable[[], datetime]) -> Callable[[Any], Iterable[RenderableType]]:
    def render(data: Any) -> Iterable[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        report = data if isinstance(data, dict) else {}
        partitions = report.get("partitions") or []
        summary = Table.grid(padding=(0, 2))
        summary.add_column(style="bold")
        summary.add_column()
        for label, value in _summary_rows(report, partitions, now()):
            summary.add_row(label, value if isinstance(value, Text) else Text(value))
        yield summary
        yield rows_table(partitions, PARTITION_COLUMNS, title="Partitions")

    return render


def _summary_rows(report: dict[str, Any], partitions: list[Any], now: datetime) -> list[Any]:
    from rich.text import Text

    ready = bool(report.get("ready"))
    dead = report.get("dead_letters") or 0
    lag = sum(int(p.get("lag") or 0) for p in partitions if isinstance(p, dict))
    return [
        ("store", str(report.get("store_id") or "-")),
        ("ready", Text("yes" if ready else "no", style="green" if ready else "red")),
        ("last event", _moment(report.get("last_event_at"), now)),
        ("last applied", _moment(report.get("last_applied_at"), now)),
        ("events applied", str(report.get("events_applied", "-"))),
        ("dead letters", Text(str(dead), style="red" if dead else "")),
        ("total lag", Text(str(lag), style="yellow" if lag else "")),
    ]


def _moment(value: object, now: datetime) -> str:
    if not isinstance(value, str):
        return "never"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{value} ({age((now - moment).total_seconds())} ago)"


def age(seconds: float) -> str:
    """A short human age: `45s`, `3m 20s`, `2h 5m`, `4d 1h`."""
    whole = max(0, int(seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // sub_size}{sub_unit}"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole}s"
