"""`invctl sync dead-letters list | show`: the Kafka records this store's agent could not
apply, read from its terminal API (GET /sync/dead-letters, docs/wire.md).

The agent answers a record's key and value as text, escaped text or base64 and only their
first bytes; every string is escaped again here on its way to the terminal (invctl.output).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.client import ApiClient, items_of
from invctl.context import state_of
from invctl.errors import ServerError
from invctl.options import JsonFlag
from invctl.output import Column, record_view
from invctl.paging import DEFAULT_LIMIT, AllOpt, LimitOpt, Listing, warn_if_cut

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(
    help="Records this store's agent could not apply (dead letters).\n\n"
    "Example: invctl sync dead-letters list",
    no_args_is_help=True,
)
PATH = "/sync/dead-letters"
MAX_PAGE = 200  # the agent's largest page
MAX_ID = 2**63 - 1  # the agent's bound (invwire.events.MAX_INTEGER, which loads decimal)
COLUMNS = (
    Column("id", justify="right"),
    Column("created_at", "when"),
    "topic",
    Column("partition", "part", "right"),
    Column("offset", justify="right"),
    "code",
    "message",
)
FIELDS = (
    Column("id"),
    Column("topic"),
    Column("partition"),
    Column("offset"),
    Column("shown_key", "key"),
    Column("code"),
    Column("message"),
    Column("created_at", "dead-lettered"),
    Column("value_size", "value size"),
)
ENCODINGS = {
    "text": "text",
    "escaped": "text, control characters escaped",
    "base64": "not UTF-8, base64",
}

LetterIdArg = Annotated[
    int,
    typer.Argument(
        metavar="ID",
        min=1,
        max=MAX_ID,
        help="The dead letter's id, as `invctl sync dead-letters list` shows it.",
        show_default=False,
    ),
]


def register(sync: typer.Typer) -> None:
    sync.add_typer(app, name="dead-letters")


@app.command("list")
def list_letters(
    ctx: typer.Context,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List the records this store's agent could not apply, newest first.

    Each row is one Kafka record (topic/partition/offset) kept aside with why it could not
    be applied; the records after it were applied. Show one whole, with its value, by id.

    Example: invctl sync dead-letters list --limit 20
    """
    state = state_of(ctx, json_out)
    listing = newest_letters(state.agent(), limit=None if every else limit)
    state.out.emit(listing.items, table=COLUMNS)
    warn_if_cut(state.out, listing, "dead letters")


@app.command("show")
def show(ctx: typer.Context, letter_id: LetterIdArg, json_out: JsonFlag = False) -> None:
    """Show one dead letter whole: where it came from, why, its key and its value.

    The value is shown as text when it is readable, with control characters escaped
    (`\\x1b`) when it holds some, and as base64 when it is not UTF-8; a large value is
    cut after its first 16 KiB (the size says how large it is).

    Example: invctl sync dead-letters show 12
    """
    state = state_of(ctx, json_out)
    letter = state.agent().get(f"{PATH}/{letter_id}")
    state.out.emit(letter, render=render_letter)


def newest_letters(client: ApiClient, *, limit: int | None) -> Listing:
    """The agent's dead letters, newest first, following `next_before`: `limit` at most
    (None: every one)."""
    items: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(items))
        cursor = {} if before is None else {"before": before}
        page = client.get(PATH, params={**cursor, "limit": size})
        items += items_of(page)
        following = page.get("next_before")
        if following is None:
            return Listing(items, more=False)
        if limit is not None and len(items) >= limit:
            return Listing(items, more=True)
        before = _older(following, before)


def _older(cursor: object, previous: int | None) -> int:
    """The next page's `before`; it must go down, or the pages would never end."""
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        raise ServerError(f"the agent's next_before {cursor!r} is not a whole number")
    if previous is not None and cursor >= previous:
        raise ServerError(f"the agent's next_before did not go down ({previous} -> {cursor})")
    return cursor


def render_letter(data: Any) -> Iterable[RenderableType]:
    """The letter's fields, then its value under a line saying how it is shown."""
    from rich.text import Text

    letter = data if isinstance(data, dict) else {}
    shown = {**letter, "shown_key": _shown(letter.get("key"))}
    yield from record_view(shown, list(FIELDS), f"Dead letter {letter.get('id')}")
    value = letter.get("value")
    if not isinstance(value, dict):
        yield Text("Value: none")
        return
    yield Text(_value_title(value), style="bold")
    yield Text(str(value.get("data", "")), overflow="fold")


def _shown(part: object) -> str | None:
    """A key as one line: its data, and how it is shown when that is not plain text."""
    if not isinstance(part, dict):
        return None
    data = str(part.get("data", ""))
    notes = []
    if part.get("encoding") != "text":
        notes.append(ENCODINGS.get(str(part.get("encoding")), str(part.get("encoding"))))
    if part.get("truncated"):
        notes.append(f"first bytes of {part.get('size')}")
    return f"{data} ({'; '.join(notes)})" if notes else data


def _value_title(value: dict[str, Any]) -> str:
    how = ENCODINGS.get(str(value.get("encoding")), str(value.get("encoding")))
    size = value.get("size")
    cut = "; only its first bytes are shown" if value.get("truncated") else ""
    return f"Value ({size} bytes, as {how}{cut}):"
