"""`invctl sync status`: how current this store's replica is."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl import fleet
from invctl.commands import dead_letters
from invctl.context import state_of
from invctl.errors import ExitCode, InvctlError, UsageError
from invctl.help import HelpCommand
from invctl.options import JsonFlag
from invctl.output import OutputFormat, people_time, rendered, rows_table
from invctl.views import Column

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="Replication status of the store agent.\n\nExample: invctl sync status",
    no_args_is_help=True,
)
PARTITION_COLUMNS = ("topic", "partition", "offset", "end_offset", "lag")


def register(root: typer.Typer) -> None:
    dead_letters.register(app)
    root.add_typer(app, name="sync")


FLEET_COLUMNS = (
    "store",
    "name",
    "lag",
    "last seen",
    Column("state", keep=True),
    "agents",
    "offline queue",
    "dead letters",
    "problems",
)
DEFAULT_WATCH_S = 2.0
WATCH = "--watch"

AllFlag = Annotated[
    bool, typer.Option("--all", help="Every store, from central: state, lag and heartbeats.")
]
WatchOption = Annotated[
    float | None,
    typer.Option(
        WATCH,
        metavar="[SECONDS]",
        min=0.5,
        help=f"Refresh every SECONDS ({DEFAULT_WATCH_S:g} without a value) until Ctrl-C.",
    ),
]
CheckFlag = Annotated[
    bool,
    typer.Option(
        "--check",
        help=f"With --all: exit {int(ExitCode.UNHEALTHY)} when a store is unhealthy, naming "
        "them on stderr.",
    ),
]


ShownOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        "-n",
        min=0,
        metavar="N",
        help=f"With --all, in a table: the N worst stores (default {fleet.DEFAULT_SHOWN}; 0: "
        "every store). --json and pipes always get every store.",
    ),
]
PageOption = Annotated[
    int | None,
    typer.Option(
        "--page", min=1, metavar="P", help="With --all, in a table: the P-th N worst stores."
    ),
]


class WatchValueOptional(HelpCommand):
    """`--watch` alone refreshes every DEFAULT_WATCH_S, `--watch 5` every 5 s. Typer's parser
    has no option whose value may be left out, so a bare `--watch` (last, or followed by
    something that is not a number) is given the default before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, with_watch_value(args))


def with_watch_value(args: list[str]) -> list[str]:
    given: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":  # what follows is not options
            return [*given, *args[index:]]
        following = args[index + 1] if index + 1 < len(args) else None
        bare = arg == WATCH and not _is_number(following)
        given.append(f"{WATCH}={DEFAULT_WATCH_S:g}" if bare else arg)
    return given


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


