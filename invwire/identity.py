"""A store's Kafka identity, derived from its store id and API key: one secret per store.

The SCRAM username is `store.<store id>.<key fingerprint>` and the SCRAM password is the
API key itself (SCRAM never sends it; TLS protects the exchange). The fingerprint is the
first 16 hex digits of the key's SHA-256, which is also how central stores keys, so central
can name a key's Kafka user long after it has forgotten the key. Each key has its own user,
so a rotated key and its predecessor work side by side until the old one is revoked.
"""

from __future__ import annotations

import hashlib

USERNAME_PREFIX = "store."
FINGERPRINT_HEX = 16


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:FINGERPRINT_HEX]


def username_for_fingerprint(store_id: str, fingerprint: str) -> str:
    return f"{USERNAME_PREFIX}{store_id}.{fingerprint[:FINGERPRINT_HEX]}"


def kafka_username(store_id: str, api_key: str) -> str:
    """The SCRAM username of a store's API key, e.g. `store.store-042.9f86d081884c7d65`."""
    return username_for_fingerprint(store_id, key_fingerprint(api_key))


def consumer_group(store_id: str) -> str:
    """The consumer group a store's agent commits its offsets in."""
    return f"storeagent.{store_id}"
