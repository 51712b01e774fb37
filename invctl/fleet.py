"""The fleet for people at any size: a count of the stores in each state, then the worst
stores first (the unhealthy before the healthy, the gravest state first, most lag first),
a page at a time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

DEFAULT_SHOWN = 50
# Gravest first: a store whose key is refused or whose agent is silent needs someone before
# one that is late or not ready; a store never heard from may simply not be installed yet.
STATE_ORDER = ("auth_failed", "down", "stale", "not_ready", "never_seen", "ok", "inactive")
UNKNOWN = "unknown"  # a store a central from before states gave no state for


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    first: int  # the position of items[0] among all, from 1
    total: int


def state_of(item: dict[str, Any]) -> str:
    state = item.get("state")
    return state if isinstance(state, str) else UNKNOWN


def _rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else -1  # unknown: look first


def _lag(item: dict[str, Any]) -> int:
    lag = item.get("lag")
    return lag if isinstance(lag, int) else 0


def worst_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unhealthy stores before healthy ones; then by state, gravest first; then most lag
    first; then by store id, so the order is the same from one look to the next."""
    return sorted(
        items,
        key=lambda item: (
            item.get("healthy") is True,
            _rank(state_of(item)),
            -_lag(item),
            str(item.get("store_id")),
        ),
    )


def page_of(items: list[dict[str, Any]], limit: int, page: int) -> Page:
    """Page `page` (from 1) of `limit` stores, worst first; `limit` 0: every store."""
    ordered = worst_first(items)
    if limit <= 0:
        return Page(ordered, 1, len(ordered))
    start = (page - 1) * limit
    return Page(ordered[start : start + limit], start + 1, len(ordered))


def state_counts(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """How many stores are in each state, gravest first; states no store is in left out."""
    counts = Counter(state_of(item) for item in items)
    return sorted(counts.items(), key=lambda pair: _rank(pair[0]))


def summary(items: list[dict[str, Any]]) -> str:
    """`1000 stores: 3 down, 2 stale, 995 ok`, states as people write them."""
    told = ", ".join(f"{count} {state.replace('_', '-')}" for state, count in state_counts(items))
    return f"{len(items)} stores: {told}" if items else "no stores"


def shown_line(page: Page, limit: int) -> str:
    """What the table holds when it holds less than every store ('' when it holds all)."""
    if page.first == 1 and len(page.items) == page.total:
        return ""
    if not page.items:
        return f"no stores on this page: there are {page.total} (--page 1 shows the worst)"
    last = page.first + len(page.items) - 1
    told = f"stores {page.first}-{last} of {page.total}, worst first"
    following = last < page.total
    more = f"; --page {(last // limit) + 1} for the next {limit}" if following else ""
    return f"{told}{more}; --limit 0 for every store"
