"""A replica's identity: the store it belongs to and the Kafka cluster and topics it was built
from, kept in its meta table, and the refusal of a replica that is not this agent's.

- `store_id`, and `replica_id` (a random id of this very file: a copy carries it, a new file
  gets another) are written when an agent first opens the file. A replica made before
  identities were (schema 4 or older) adopts the agent's store id then, and so do the sales
  recorded in it, which had none.
- `kafka_cluster_id` (from the broker's metadata) and `topic_prefix` are written when the
  agent first reaches Kafka with the file.

A later start with another store id, or against another cluster or topic prefix, is refused
(ReplicaRefused: one line, exit 2): the file's queued sales are another store's, or its
offsets and catalog another cluster's. The rules are pure functions; claim_store() and
claim_cluster() apply them to a replica in one transaction each.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from invwire.errors.agent import ReplicaOfAnotherCluster, ReplicaOfAnotherStore
from storeagent.replica.db import Replica
from storeagent.replica.local_orders import LocalOrders

META_STORE_ID = "store_id"
META_REPLICA_ID = "replica_id"
META_CLUSTER_ID = "kafka_cluster_id"
META_TOPIC_PREFIX = "topic_prefix"


@dataclass(frozen=True)
class ReplicaIdentity:
    """Whose replica this is, as its meta table records it (None: not recorded yet)."""

    replica_id: str | None
    store_id: str | None
    cluster_id: str | None
    topic_prefix: str | None

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> ReplicaIdentity:
        return cls(
            replica_id=meta.get(META_REPLICA_ID),
            store_id=meta.get(META_STORE_ID),
            cluster_id=meta.get(META_CLUSTER_ID),
            topic_prefix=meta.get(META_TOPIC_PREFIX),
        )


@dataclass(frozen=True)
class StoreClaim:
    """What claim_store() found and did."""

    identity: ReplicaIdentity
    adopted: bool  # the replica had no store id: it took this one
    adopted_sales: int  # sales without a store id recorded under it now


def store_refusal(found: ReplicaIdentity, store_id: str, path: str) -> ReplicaOfAnotherStore | None:
    """A replica recorded under another store is refused; one without a store id is not."""
    if found.store_id is None or found.store_id == store_id:
        return None
    return ReplicaOfAnotherStore(
        f"the replica {path} belongs to store {found.store_id}, and this agent runs for store "
        f"{store_id}: its sales would be sent as this store's. Point --db at store "
        f"{store_id}'s own replica; if this file is a copy, move it aside and the agent builds "
        "a new one (its queued sales are store "
        f"{found.store_id}'s: see `storeagent salvage`)",
        path=path,
        replica_store_id=found.store_id,
        store_id=store_id,
    )


def cluster_refusal(
    found: ReplicaIdentity, cluster_id: str | None, topic_prefix: str, path: str
) -> ReplicaOfAnotherCluster | None:
    """A replica built from another cluster (when both ids are known) or another topic prefix
    is refused; one that never reached Kafka is not."""
    other_cluster = None not in (found.cluster_id, cluster_id) and found.cluster_id != cluster_id
    other_prefix = found.topic_prefix is not None and found.topic_prefix != topic_prefix
    if not (other_cluster or other_prefix):
        return None
    return ReplicaOfAnotherCluster(
        f"the replica {path} was built from Kafka cluster {found.cluster_id} with topic prefix "
        f"{found.topic_prefix!r}, and this agent reads cluster {cluster_id} with topic prefix "
        f"{topic_prefix!r}: its catalog and offsets are another cluster's. Fix --kafka or "
        "--topic-prefix, or, when the store really moved: let its queue drain (invctl sync "
        "status: depth 0) or salvage it (`storeagent salvage`), then move the file aside",
        path=path,
        replica_cluster_id=found.cluster_id,
        replica_topic_prefix=found.topic_prefix,
        cluster_id=cluster_id,
        topic_prefix=topic_prefix,
    )


def read_identity(replica: Replica) -> ReplicaIdentity:
    return ReplicaIdentity.from_meta(replica.meta())


def claim_store(replica: Replica, store_id: str) -> StoreClaim:
    """Refuse a replica of another store; give one without identity this store's id (and its
    sales without one), and a replica id when it has none. One transaction."""
    path = str(replica.db.database)
    with replica.transaction():
        found = read_identity(replica)
        refusal = store_refusal(found, store_id, path)
        if refusal is not None:
            raise refusal
        written: dict[str, str] = {}
        adopted_sales = 0
        if found.store_id is None:
            written[META_STORE_ID] = store_id
            adopted_sales = LocalOrders(replica).adopt(store_id)
        if found.replica_id is None:
            written[META_REPLICA_ID] = uuid.uuid4().hex
        replica.set_meta(written)
    identity = ReplicaIdentity.from_meta({**replica.meta(), **written})
    return StoreClaim(identity, adopted=META_STORE_ID in written, adopted_sales=adopted_sales)


def claim_cluster(replica: Replica, cluster_id: str | None, topic_prefix: str) -> bool:
    """Refuse a replica of another cluster or topic prefix; record them in one that has none.
    Whether anything was recorded now. One transaction."""
    path = str(replica.db.database)
    with replica.transaction():
        found = read_identity(replica)
        refusal = cluster_refusal(found, cluster_id, topic_prefix, path)
        if refusal is not None:
            raise refusal
        written = {META_TOPIC_PREFIX: topic_prefix} if found.topic_prefix is None else {}
        if found.cluster_id is None and cluster_id is not None:
            written[META_CLUSTER_ID] = cluster_id
        replica.set_meta(written)
    return bool(written)
