"""Which idempotency keys are busy: shared by the till path (OrderDesk) and the replayer
(sales.replay), so that a sale is never sent by both at once.

In memory: after a restart no key is busy (every `pending` sale is then an orphan whose
outcome only central knows).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from storeagent.sales.rules import OrderInProgress


class KeyClaims:
    """A till's request holds its key while it runs; the replayer takes a key only when no
    till holds it, and a till asking for a key the replayer holds gets `order.in_progress`.
    So a sale is never sent by both, nor voided while a till replays it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tills: Counter[str] = Counter()
        self._replayer: set[str] = set()

    @contextmanager
    def till(self, key: str) -> Iterator[None]:
        with self._lock:
            if key in self._replayer:
                raise OrderInProgress(key=key)
            self._tills[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._tills[key] -= 1
                if not self._tills[key]:
                    del self._tills[key]

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
