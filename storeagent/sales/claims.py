"""Which idempotency keys are busy: shared by the till path (OrderDesk) and the replayer
(sales.replay), so that a sale is never sent by both at once.

In memory: after a restart no key is busy (every `pending` sale is then an orphan whose
outcome only central knows). Within one agent process a `pending` sale no request holds was
answered with an error, and is voided (sales.rules.orphaned).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from storeagent.sales.rules import OrderInProgress


class KeyClaims:
    """A till's request holds its key while it runs; the replayer takes a key only when no
    till holds it, and a till asking for a key the replayer or another till's request holds
    gets `order.in_progress`. So a sale is sent by one request at a time (an answer central
    replays is then known to be this agent's own only when an earlier attempt was), never by
    a till and the replayer at once, nor voided while a till replays it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tills: set[str] = set()
        self._replayer: set[str] = set()

    @contextmanager
    def till(self, key: str) -> Iterator[None]:
        with self._lock:
            if key in self._replayer or key in self._tills:
                raise OrderInProgress(key=key)
            self._tills.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._tills.discard(key)

    @contextmanager
    def replayer(self, key: str) -> Iterator[bool]:
        """Yields False (and holds nothing) when a till holds the key."""
        with self._lock:
            free = key not in self._tills and key not in self._replayer
            if free:
                self._replayer.add(key)
        try:
            yield free
        finally:
            if free:
                with self._lock:
                    self._replayer.discard(key)

    def held_by_tills(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._tills)
