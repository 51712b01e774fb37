"""observe_all counts each amount where Histogram.observe would, and adds the same sum."""

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from invwire.metrics import observe_all

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def _exposition(feed) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("sync_seconds", "sync latency", buckets=BUCKETS, registry=registry)
    feed(histogram)
    # all but the time the histogram was made
    return b"".join(
        line
        for line in generate_latest(registry).splitlines(keepends=True)
        if b"_created" not in line
    )


def test_the_same_buckets_and_sum_as_one_observe_per_amount():
    rng = random.Random(7)
    # bounds themselves, just above them, negatives, beyond the last bound, and a spread
    amounts = [*BUCKETS, *(b + 1e-9 for b in BUCKETS), -0.2, 0.0, 31.0, 1e9]
    amounts += [rng.uniform(-0.01, 6) for _ in range(2000)]

    def one_by_one(histogram):
        for amount in amounts:
            histogram.observe(amount)

    assert _exposition(lambda h: observe_all(h, amounts)) == _exposition(one_by_one)


def test_nothing_to_observe_changes_nothing():
    assert _exposition(lambda h: observe_all(h, [])) == _exposition(lambda h: None)
