"""The agent process's interpreter settings, set by `storeagent run` (and by the replica
benchmark around its apply runs, so that it measures what the process does)."""

from __future__ import annotations

import gc
import sys

# The sync loop, Kafka's IO thread and the HTTP server hand work to each other: switch the
# GIL every 0.5 ms instead of 5 ms so each hand-off does not add milliseconds.
SWITCH_INTERVAL_S = 0.0005
# Catching up allocates several container objects a record (the Kafka client's records, the
# loop's, the parsed changes and rows), nearly all freed within a batch. With Python's
# defaults (a young collection every 700 allocations, a full one ever more often as the
# read-ahead holds tens of thousands of records), collections took a tenth of a catch-up,
# most of it in full collections. Reference cycles are rare here; they wait longer.
GC_THRESHOLDS = (10_000, 10, 10)


def tune() -> None:
    """At start: the switch interval and the collector's thresholds."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def settle() -> None:
    """Once started: what start-up made lives as long as the process, so no collection
    walks it again (gc.freeze); the garbage among it is collected first."""
    gc.collect()
    gc.freeze()
