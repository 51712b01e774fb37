"""Kafka adapters for central: the outbox publisher, topic provisioning, group lag and the
stores' Kafka identities (SCRAM credentials and ACLs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from central.domain.kafka_access import Grant, Operation, Resource
from central.kafka_position import Position, PositionUnreadable, record_position
from central.outbox import OutboxRecord
from central.settings import Settings
from invwire import tracing
from invwire.errors.central import KafkaUnavailable
from invwire.headers import EPOCH_HEADER, SEQ_HEADER, encode_counter
from invwire.kafka import RECONNECT_BACKOFF_MAX_MS, login_config, reader_config
from invwire.logs import EventLog
from invwire.topics import PARTITIONS, TOPICS

log = EventLog("central.kafka")

FLUSH_TIMEOUT_SECONDS = 30.0
ADMIN_BOOTSTRAP_TIMEOUT_MS = 5000
ADMIN_REQUEST_TIMEOUT_MS = 10000

Security = Mapping[str, Any]


def client_config(settings: Settings, *, admin: bool = False) -> dict[str, Any]:
    """kafka-python connection settings for central's own credential, or with `admin` for the
    admin credential when one is configured. The result holds a password: never log it."""
    use_admin = admin and bool(settings.kafka_admin_username)
    return login_config(
        settings.kafka_security_protocol,
        mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_admin_username if use_admin else settings.kafka_username,
        password=settings.kafka_admin_password if use_admin else settings.kafka_password,
        ca_file=settings.kafka_ca_file or None,
    )


class KeyHashCache(DefaultPartitioner):
    """kafka-python's default partitioner (the Java client's: murmur2 of the key), with each
    key's hash kept: murmur2 is pure Python there, about a third of a record's send, and the
    relay sends the same SKUs' keys again and again. Same partition for the same key."""

    MAX_KEYS = 65_536

    def __init__(self) -> None:
        super().__init__()
        self._hashes: dict[bytes, int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: Any,
        cluster: Any,
    ) -> int:
        if serialized_key is None or topic not in cluster.topics():
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        digest = self._hashes.get(serialized_key)
        if digest is None:
            if len(self._hashes) >= self.MAX_KEYS:
                self._hashes.clear()
            digest = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        partitions = sorted(cluster.partitions_for_topic(topic))
        return int(partitions[digest % len(partitions)])


