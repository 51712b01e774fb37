"""Kafka adapters for central: the outbox publisher and topic provisioning."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from kafka.errors import KafkaError

from central.outbox import OutboxRecord
from invwire.logs import EventLog
from invwire.topics import PARTITIONS, TOPICS

log = EventLog("central.kafka")

FLUSH_TIMEOUT_SECONDS = 30.0
# kafka-python's default (30 s, doubling from 50 ms) let a batch wait on a killed leader's
# address for seconds after the cluster had elected a new one; Java clients cap it at 1 s.
RECONNECT_BACKOFF_MAX_MS = 1000


class KafkaPublisher:
    """Idempotent producer (acks=all): per-partition order holds across retries."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        replication_factor: int = 0,
        client_id: str = "central-relay",
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.replication_factor = replication_factor
        self.client_id = client_id
        self._producer: Any = None
        self._topics_ready = False

    def publish(self, records: Sequence[OutboxRecord]) -> int:
        producer = self._ensure_producer()
        futures = []
        try:
            for record in records:
                futures.append(
                    producer.send(
                        self.prefix + record.topic,
                        key=record.key.encode(),
                        value=record.value.encode(),
                        headers=[("event_id", record.event_id.encode())],
                    )
                )
            producer.flush(timeout=FLUSH_TIMEOUT_SECONDS)
        except KafkaError as exc:
            # What was acked before the failure is still counted below; the rest is retried.
            log.warning("kafka.publish_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            self._reset()
        acked = 0
        for future in futures:
            if not future.succeeded():
                break
            acked += 1
        if acked < len(records):
            self._reset()
        return acked

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _ensure_producer(self) -> Any:
        if not self._topics_ready:
            created = ensure_topics(self.bootstrap, self.prefix, self.replication_factor)
            if created:
                log.info("kafka.topics_created", topics=created)
            self._topics_ready = True
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                max_block_ms=5000,
                bootstrap_timeout_ms=5000,
                request_timeout_ms=10000,
                delivery_timeout_ms=25000,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        return self._producer

    def _reset(self) -> None:
        """Drop a producer whose batch failed, so the retry starts from a clean sequence."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not mask the failure
                log.debug("kafka.close_failed", error=str(exc))
            self._producer = None


def ensure_topics(bootstrap: str, prefix: str = "", replication_factor: int = 0) -> list[str]:
    """Create the three topics if missing, compacted, with partitions and replication set."""
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="central-admin",
        bootstrap_timeout_ms=5000,
        request_timeout_ms=10000,
    )
    try:
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster().get("brokers", [])) or 1
        factor = replication_factor or min(3, brokers)
        wanted = {
            prefix + base: {
                "num_partitions": PARTITIONS[base],
                "replication_factor": factor,
                "configs": {
                    "cleanup.policy": "compact",
                    "min.insync.replicas": "2" if factor >= 3 else "1",
                },
            }
            for base in TOPICS
            if prefix + base not in existing
        }
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted, wait_for_metadata=True)
        return sorted(wanted)
    finally:
        admin.close()


class KafkaLagReader:
    """Consumer-group lag from committed offsets and log-end offsets, as Kafka tooling sees it."""

    def __init__(self, bootstrap: str, prefix: str = "") -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix

    def lag(self, groups: list[str]) -> dict[str, Any]:
        from kafka import KafkaAdminClient, OffsetSpec, TopicPartition

        from central.services.fleet import GroupLag

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="central-fleet",
            bootstrap_timeout_ms=3000,
            request_timeout_ms=5000,
        )
        try:
            described = admin.describe_topics([self.prefix + t for t in TOPICS])
            partitions = [
                TopicPartition(topic["name"], p["partition_index"])
                for topic in described
                if topic["error_code"] == 0
                for p in topic["partitions"]
            ]
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
            committed = admin.list_group_offsets({group: None for group in groups})
        finally:
            admin.close()
        result = {}
        for group in groups:
            offsets = committed.get(group, {})
            lag = sum(max(0, ends[tp].offset - _committed(offsets, tp)) for tp in partitions)
            result[group] = GroupLag(lag=lag, partitions=len(partitions), committed=len(offsets))
        return result


def _committed(offsets: dict[Any, Any], tp: Any) -> int:
    meta = offsets.get(tp)
    return max(0, meta.offset) if meta is not None else 0
