"""The fleet for people: stores counted by state, the worst first, a page at a time."""

from __future__ import annotations

from typing import Any

import pytest

from invctl.fleet import page_of, shown_line, state_counts, summary, worst_first

pytestmark = pytest.mark.unit


def store(store_id: str, state: str, lag: int | None = 0, **more: Any) -> dict[str, Any]:
    healthy = state in ("ok", "inactive")
    return {"store_id": store_id, "state": state, "healthy": healthy, "lag": lag, **more}


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["store_id"] for item in items]


def test_unhealthy_stores_come_before_healthy_ones_gravest_state_first() -> None:
    items = [
        store("a", "ok"),
        store("b", "inactive"),
        store("c", "never_seen"),
        store("d", "stale"),
        store("e", "down"),
        store("f", "auth_failed"),
        store("g", "not_ready"),
    ]

    assert ids(worst_first(items)) == ["f", "e", "d", "g", "c", "a", "b"]


def test_within_a_state_the_most_lag_comes_first_and_unknown_lag_last() -> None:
    items = [store("a", "ok", 5), store("b", "ok", None), store("c", "ok", 900), store("d", "ok")]

    assert ids(worst_first(items)) == ["c", "a", "b", "d"]


def test_a_store_without_a_state_or_health_is_looked_at_first() -> None:
    items = [store("a", "down"), {"store_id": "old", "lag": 0}]

    assert ids(worst_first(items)) == ["old", "a"]


def test_a_lagging_healthy_store_never_comes_before_an_unhealthy_one() -> None:
    items = [store("busy", "ok", 10_000), store("quiet", "not_ready", 0)]

    assert ids(worst_first(items)) == ["quiet", "busy"]


def test_counts_are_per_state_gravest_first() -> None:
    items = [store("a", "ok"), store("b", "down"), store("c", "ok"), store("d", "not_ready")]

    assert state_counts(items) == [("down", 1), ("not_ready", 1), ("ok", 2)]
    assert summary(items) == "4 stores: 1 down, 1 not-ready, 2 ok"
    assert summary([]) == "no stores"


FLEET = [store(f"s{n:03d}", "ok", lag=n) for n in range(120)]


def test_pages_walk_the_worst_first_order() -> None:
    first, last = page_of(FLEET, 50, 1), page_of(FLEET, 50, 3)

    assert ids(first.items)[:2] == ["s119", "s118"] and len(first.items) == 50
    assert (last.first, len(last.items), ids(last.items)[-1]) == (101, 20, "s000")
    assert shown_line(first, 50) == (
        "stores 1-50 of 120, worst first; --page 2 for the next 50; --limit 0 for every store"
    )
    assert shown_line(last, 50) == "stores 101-120 of 120, worst first; --limit 0 for every store"


def test_limit_0_or_a_page_that_holds_every_store_says_nothing_more() -> None:
    everything = page_of(FLEET, 0, 1)

    assert len(everything.items) == 120 and shown_line(everything, 0) == ""
    assert shown_line(page_of(FLEET[:3], 50, 1), 50) == ""


def test_a_page_past_the_end_is_empty_and_says_how_many_there_are() -> None:
    beyond = page_of(FLEET, 50, 4)

    assert beyond.items == []
    assert (
        shown_line(beyond, 50) == "no stores on this page: there are 120 (--page 1 shows the worst)"
    )