class KafkaPublisher:
    """Idempotent producer (acks=all): per-partition order holds across retries.

    Before its first producer it creates missing topics (with `admin_security`, else its own)
    and runs `prepare` (central uses it to grant the relay's principal its ACLs); both are
    retried with the next batch until they succeed. A failed batch drops the producer and
    makes the next batch check the topics again: a broker that lost its data has no topics,
    and with `auto.create.topics.enable=false` a producer would wait for their metadata
    forever. It is also the relay's `TopicLog`: how many records each topic ever took, and
    whether a record was acked at a lower offset than an earlier one in its partition (the
    log lost records under it: a topic re-created, a broker that lost its data).
    """

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        replication_factor: int = 0,
        client_id: str = "central-relay",
        *,
        security: Security | None = None,
        admin_security: Security | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.replication_factor = replication_factor
        self.client_id = client_id
        self._security = dict(security or {})
        self._admin_security = dict(admin_security or security or {})
        self._prepare = prepare
        self._producer: Any = None
        self._topics_ready = False
        self._acked_up_to: dict[tuple[str, int], int] = {}  # the highest offset acked
        self._went_back = False

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
                        headers=record_headers(record),
                    )
                )
            producer.flush(timeout=FLUSH_TIMEOUT_SECONDS)
        except KafkaError as exc:
            # What was acked before the failure is still counted below; the rest is retried.
            log.warning("kafka.publish_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            self._reset()
        except Exception:
            # Not the broker's answer but the client's own failure: start over all the same.
            self._reset()
            raise
        acked = 0
        for future in futures:
            if not future.succeeded():
                break
            acked += 1
            self._saw_acked(future.value)
        if acked < len(records):
            self._reset()
        return acked

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def warm(self) -> None:
        """Get ready before the first batch (topics, `prepare`, producer): a standby relay
        does it while it waits, so that taking the lease over makes no connection."""
        self._ensure_producer()

    def _ensure_producer(self) -> Any:
        if not self._topics_ready:
            created = ensure_topics(
                self.bootstrap, self.prefix, self.replication_factor, self._admin_security
            )
            if created:
                log.info("kafka.topics_created", topics=created)
            if self._prepare is not None:
                self._prepare()
            self._topics_ready = True
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                partitioner=KeyHashCache(),
                max_block_ms=5000,
                bootstrap_timeout_ms=5000,
                request_timeout_ms=10000,
                delivery_timeout_ms=25000,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                **self._security,
            )
        return self._producer

    def _saw_acked(self, acked: Any) -> None:
        """An offset below one acked before in the same partition: the log went back."""
        partition = (acked.topic, acked.partition)
        before = self._acked_up_to.get(partition)
        if before is not None and acked.offset <= before:
            self._went_back = True
            self._acked_up_to.clear()  # the log was replaced: said once, not per partition
        self._acked_up_to[partition] = acked.offset

    def went_back(self) -> bool:
        """Whether a partition's log went back since the last call (then cleared)."""
        went, self._went_back = self._went_back, False
        return went

    def records(self) -> dict[str, int]:
        """Records ever appended to each topic (unprefixed name): its partitions' end offsets
        summed, 0 for a topic that does not exist. Raises KafkaError when it cannot tell."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="central-audit",
            bootstrap_timeout_ms=ADMIN_BOOTSTRAP_TIMEOUT_MS,
            request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS,
            **self._admin_security,
        )
        try:
            return _end_offset_sums(admin, self.prefix)
        finally:
            admin.close()

    def _reset(self) -> None:
        """Drop a producer whose batch failed, so the retry starts from a clean sequence, and
        check the topics again before the next batch (they may be gone)."""
        self._topics_ready = False
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not mask the failure
                log.debug("kafka.close_failed", error=str(exc))
            self._producer = None


def record_headers(record: OutboxRecord) -> list[tuple[str, bytes]]:
    """The event's id, and its position (docs/wire.md, "Record headers"): the database's
    epoch and the outbox row id, by which a reader orders records and central tells whether
    its database is behind what it published (central.kafka_position); and, when the span
    that wrote the row was traced, its W3C `traceparent` (and `tracestate`)."""
    return [
        ("event_id", record.event_id.encode()),
        (EPOCH_HEADER, encode_counter(record.epoch)),
        (SEQ_HEADER, encode_counter(record.id)),
        *tracing.kafka_headers(record.trace_context),
    ]


UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION


def _partitions(admin: Any, prefix: str) -> dict[Any, str]:
    """Every partition of the wire topics that exist, with its topic's unprefixed name."""
    from kafka import TopicPartition

    described = admin.describe_topics([prefix + base for base in TOPICS])
    partitions: dict[Any, str] = {}
    for topic in described:
        base = topic["name"][len(prefix) :]
        if topic["error_code"] == UNKNOWN_TOPIC:
            continue  # a missing topic holds nothing
        if topic["error_code"] != 0 or base not in TOPICS:
            raise KafkaError(f"cannot describe topic {topic['name']}: {topic['error_code']}")
        for p in topic["partitions"]:
            partitions[TopicPartition(topic["name"], p["partition_index"])] = base
    return partitions


def _end_offset_sums(admin: Any, prefix: str) -> dict[str, int]:
    from kafka import OffsetSpec

    partitions = _partitions(admin, prefix)
    sums = dict.fromkeys(TOPICS, 0)
    if partitions:
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        for tp, base in partitions.items():
            sums[base] += max(0, ends[tp].offset)
    return sums


def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    replication_factor: int = 0,
    security: Security | None = None,
) -> list[str]:
    """Create the three topics if missing, compacted, with partitions and replication set."""
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="central-admin",
        bootstrap_timeout_ms=ADMIN_BOOTSTRAP_TIMEOUT_MS,
        request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS,
        **(security or {}),
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