@app.command("status", cls=WatchValueOptional)
def status(
    ctx: typer.Context,
    all_stores: AllFlag = False,
    watch: WatchOption = None,
    check: CheckFlag = False,
    limit: ShownOption = None,
    page: PageOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Show how current this store's replica is, or with --all every store's.

    This store: lag per partition, age of the last applied event, dead letters, readiness,
    the offline queue (sales waiting for central, those it rejected, the retry backoff), and
    the central URL the agent uses now when it was given several.
    --all (ops, against central): each registered store's state, consumer-group lag, last
    heartbeat, live agent processes and problems (duplicate_agents: two agents run for one
    store).

    States: ok; not-ready (the agent says so, or a problem stands); stale (a heartbeat is
    overdue); down (silent for 6 intervals, at least 30 s); auth-failed (central refused
    the store's key since its last heartbeat); never-seen; inactive (deactivated on
    purpose). --check exits 7 when a store is neither ok nor inactive.

    The table opens with a count of the stores in each state and lists the worst first
    (unhealthy before healthy, the gravest state first, then most lag): the 50 worst, or
    --limit N of them, --page P for the next; --limit 0 lists every store.

    --watch keeps the table live (with --json: one JSON object per line each time).

    Example: invctl --central http://central:8000 sync status --all --check
    """
    state = state_of(ctx, json_out)
    if check and (not all_stores or watch is not None):
        raise UsageError("--check takes one look at every store: use it with --all, no --watch")
    if not all_stores and (limit is not None or page is not None):
        raise UsageError("--limit and --page choose among every store: use them with --all")
    if all_stores:
        fetch, render = _fleet_source(state, limit, page)
    else:
        agent = state.agent()
        fetch, render = (lambda: agent.get("/sync/status")), status_view(state.deps.now)
    if watch is not None:
        _watch(state, fetch, render, watch)  # until Ctrl-C
        return
    answer = fetch()
    state.out.emit(answer, render=render)
    if check:
        _exit_if_unhealthy(state, answer)


def _fleet_source(state: Any, limit: int | None, page: int | None) -> tuple[Any, Any]:
    """Central's fleet, and its view: a page of the worst stores in a table; every store,
    as central gave them, to JSON and pipes."""
    client = state.central()
    if state.out.style.format is OutputFormat.table:
        shown = fleet.DEFAULT_SHOWN if limit is None else limit
        render = fleet_view(state.deps.now, shown, page or 1)
    else:
        render = fleet_view(state.deps.now)
    return (lambda: client.get("/sync/stores")), render


def _exit_if_unhealthy(state: Any, fleet: Any) -> None:
    """One line on stderr naming the stores that are not healthy, and exit 7."""
    items = fleet.get("items") if isinstance(fleet, dict) else None
    unhealthy = [item for item in items or [] if item.get("healthy") is not True]
    if not unhealthy:
        return
    named = ", ".join(f"{item.get('store_id')} ({_state_word(item)})" for item in unhealthy)
    state.out.note(f"{len(unhealthy)} of {len(items or [])} stores unhealthy: {named}")
    raise typer.Exit(int(ExitCode.UNHEALTHY))


NoWaitFlag = Annotated[bool, typer.Option("--no-wait", help="Return once the rebuild has started.")]


@app.command("resync")
def resync(ctx: typer.Context, no_wait: NoWaitFlag = False, json_out: JsonFlag = False) -> None:
    """Rebuild this store's replica from Kafka's compacted topics.

    The replica is rebuilt beside the live one, which goes on serving stock reads, the
    product list and sales, and replaces it in one step once it has caught up; offline
    sales already queued are kept. Waits with a progress bar until the rebuilt replica is
    in use (exit 1 if the rebuild failed: the live replica is then unchanged).

    Example: invctl sync resync
    """
    state = state_of(ctx, json_out)
    agent = state.agent()
    started = agent.post("/sync/resync", json={})  # the agent takes a POST only as JSON
    meanwhile = started.get("meanwhile") or started.get("unavailable_meanwhile") or ""
    state.out.note(f"resync started; meanwhile {meanwhile}")
    if no_wait:
        state.out.emit(started)
        return
    requested = _instant(started.get("requested_at"))
    if requested is None:  # an agent that empties its replica first: ready again means done
        report = _wait_ready(state, agent)
    else:
        report = _wait_rebuilt(state, agent, requested)
    state.out.emit(report, render=status_view(state.deps.now))


def _wait_ready(state: Any, agent: Any) -> Any:
    report = agent.get("/sync/status")
    with state.out.progress(max(1, _total_end(report)), "Rebuilding") as advance:
        done = 0
        while not report.get("ready"):
            time.sleep(0.5)
            report = agent.get("/sync/status")
            applied = max(0, _total_end(report) - _total_lag(report))
            advance(max(0, applied - done))
            done = max(done, applied)
    return report


def _wait_rebuilt(state: Any, agent: Any, requested: datetime) -> Any:
    """Until the rebuild that answers the request (started then or later) is adopted."""
    report = agent.get("/sync/status")
    with state.out.progress(max(1, _total_end(report)), "Rebuilding") as advance:
        done = 0
        while (rebuild := _rebuild_since(report, requested)) is None or rebuild.get(
            "state"
        ) not in ("adopted", "failed"):
            time.sleep(0.5)
            report = agent.get("/sync/status")
            applied = int((_rebuild_since(report, requested) or {}).get("applied") or 0)
            advance(max(0, applied - done))
            done = max(done, applied)
    if rebuild.get("state") == "failed":
        raise InvctlError(
            f"the rebuild failed: {rebuild.get('message') or 'see the agent log'}; the "
            "replica in use is unchanged",
            code="sync.rebuild_failed",
        )
    return report


def _rebuild_since(report: dict[str, Any], requested: datetime) -> dict[str, Any] | None:
    rebuild = report.get("rebuild")
    if not isinstance(rebuild, dict):
        return None
    started = _instant(rebuild.get("started_at"))
    return rebuild if started is not None and started >= requested else None


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _total_end(report: dict[str, Any]) -> int:
    return sum(int(p.get("end_offset") or 0) for p in report.get("partitions") or [])


def _total_lag(report: dict[str, Any]) -> int:
    return sum(int(p.get("lag") or 0) for p in report.get("partitions") or [])


def _watch(state: Any, fetch: Callable[[], Any], render: Any, interval: float) -> None:
    if state.out.style.format is not OutputFormat.table:  # a pipe: no live table
        while True:
            state.out.emit_line(fetch(), render=render)  # JSON: one object per line
            time.sleep(interval)
    from rich.console import Console, Group
    from rich.live import Live

    def view() -> Group:
        return Group(*rendered(fetch(), render=render))

    with Live(view(), console=Console(highlight=False), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(view(), refresh=True)


def fleet_view(
    now: Callable[[], datetime], limit: int | None = None, page: int = 1
) -> Callable[[Any], Iterable[RenderableType]]:
    """Every store in central's order; with `limit` (for people), the count of stores in
    each state, then page `page` of the `limit` worst (0: every store, worst first)."""

    def render(data: Any) -> Iterable[RenderableType]:
        from rich.text import Text

        report = data if isinstance(data, dict) else {}
        items = [item for item in report.get("items") or [] if isinstance(item, dict)]
        title = f"Stores (Kafka: {report.get('kafka', '?')})"
        if limit is None:
            yield rows_table([_fleet_row(item, now()) for item in items], FLEET_COLUMNS, title)
            return
        chosen = fleet.page_of(items, limit, page)
        yield Text(f"{fleet.summary(items)}{_lags_read(report, now())}")
        yield rows_table([_fleet_row(item, now()) for item in chosen.items], FLEET_COLUMNS, title)
        if told := fleet.shown_line(chosen, limit):
            yield Text(told, style="dim")

    return render


def _lags_read(report: dict[str, Any], now: datetime) -> str:
    """`; lags read 10:00:01 (1s ago)`: central keeps one reading of Kafka a few seconds."""
    as_of = report.get("lag_as_of")
    return f"; lags read {_moment(as_of, now)}" if isinstance(as_of, str) else ""


def _fleet_row(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    reported = item.get("reported") or {}
    lag = item.get("lag")
    seen = item.get("seconds_since_seen")
    instances = [i for i in item.get("instances") or [] if isinstance(i, dict)]
    return {
        "store": item.get("store_id"),
        "name": item.get("name"),
        "lag": "?" if lag is None else lag,
        "last seen": "never" if seen is None else f"{age(seen)} ago",
        "state": _state_word(item),
        "agents": sum(1 for i in instances if i.get("live")) if instances else "-",
        "offline queue": reported.get("offline_queue", "-"),
        "dead letters": reported.get("dead_letters", "-"),
        "problems": "; ".join(_fleet_problem(p) for p in item.get("problems") or []) or "-",
    }


def _state_word(item: dict[str, Any]) -> str:
    """The store's state for people: `auth-failed`, `not-ready`, `never-seen`, ..."""
    word = item.get("state")
    return word.replace("_", "-") if isinstance(word, str) else "unknown"


def _fleet_problem(problem: object) -> str:
    """`duplicate_agents: 1f0c…, 9ab2…` (the live instance ids), or the code and message."""
    if not isinstance(problem, dict):
        return str(problem)
    ids = problem.get("instance_ids")
    if isinstance(ids, list) and ids:
        return f"{problem.get('code')}: {', '.join(map(str, ids))}"
    return f"{problem.get('code')}: {problem.get('message')}"


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
        *_problem_rows(report.get("problems")),
        ("last event", _moment(report.get("last_event_at"), now)),
        ("last applied", _moment(report.get("last_applied_at"), now)),
        *_clock_rows(report),
        ("events applied", str(report.get("events_applied", "-"))),
        ("dead letters", Text(str(dead), style="red" if dead else "")),
        ("total lag", Text(str(lag), style="yellow" if lag else "")),
        *_offline_rows(report.get("offline_queue")),
        *_recovery_rows(report.get("recovery")),
        *_central_rows(report),
    ]


