"""Against the real broker: records no replica can take, produced to the real topics, are
dead-lettered one by one, and a change produced after them still reaches the replica within
5 s, whether the record fails to parse, to validate or to be written."""

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import peewee
import pytest

from harness.waiting import eventually
from invwire.events import StockChanged
from storeagent.replica.db import Replica, open_replica
from storeagent.replica.queries import ReplicaReads
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import LoopTuning, SyncLoop
from storeagent.sync.progress import SyncProgress
from tests.support.agent_fakes import envelope, product_data, product_event, stock_data, stock_event

pytestmark = pytest.mark.usefixtures("wire_topics")

SKU = "MILK-1L"
UNWRITABLE_VERSION = 13


class RefusingReplica(Replica):
    """Writing stock version 13 fails as a CHECK constraint would: the record's fault."""

    def upsert_stock(self, event: StockChanged, occurred_at: datetime) -> bool:
        if event.stock_version == UNWRITABLE_VERSION:
            raise peewee.IntegrityError("CHECK constraint failed: stock_version")
        return super().upsert_stock(event, occurred_at)


@pytest.fixture
def replica(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, unique_id: str, agent_login: KafkaLogin
) -> Iterator[Replica]:
    """The real sync loop, in a thread, writing through a RefusingReplica."""
    opened = open_replica(tmp_path / "replica.db")
    loop = SyncLoop(
        RefusingReplica(opened.db),
        lambda: KafkaRecordSource.connect(
            kafka_bootstrap,
            group_id=f"storeagent.{unique_id}",
            client_id="agent-poison-test",
            login=agent_login,
        ),
        prefix=topic_prefix,
        stop=threading.Event(),
        progress=SyncProgress(),
        tuning=LoopTuning(poll_timeout_ms=200, backoff_initial_s=0.05, backoff_max_s=0.5),
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    eventually(opened.is_bootstrapped, 20, "the loop bootstrapped on the empty topics")
    yield opened
    loop.stop.set()
    thread.join(5)
    assert not thread.is_alive()
    opened.close()


def stock_value(**data: object) -> bytes:
    return envelope("stock.changed", stock_data(**data))


POISON = {  # what the record carries: (topic, value, the dead letter's reason)
    "stock_version 2**64": (
        "inventory-updated",
        stock_value(stock_version=2**64),
        "field.invalid",
    ),
    "quantity of the wrong type": (
        "inventory-updated",
        stock_value(quantity="12"),
        "field.invalid",
    ),
    "unknown type": ("inventory-updated", envelope("stock.exploded", stock_data()), "type.unknown"),
    "truncated JSON": ("inventory-updated", stock_value()[:-12], "json.invalid"),
    "lone surrogate in a name": (
        "new-product",
        envelope("product.updated", product_data(name="Milk \ud800", version=2)),
        "field.invalid",
    ),
    "a write the replica refuses": (
        "inventory-updated",
        stock_value(quantity=5, stock_version=UNWRITABLE_VERSION),
        "record.not_applied",
    ),
}


def test_poison_records_are_dead_lettered_and_a_later_change_arrives_within_5_s(
    replica: Replica, publish
):
    publish.send(
        product_event(name="Milk", version=1),
        stock_event(quantity=40, stock_version=12),
        *((topic, SKU.encode(), value) for topic, value, _ in POISON.values()),
    )
    publish.send(
        product_event(name="Whole milk", version=3),
        stock_event(quantity=38, stock_version=14),
    )
    reads = ReplicaReads(replica)

    def arrived() -> bool:
        stock, product = reads.stock_level(SKU), reads.products().get(SKU)
        assert stock is not None and product is not None
        return stock.quantity == 38 and product.name == "Whole milk"

    eventually(arrived, 5, "the change produced after the poison", interval=0.01)

    letters = sorted((letter.value, letter.reason) for letter in reads.dead_letters())
    assert letters == sorted((value, reason) for _, value, reason in POISON.values())
    assert replica.stored_offsets() == publish.ends
