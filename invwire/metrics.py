"""The HTTP metrics central and the agent both export: requests by route and status, and
their latency, under each process's own metric names and on its own registry."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# A metric's name and help text: each process keeps its own names.
Described = tuple[str, str]


class HttpMetrics:
    """`requests` counts by (method, route, status); `latency` observes by (method, route)."""

    def __init__(
        self, registry: CollectorRegistry, *, requests: Described, latency: Described
    ) -> None:
        # invwire imports no third-party library at import time (docs/architecture.md).
        from prometheus_client import Counter, Histogram

        requests_name, requests_help = requests
        latency_name, latency_help = latency
        self.requests = Counter(
            requests_name, requests_help, ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            latency_name,
            latency_help,
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One served request (invwire.http.RequestContext's `observe`)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe` of each amount, in one pass: each bucket and the sum are added to
    once. A replica applying a backlog observes every event's sync latency, and one call per
    event cost a tenth of the apply loop. Reads the buckets' bounds as prometheus_client
    keeps them; should a version keep them otherwise, one observe per amount."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    if not amounts:
        return
    # observe() counts an amount in the first bucket whose bound is >= it; the last is +Inf
    for index, count in Counter(bisect_left(bounds, amount) for amount in amounts).items():
        buckets[index].inc(count)
    total.inc(sum(amounts))
