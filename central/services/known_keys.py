"""Stores' API keys this process has seen valid, so that an order from one skips the key's
lookup (a round trip and a statement per order).

Nothing here is trusted on its own: an order from a known key writes its order row only if
the key is still unrevoked and its store still active, in the order's own transaction
(services.orders, NEW_ORDER_FOR_KEY). A key revoked or a store deactivated by any process
or host is refused on its next order, with no window; the key is then forgotten and looked
up as for any request (the refusal noted for the fleet view, 401)."""

from __future__ import annotations

import threading

# One entry is about 200 bytes; a chain's stores have a few keys each. Past this the table is
# started again rather than kept in order: a key left out costs one lookup.
MAX_KNOWN_KEYS = 10_000


class KnownKeys:
    def __init__(self, limit: int = MAX_KNOWN_KEYS) -> None:
        self.limit = limit
        self._stores: dict[str, str] = {}  # key hash -> store id
        self._lock = threading.Lock()

    def store_of(self, key_hash: str) -> str | None:
        return self._stores.get(key_hash)

    def add(self, key_hash: str, store_id: str) -> None:
        with self._lock:
            if len(self._stores) >= self.limit:
                self._stores.clear()
            self._stores[key_hash] = store_id

    def forget(self, key_hash: str) -> None:
        with self._lock:
            self._stores.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._stores)