class KafkaLastRecords:
    """The newest position central published (a central.kafka_position.PublishedPositions):
    the admin client finds each partition's start and end offsets, a group-less consumer
    fetches the record at end - 1 of every partition that holds one, and only its headers
    are read. Every step is bounded by `timeout_seconds`."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "",
        security: Security | None = None,
        *,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.timeout_seconds = timeout_seconds
        self._security = dict(security or {})

    def newest(self) -> Position | None:
        from kafka.errors import AuthorizationError

        try:
            last = self._last_offsets()
            return self._newest_of(last) if last else None
        except AuthorizationError as exc:
            raise PositionUnreadable(f"{type(exc).__name__}: {exc}"[:300]) from exc

    def _last_offsets(self) -> dict[Any, int]:
        """The offset of the last record of every partition that holds one."""
        from kafka import KafkaAdminClient, OffsetSpec

        timeout_ms = int(self.timeout_seconds * 1000)
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="central-position",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **self._security,
        )
        try:
            partitions = list(_partitions(admin, self.prefix))
            if not partitions:
                return {}
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
            starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
        finally:
            admin.close()
        return {tp: ends[tp].offset - 1 for tp in partitions if ends[tp].offset > starts[tp].offset}

    def _newest_of(self, last: dict[Any, int]) -> Position | None:
        import time

        from kafka import KafkaConsumer
        from kafka.errors import KafkaTimeoutError

        timeout_ms = int(self.timeout_seconds * 1000)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id="central-position",
            group_id=None,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **reader_config(),
            **self._security,
        )
        try:
            consumer.assign(list(last))
            for tp, offset in last.items():
                consumer.seek(tp, offset)
            waiting = dict(last)
            positions: list[Position] = []
            deadline = time.monotonic() + self.timeout_seconds
            while waiting:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise KafkaTimeoutError(
                        f"the last record of {len(waiting)} partition(s) did not arrive"
                    )
                for tp, records in consumer.poll(timeout_ms=min(left_ms, 500)).items():
                    positions += [record_position(r.headers or []) for r in records]
                    if records and records[-1].offset >= waiting.get(tp, 0):
                        waiting.pop(tp, None)
            return max(positions, default=None)
        finally:
            consumer.close()


class KafkaLagReader:
    """Consumer-group lag from committed offsets and log-end offsets, as Kafka tooling sees it."""

    def __init__(self, bootstrap: str, prefix: str = "", security: Security | None = None) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self._security = dict(security or {})

    def lag(self, groups: list[str]) -> dict[str, Any]:
        from kafka import KafkaAdminClient, OffsetSpec, TopicPartition

        from central.services.fleet_lags import GroupLag

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="central-fleet",
            bootstrap_timeout_ms=3000,
            request_timeout_ms=5000,
            **self._security,
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
            # kafka-python 3 finds every group's coordinator in one FindCoordinator (v4) and
            # asks each coordinator once for all its groups (OffsetFetch v8; Kafka 3.0+).
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


class KafkaAdminIdentities:
    """SCRAM credentials and ACLs through the admin credential (a `KafkaIdentities`).

    Every call opens its own admin connection: these are rare (a store added, a key issued
    or revoked), and a fresh connection never carries a broken one's state into the next.
    Any failure raises KafkaUnavailable.
    """

    def __init__(
        self, bootstrap: str, security: Security, mechanism: str, topic_prefix: str = ""
    ) -> None:
        self.bootstrap = bootstrap
        self.mechanism = mechanism
        self.topic_prefix = topic_prefix
        self._security = dict(security)

    def provision(self, username: str, password: str, grants: Sequence[Grant]) -> None:
        from kafka.admin import UserScramCredentialUpsertion

        with self._admin("provision", username) as admin:
            upsert = UserScramCredentialUpsertion(username, self.mechanism, password)
            _check_user(username, admin.alter_user_scram_credentials([upsert]))
            created = admin.create_acls([grant_acl(username, grant) for grant in grants])
            if created["failed"]:
                raise KafkaError(f"ACLs refused: {created['failed']}")

    def grant(self, username: str, grants: Sequence[Grant]) -> None:
        with self._admin("grant", username) as admin:
            created = admin.create_acls([grant_acl(username, grant) for grant in grants])
            if created["failed"]:
                raise KafkaError(f"ACLs refused: {created['failed']}")

    def remove(self, username: str) -> None:
        from kafka.admin import UserScramCredentialDeletion

        with self._admin("remove", username) as admin:
            described = admin.describe_user_scram_credentials([username]).get(username, {})
            deletions = [
                UserScramCredentialDeletion(username, info["mechanism"])
                for info in described.get("credential_infos", [])
            ]
            if deletions:
                _check_user(username, admin.alter_user_scram_credentials(deletions))
            for _, _, error in admin.delete_acls([every_acl_of(username)]):
                if error.errno:
                    raise error()

    @contextlib.contextmanager
    def _admin(self, action: str, username: str) -> Iterator[Any]:
        from kafka import KafkaAdminClient

        admin = None
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="central-identities",
                bootstrap_timeout_ms=ADMIN_BOOTSTRAP_TIMEOUT_MS,
                request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS,
                **self._security,
            )
            yield admin
        except (KafkaError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("kafka.identity_failed", action=action, username=username, error=reason)
            raise KafkaUnavailable(action=action) from exc
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()


def _check_user(username: str, results: Mapping[str, str | None]) -> None:
    error = results.get(username)
    if error:
        raise KafkaError(f"SCRAM credential of {username}: {error}")


def _principal(username: str) -> str:
    return f"User:{username}"


def every_acl_of(username: str) -> Any:
    """The ACL filter that matches every ACL of `username`, on any resource."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    pattern = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
    return ACLFilter(_principal(username), None, ACLOperation.ANY, ACLPermissionType.ANY, pattern)


def grant_acl(username: str, grant: Grant) -> Any:
    """The broker's ACL that allows `username` what `grant` says."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    resource = {Resource.TOPIC: ResourceType.TOPIC, Resource.GROUP: ResourceType.GROUP}
    operation = {
        Operation.READ: ACLOperation.READ,
        Operation.WRITE: ACLOperation.WRITE,
        Operation.DESCRIBE: ACLOperation.DESCRIBE,
    }
    pattern = ResourcePattern(resource[grant.resource], grant.name, ACLResourcePatternType.LITERAL)
    return ACL(
        _principal(username), "*", operation[grant.operation], ACLPermissionType.ALLOW, pattern
    )
