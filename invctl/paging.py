"""Lists that page, or say they were cut: `--limit N` and `--all` for every list command that
reads a paged route (`{"items": [...], "next_after": cursor | null}`), and one warning on
stderr when the answer shown is not all there is.

A list follows the server's `next_after` cursor a page at a time until it holds `--limit`
items or the server says there is no more; `--all` follows it to the end. Knowing whether
more remain costs nothing: the server sets `next_after` only when another page exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from invctl.client import ApiClient, items_of
from invctl.errors import ServerError
from invctl.output import Output

DEFAULT_LIMIT = 100
MAX_PAGE = 1000  # the largest page central and the agent serve

LimitOpt = Annotated[
    int,
    typer.Option(
        "--limit",
        "-n",
        min=1,
        metavar="N",
        help=f"Show at most N (default {DEFAULT_LIMIT}); a warning on stderr says when there "
        "are more.",
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Show every one, however many pages.")]


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    more: bool  # the server holds more than `items`


def fetch_all(
    client: ApiClient, path: str, params: dict[str, Any] | None = None, *, limit: int | None
) -> Listing:
    """`path`'s items, page after page: `limit` of them at most (None: every one)."""
    items: list[dict[str, Any]] = []
    after: Any = None
    while True:
        size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(items))
        cursor = {} if after is None else {"after": after}
        page = client.get(path, params={**(params or {}), **cursor, "limit": size})
        items += items_of(page)
        following = page.get("next_after")
        if following is None:
            return Listing(items, more=False)
        if limit is not None and len(items) >= limit:
            return Listing(items, more=True)
        after = _next_cursor(following, after)


def fetch_listing(
    client: ApiClient,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    every: bool = False,
) -> Listing:
    """The items a list command shows: `--all` (`every`) or at most `--limit`."""
    return fetch_all(client, path, params, limit=None if every else limit)


def warn_if_cut(out: Output, listing: Listing, what: str) -> None:
    """The warning of a list that shows fewer than there are: how many, and how to see all."""
    if listing.more:
        out.warn(
            f"showing the first {len(listing.items):,} {what}; there are more: "
            "add --all to see every one, or --limit N"
        )


def _next_cursor(cursor: object, previous: object) -> int | str:
    """The next page's `after`; it must move forward, or the pages would never end."""
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        if previous is None or (isinstance(previous, int) and cursor > previous):
            return cursor
    elif isinstance(cursor, str) and (
        previous is None or (isinstance(previous, str) and cursor > previous)
    ):
        return cursor
    raise ServerError(f"the server's next_after {cursor!r} does not follow {previous!r}")
