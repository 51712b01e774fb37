"""The store terminal API's dead letters: the Kafka records the agent could not apply, kept in
the replica (storeagent.sync.apply), listed newest first and shown one at a time, so ops read
them with invctl instead of sqlite3 (docs/wire.md).

A record's key and value are untrusted bytes from Kafka. They are never answered raw: as text
when they are UTF-8 without control or format characters (invwire.text), as that text with
such characters escaped (`\\x1b`, `\\u202e`) when they are UTF-8 with some, else as base64;
and only their first bytes, with their size and whether they were cut.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import FastAPI, Path, Query
from typing_extensions import TypedDict

from invwire.errors.agent import AgentError
from invwire.events import MAX_INTEGER
from invwire.text import escape_for_terminal, first_refused_char
from storeagent.replica.queries import DeadLetterEntry, DeadLetterSummary, ReplicaReads

MAX_PAGE = 200
DEFAULT_PAGE = 50
SHOWN_VALUE_BYTES = 16 * 1024  # a value shown whole reads on a screen or two
SHOWN_KEY_BYTES = 256

Encoding = Literal["text", "escaped", "base64"]


class DeadLetterNotFound(AgentError):
    """This replica holds no dead letter with that id."""

    code = "dead_letter.not_found"
    status = 404


class ShownBytes(TypedDict):
    encoding: Encoding
    data: str  # the first bytes, in `encoding`
    size: int  # of the whole key or value, in bytes
    truncated: bool  # `data` holds only the first bytes


class DeadLetterItem(TypedDict):
    id: int
    topic: str
    partition: int
    offset: int
    key: ShownBytes | None
    value_size: int | None
    code: str
    message: str
    created_at: str  # when the agent dead-lettered it


class DeadLetterList(TypedDict):
    items: list[DeadLetterItem]
    total: int  # dead letters in the replica, all pages
    next_before: int | None  # pass as `before` for the next (older) page; None: no more


class DeadLetterDetail(DeadLetterItem):
    value: ShownBytes | None


LetterId = Annotated[int, Path(ge=1, le=MAX_INTEGER, description="the dead letter's id")]


def add_dead_letter_routes(app: FastAPI, reads: ReplicaReads) -> None:
    # No readiness check: a replica that cannot get ready is when its dead letters matter.
    @app.get("/sync/dead-letters")
    def get_dead_letters(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        before: Annotated[int | None, Query(ge=1, le=MAX_INTEGER)] = None,
    ) -> DeadLetterList:
        """Records the agent could not apply, newest first, a page at a time: follow
        `next_before`. Keys are shown, values only by size (GET one for its value)."""
        page = reads.dead_letter_page(limit=limit, before=before, key_bytes=SHOWN_KEY_BYTES)
        items = [dead_letter_item(letter) for letter in page.items]
        return DeadLetterList(items=items, total=page.total, next_before=page.next_before)

    @app.get("/sync/dead-letters/{letter_id}")
    def get_dead_letter(letter_id: LetterId) -> DeadLetterDetail:
        """One dead letter, with its key and value shown safely (text, escaped or base64)."""
        entry = reads.dead_letter(letter_id)
        if entry is None:
            raise DeadLetterNotFound(id=letter_id)
        return dead_letter_detail(entry)


def dead_letter_item(letter: DeadLetterSummary) -> DeadLetterItem:
    key = None
    if letter.key_head is not None and letter.key_size is not None:
        key = shown_bytes(letter.key_head, limit=SHOWN_KEY_BYTES, size=letter.key_size)
    return DeadLetterItem(
        id=letter.id,
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        key=key,
        value_size=letter.value_size,
        code=letter.reason,
        message=escape_for_terminal(letter.detail),  # it may quote the record's bad text
        created_at=letter.created_at,
    )


def dead_letter_detail(entry: DeadLetterEntry) -> DeadLetterDetail:
    letter = entry.letter
    key, value = letter.key, letter.value
    return DeadLetterDetail(
        id=entry.id,
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        key=None if key is None else shown_bytes(key, limit=SHOWN_KEY_BYTES),
        value_size=None if value is None else len(value),
        code=letter.reason,
        message=escape_for_terminal(letter.detail),
        created_at=letter.created_at,
        value=None if value is None else shown_bytes(value, limit=SHOWN_VALUE_BYTES),
    )


def shown_bytes(raw: bytes, *, limit: int, size: int | None = None) -> ShownBytes:
    """The first `limit` bytes of `raw` in the safest form that still reads; `size` is the
    whole's when `raw` is already only its first bytes."""
    whole = len(raw) if size is None else size
    head = raw[:limit]
    truncated = whole > len(head)
    try:
        text = _utf8_head(head, cut=truncated)
    except UnicodeDecodeError:
        encoded = base64.b64encode(head).decode("ascii")
        return ShownBytes(encoding="base64", data=encoded, size=whole, truncated=truncated)
    if first_refused_char(text) is None:
        return ShownBytes(encoding="text", data=text, size=whole, truncated=truncated)
    shown = escape_for_terminal(text)
    return ShownBytes(encoding="escaped", data=shown, size=whole, truncated=truncated)


def _utf8_head(head: bytes, *, cut: bool) -> str:
    """`head` as UTF-8; when it was `cut` from longer bytes, a character split by the cut
    (at most 3 bytes) is dropped rather than taken for invalid UTF-8."""
    if not cut:
        return head.decode("utf-8")
    for drop in range(4):
        try:
            return head[: len(head) - drop].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # invalid before the cut: not a split character
                raise
    return head.decode("utf-8")  # raises: not UTF-8
