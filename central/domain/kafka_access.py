"""What each Kafka principal may do: the relay writes the topics (invwire.topics), a store reads
them and commits offsets in its own group. Nothing else is granted; the broker denies the rest.

Kafka's ACLs name whole topics: a store that may read `order-updated` may read every store's
records there, not only its own (the agent keeps only its own; docs/wire.md says what the
records hold)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from invwire.identity import consumer_group
from invwire.topics import TOPICS


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"


class Operation(StrEnum):
    READ = "read"
    WRITE = "write"
    DESCRIBE = "describe"


@dataclass(frozen=True)
class Grant:
    """ALLOW `operation` on the resource with exactly this name (a literal pattern)."""

    resource: Resource
    name: str
    operation: Operation


def _on_topics(prefix: str, *operations: Operation) -> list[Grant]:
    return [Grant(Resource.TOPIC, prefix + t, op) for t in TOPICS for op in operations]


def relay_grants(prefix: str) -> list[Grant]:
    """Produce to every topic. Since KIP-679 (Kafka 3.0) WRITE on a topic also allows
    an idempotent producer's InitProducerId, so no IDEMPOTENT_WRITE on the cluster."""
    return _on_topics(prefix, Operation.WRITE, Operation.DESCRIBE)


def store_grants(store_id: str, prefix: str) -> list[Grant]:
    """Consume every topic and commit offsets in the store's own group."""
    return [
        *_on_topics(prefix, Operation.READ, Operation.DESCRIBE),
        Grant(Resource.GROUP, consumer_group(store_id), Operation.READ),
    ]