def _central_rows(report: dict[str, Any]) -> list[Any]:
    """The central URL the agent uses now, when it was given several (in the order tried)."""
    current, urls = report.get("central_url"), report.get("central_urls")
    if not isinstance(current, str):
        return []
    named = ", ".join(map(str, urls)) if isinstance(urls, list) else current
    return [("central", f"{current} (of {named})")]


def _problem_rows(problems: object) -> list[Any]:
    """What keeps the replica from following Kafka (kafka.auth_failed, apply_failing, ...)."""
    from rich.text import Text

    if not isinstance(problems, list):
        return []
    return [
        ("problem", Text(f"{p.get('code')}: {p.get('message')}", style="red"))
        for p in problems
        if isinstance(p, dict)
    ]


def _clock_rows(report: dict[str, Any]) -> list[Any]:
    """Staleness on central's clock, and this agent's clock offset from central's: a negative
    staleness is shown as it is, as a wrong clock."""
    from rich.text import Text

    rows: list[Any] = []
    staleness = report.get("staleness_s")
    if isinstance(staleness, int | float):
        wrong = staleness < 0
        shown = f"{staleness:.1f} s (negative: a clock is wrong)" if wrong else age(staleness)
        rows.append(("staleness", Text(shown, style="red" if wrong else "")))
    offset = report.get("clock_offset_s")
    if isinstance(offset, int | float):
        rows.append(("clock offset", f"{offset:+.3f} s (central's clock minus the agent's)"))
    elif "clock_offset_s" in report:
        rows.append(("clock offset", "unknown: central has not answered a heartbeat"))
    return rows


