"""Kafka topics for tests: by default the wire topics, with the contract's partition counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient

from invwire.topics import PARTITIONS, TOPICS

COMPACTED = {"cleanup.policy": "compact"}


def create_topics(
    bootstrap: str,
    prefix: str = "",
    partitions: Mapping[str, int] | None = None,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] = COMPACTED,
    **client: Any,
) -> list[str]:
    """Create `prefix + name` for each topic in `partitions` (name -> count; default: every
    wire topic, compacted like central's) and wait for their metadata; the full names.
    `client` goes to the admin client: a secure cluster's login, e.g.
    `create_topics(kafka_cluster.bootstrap, prefix, **kafka_cluster.admin_config())`."""
    counts = {topic: PARTITIONS[topic] for topic in TOPICS} if partitions is None else partitions
    spec = {"replication_factor": replication_factor, "configs": dict(configs)}
    with KafkaAdminClient(bootstrap_servers=bootstrap, **client) as admin:
        admin.create_topics(
            {prefix + topic: {"num_partitions": n, **spec} for topic, n in counts.items()},
            wait_for_metadata=True,
        )
    return [prefix + topic for topic in counts]
