"""The real RecordSource: a kafka-python KafkaConsumer with manual assignment.

Every kafka-python error is translated to SourceUnavailable so the loop handles one type, or
to one of its two refusals: KafkaAuthFailed (the broker refused the store's login) and
KafkaNotAuthorized (its ACLs refused a request). Any other exception the client raises is a
SourceUnavailable too, never a crash of the agent: kafka-python raises a KeyError from
end_offsets for a topic deleted and re-created under it, for one. Timeouts are short so
that a stop request is honoured within seconds even when the broker is unreachable.

With SASL_SSL, a connection or an end-offsets probe that fails is checked once more with
kafka_login.check_login, because kafka-python reports a refused login (while bootstrapping,
or a re-authentication refused on a live connection) as a mere timeout.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.structs import OffsetAndMetadata

from invwire.errors.agent import (
    KafkaAccessDenied,
    KafkaAuthFailed,
    KafkaNotAuthorized,
    SourceUnavailable,
)
from invwire.kafka import reader_config
from storeagent.sync.kafka_login import KafkaLogin, check_login
from storeagent.sync.read_ahead import ReadAhead
from storeagent.sync.source import Record, TopicPartition

REQUEST_TIMEOUT_MS = 10_000
CALL_TIMEOUT_MS = 3_000
DESCRIBE_CHECK_MS = 1_000  # a refusal comes in milliseconds; a missing topic only times out
# At most this many records are taken from the client in one poll (sync.read_ahead): more
# than a fetch brings (1 MiB a partition, about 3,500 stock records), so that a poll takes
# all of it and the next fetch goes out. Holding a decoded fetch while the next one arrives
# raised a bootstrapping agent's RSS from 107 to 131 MiB (docs/benchmarks.md).
READ_AHEAD_RECORDS = 60_000


@contextmanager
def _kafka_errors() -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        raise translate(exc) from exc
    except Exception as exc:  # the client's own failure (see above): the source failed
        raise SourceUnavailable(f"the Kafka client failed: {type(exc).__name__}: {exc}") from exc


def translate(exc: KafkaError) -> SourceUnavailable:
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (SaslAuthenticationFailedError, UnsupportedSaslMechanismError)):
        return KafkaAuthFailed(message)
    if isinstance(exc, AuthorizationError):
        return KafkaNotAuthorized(message)
    return SourceUnavailable(message)


def _ktp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class KafkaRecordSource:
    def __init__(
        self,
        consumer: KafkaConsumer,
        *,
        login: KafkaLogin | None = None,
        servers: Sequence[str] = (),
        client_id: str = "storeagent",
    ) -> None:
        self._consumer = consumer
        self._login = login or KafkaLogin()
        self._servers, self._client_id = list(servers), client_id
        self._ahead = ReadAhead()

    @classmethod
    def connect(
        cls,
        bootstrap_servers: str,
        *,
        group_id: str,
        client_id: str,
        login: KafkaLogin | None = None,
        fetch_max_wait_ms: int = 100,
    ) -> KafkaRecordSource:
        """Raises KafkaAuthFailed when the broker refuses `login`, SourceUnavailable when it
        cannot be reached (the message then says what the login check found, e.g. TLS)."""
        login = login or KafkaLogin()
        servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=servers,
                group_id=group_id,
                client_id=client_id,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=fetch_max_wait_ms,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                bootstrap_timeout_ms=CALL_TIMEOUT_MS,
                metrics_enabled=False,
                **reader_config(),
                **login.client_config(),
            )
        except KafkaError as exc:
            error = translate(exc)
            if not login.secure or isinstance(error, KafkaAuthFailed):
                raise error from exc
            raise _checked(error, servers, login, client_id) from exc
        return cls(consumer, login=login, servers=servers, client_id=client_id)

    def cluster_id(self) -> str | None:
        """The cluster id the broker's metadata carries (Metadata v2 and later), which the
        consumer fetched as it connected. kafka-python 3 keeps it on its cluster metadata
        (`ClusterMetadata.cluster_id`) and has no public accessor on the consumer for it."""
        cluster = getattr(self._consumer, "_cluster", None)
        if cluster is not None and cluster.cluster_id is None:
            with _kafka_errors():
                self._consumer.topics()  # a metadata request: sets the cluster id
        found = None if cluster is None else cluster.cluster_id
        return str(found) if found else None

    def partitions_for(self, topic: str) -> set[int]:
        """Raises KafkaNotAuthorized for a topic the store may not DESCRIBE: Kafka leaves such
        a topic out of the topic list, as if it did not exist, so with ACLs an empty answer is
        checked by asking for the topic's end offset."""
        with _kafka_errors():
            found = set(self._consumer.partitions_for_topic(topic) or ())
            if not found and self._login.secure:
                self._check_may_describe(topic)
        return found

    def _check_may_describe(self, topic: str) -> None:
        try:
            self._consumer.end_offsets([KafkaTopicPartition(topic, 0)], DESCRIBE_CHECK_MS)
        except AuthorizationError:
            raise
        except KafkaError:
            pass  # no answer for it: the topic is missing indeed

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._ahead.clear()
        with _kafka_errors():
            self._consumer.assign([_ktp(tp) for tp in partitions])

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        with _kafka_errors():
            if offset is None:
                self._consumer.seek_to_beginning(_ktp(partition))
            else:
                self._consumer.seek(_ktp(partition), offset)
        # Only once the client moved: a refused seek leaves the held records where they
        # were, and position() still names the first of them.
        self._ahead.drop(partition)

    def position(self, partition: TopicPartition) -> int | None:
        held = self._ahead.next_offset(partition)
        if held is not None:
            return held
        try:
            with _kafka_errors():
                position = self._consumer.position(_ktp(partition), timeout_ms=CALL_TIMEOUT_MS)
        except SourceUnavailable:
            return None
        return None if position is None else int(position)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The loop's probe of the broker. With SASL_SSL, a failure that kafka-python reports
        as a timeout (it may, once the broker refused a re-authentication) is checked with a
        login of our own, so that a revoked key is told from an unreachable broker."""
        try:
            with _kafka_errors():
                ends = self._consumer.end_offsets([_ktp(tp) for tp in partitions], CALL_TIMEOUT_MS)
        except KafkaAccessDenied:
            raise
        except SourceUnavailable as error:
            if not self._login.secure:
                raise
            raise _checked(error, self._servers, self._login, self._client_id) from error
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        with _kafka_errors():
            starts = self._consumer.beginning_offsets(
                [_ktp(tp) for tp in partitions], CALL_TIMEOUT_MS
            )
        return {TopicPartition(tp.topic, tp.partition): int(start) for tp, start in starts.items()}

    def topic_id(self, topic: str) -> str | None:
        """From the cluster metadata the consumer keeps (Metadata v10 and later carry topic
        ids, Kafka 2.8+): kafka-python 3 has `ClusterMetadata.topic_id()` and, as for the
        cluster id, no accessor on the consumer. No request: the metadata of the assigned
        topics is refreshed by the client itself (on errors, and every 5 minutes)."""
        cluster = getattr(self._consumer, "_cluster", None)
        try:
            found = None if cluster is None else cluster.topic_id(topic)
        except Exception:  # a client without topic ids: the offset checks remain
            return None
        return str(found) if found else None

    def highwater(self, partition: TopicPartition) -> int | None:
        try:
            with _kafka_errors():
                end = self._consumer.highwater(_ktp(partition))
        except SourceUnavailable:
            return None  # not known: the next probe asks the broker
        return None if end is None else int(end)

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        """Records read ahead first; the client is polled only once they are all handed out."""
        if not self._ahead:
            read = self._read(timeout_ms)
            if read > max_records:
                # Catching up: kafka-python 3 sends the next fetch only from a poll that
                # finds nothing buffered, and this one sends it now, so that it is under way
                # while the loop applies what was just read (sync.read_ahead). Not for a
                # few records: that poll would delay each of them by its own cost.
                self._read(0)
        return self._ahead.take(max_records)

    def _read(self, timeout_ms: int) -> int:
        """Poll the client into the read-ahead; how many records it gave."""
        with _kafka_errors():
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=READ_AHEAD_RECORDS)
        chunks = [
            [
                Record(r.topic, r.partition, r.offset, r.key, r.value, _headers(r.headers))
                for r in records
            ]
            for records in batches.values()
        ]
        self._ahead.fill(chunks)
        return sum(len(chunk) for chunk in chunks)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        request = {_ktp(tp): OffsetAndMetadata(nxt, "", -1) for tp, nxt in offsets.items()}
        with _kafka_errors():
            self._consumer.commit(request, timeout_ms=CALL_TIMEOUT_MS)

    def close(self) -> None:
        self._ahead.clear()
        with suppress(Exception):  # closing a client that failed: nothing left to save
            self._consumer.close(autocommit=False, timeout_ms=CALL_TIMEOUT_MS)


def _headers(
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    """kafka-python 3's ConsumerRecord.headers: a list of (str, bytes) pairs, empty (or None
    from older message formats) when the record has none."""
    if not headers:
        return ()
    return tuple((str(key), value) for key, value in headers)


def _checked(
    error: SourceUnavailable, servers: Sequence[str], login: KafkaLogin, client_id: str
) -> SourceUnavailable:
    """KafkaAuthFailed if a broker refuses `login` when asked directly, else `error` with
    what the check found appended (e.g. a TLS failure)."""
    reasons = []
    for server in servers:
        check = check_login(server, login, client_id=client_id, timeout_s=CALL_TIMEOUT_MS / 1000)
        if check.refused:
            return KafkaAuthFailed(f"{server} refused user {login.username}: {check.reason}")
        reasons.append(f"{server}: {check.reason}")
    return SourceUnavailable(f"{error.message} (login check: {'; '.join(reasons)})")