def _offline_rows(queue: object) -> list[Any]:
    """The offline queue (sales accepted while central was unreachable), when reported."""
    from rich.text import Text

    if not isinstance(queue, dict):
        return []
    depth, rejected = queue.get("depth") or 0, queue.get("rejected") or 0
    waiting = f"{depth} sales, {queue.get('units') or 0} units" if depth else "empty"
    if depth and isinstance(queue.get("oldest_age_s"), int | float):
        waiting += f"; oldest {age(queue['oldest_age_s'])}"
    style = "red" if queue.get("overdue") else "yellow" if depth else ""
    rows: list[Any] = [
        ("offline queue", Text(waiting, style=style)),
        ("rejected offline", Text(str(rejected), style="red" if rejected else "")),
    ]
    failures = queue.get("consecutive_failures") or 0
    if failures:
        retry = queue.get("next_attempt_in_s")
        when = f"retry in {age(retry)}" if isinstance(retry, int | float) else "retrying"
        rows.append(("replay", f"{when} after {failures} failures: {queue.get('last_error')}"))
    return rows


def _recovery_rows(recovery: object) -> list[Any]:
    """Sales given back to a restored central: shown once central was restored (epoch 2 or
    more), or while any sale is unrecovered."""
    from rich.text import Text

    if not isinstance(recovery, dict):
        return []
    epoch, left = recovery.get("epoch") or 0, recovery.get("to_check") or 0
    lost = recovery.get("unrecovered") or 0
    if epoch < 2 and not lost:
        return []
    done = f"{recovery.get('recovered') or 0} recovered, {recovery.get('present') or 0} present"
    shown = f"{left} sales to send to central (epoch {epoch}); {done}" if left else done
    rows: list[Any] = [
        ("recovery", Text(shown, style="yellow" if left else "")),
        ("unrecovered", Text(str(lost), style="red" if lost else "")),
    ]
    failures = recovery.get("consecutive_failures") or 0
    if failures:
        rows.append(("recovery error", f"{failures} failures: {recovery.get('last_error')}"))
    return rows


def _moment(value: object, now: datetime) -> str:
    if not isinstance(value, str):
        return "never"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{people_time(moment)} ({age((now - moment).total_seconds())} ago)"


def age(seconds: float) -> str:
    """A short human age: `45s`, `3m 20s`, `2h 5m`, `4d 1h`."""
    whole = max(0, int(seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // sub_size}{sub_unit}"
    if whole >= 60:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole}s"
