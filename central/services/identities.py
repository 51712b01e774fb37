"""The stores' Kafka identities: one SCRAM user per API key, made while central still holds
the plaintext key, deleted when the key is revoked.

Issuing a key provisions its user before the database commits, and undoes it if the commit
fails. Revoking commits first, with a `kafka_revocations` row in the same transaction, then
deletes the user; a revocation Kafka could not take stays in that table until the retrier
(`central.revocations`) drains it, so none is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import peewee

from central.domain.kafka_access import Grant, store_grants
from central.models import ApiKey, KafkaRevocation, Store
from central.uow import UnitOfWork
from invwire.errors.central import KafkaUnavailable
from invwire.identity import kafka_username, username_for_fingerprint
from invwire.logs import EventLog

log = EventLog("central.identities")

DRAIN_BATCH = 100


class KafkaIdentities(Protocol):
    topic_prefix: str
    """The deployment's topic prefix: the grants name the prefixed topics."""

    def provision(self, username: str, password: str, grants: Sequence[Grant]) -> None:
        """Upsert the user's SCRAM credential and add the grants as ACLs; raises
        KafkaUnavailable (then part of it may exist: remove it)."""
        ...

    def remove(self, username: str) -> None:
        """Delete the user's SCRAM credentials and every ACL naming it; what is already gone
        is not an error. Raises KafkaUnavailable."""
        ...

    def grant(self, username: str, grants: Sequence[Grant]) -> None:
        """Add the grants as ACLs of an existing user (ones it holds change nothing);
        raises KafkaUnavailable."""
        ...


def key_username(store_id: str, key_hash: str) -> str:
    """The Kafka user of a stored key: its hash is the SHA-256 the username is derived from."""
    return username_for_fingerprint(store_id, key_hash)


@contextmanager
def key_identity(
    uow: UnitOfWork, identities: KafkaIdentities | None, store_id: str, api_key: str
) -> Iterator[None]:
    """Provision the key's Kafka user, then run the block (the transaction saving the key).
    Kafka failing raises KafkaUnavailable before anything is saved; the block failing
    deletes the user again."""
    if identities is None:
        yield
        return
    username = kafka_username(store_id, api_key)
    grants = store_grants(store_id, identities.topic_prefix)
    try:
        identities.provision(username, api_key, grants)
    except KafkaUnavailable:
        _queue(uow, username)  # it may be half made; nobody knows its password
        raise
    try:
        yield
    except BaseException:
        _compensate(uow, identities, username)
        raise
    log.info("kafka.identity_provisioned", store_id=store_id, username=username)


def grant_store_access(db: peewee.Database, identities: KafkaIdentities) -> int:
    """Give every active key of an active store the store grants of today: a key issued
    before a topic was added (order-updated) gets READ on it, so its agent is not refused
    the new topic after an upgrade. Run before the relay's first publish; how many keys."""
    with db.connection_context():
        rows = (
            ApiKey.select(ApiKey, Store)
            .join(Store)
            .where(ApiKey.revoked_at.is_null(), Store.active)
            .order_by(ApiKey.id)
        )
        keys = [(str(row.store.id), str(row.key_hash)) for row in rows]
    for store_id, key_hash in keys:
        grants = store_grants(store_id, identities.topic_prefix)
        identities.grant(key_username(store_id, key_hash), grants)
    if keys:
        log.info("kafka.store_access_granted", keys=len(keys))
    return len(keys)


def queue_revocation(username: str) -> None:
    """Inside the caller's transaction: the user is to be deleted once it commits."""
    KafkaRevocation.insert(username=username).on_conflict_ignore().execute()


def revoke_now(uow: UnitOfWork, identities: KafkaIdentities, username: str) -> bool:
    """Delete a queued user now; if Kafka does not answer, the queue keeps it for the
    retrier. True when it is gone."""
    try:
        identities.remove(username)
    except KafkaUnavailable:
        log.warning("kafka.revocation_pending", username=username)
        return False
    log.info("kafka.identity_revoked", username=username)
    try:
        _dequeue(uow, username)
    except Exception as exc:  # the key is revoked; the retrier deletes the user again
        log.warning("kafka.revocation_not_dequeued", username=username, error=str(exc)[:200])
    return True


def drain_revocations(uow: UnitOfWork, identities: KafkaIdentities) -> int:
    """Delete the queued users, oldest first; stops at the first that Kafka refuses and
    raises KafkaUnavailable (the rest wait for the next round). Returns how many went."""
    with uow.db.connection_context():
        queued = [
            row.username
            for row in KafkaRevocation.select(KafkaRevocation.username)
            .order_by(KafkaRevocation.created_at, KafkaRevocation.username)
            .limit(DRAIN_BATCH)
        ]
    for done, username in enumerate(queued):
        try:
            identities.remove(username)
        except KafkaUnavailable:
            log.warning("kafka.revocations_waiting", removed=done, waiting=len(queued) - done)
            raise
        _dequeue(uow, username)
        log.info("kafka.identity_revoked", username=username)
    return len(queued)


def pending_revocations(uow: UnitOfWork) -> list[str]:
    with uow.db.connection_context():
        return [r.username for r in KafkaRevocation.select().order_by(KafkaRevocation.username)]


def _compensate(uow: UnitOfWork, identities: KafkaIdentities, username: str) -> None:
    try:
        identities.remove(username)
    except KafkaUnavailable:
        _queue(uow, username)
        return
    log.info("kafka.identity_compensated", username=username)


def _queue(uow: UnitOfWork, username: str) -> None:
    try:
        with uow:
            queue_revocation(username)
    except Exception as exc:  # the database may be what failed; say what is left behind
        log.error("kafka.identity_orphaned", username=username, error=str(exc)[:200])


def _dequeue(uow: UnitOfWork, username: str) -> None:
    with uow:
        KafkaRevocation.delete().where(KafkaRevocation.username == username).execute()
