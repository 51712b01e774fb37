"""Group commit (central.api.group_commit): orders waiting for SQLite's writer are written in
one transaction, each all-or-nothing in its own savepoint, and none is answered before the
commit; a database error or a failed commit is every order's answer, and nothing of the
batch is written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import peewee
import pytest

from central.api.group_commit import GroupCommit
from central.app import Central
from central.models import Order, Outbox, Stock
from central.services import accounts, catalog, inventory, orders
from central.services.principal import Principal
from harness.waiting import eventually
from invwire.errors.central import InsufficientStock

from .conftest import ADMIN

STORE = Principal("s1", "store", "s1")


@pytest.fixture
def shop(central: Central) -> Central:
    accounts.create_store(central.uow(), "s1", "One")
    category = catalog.create_category(central.uow(), "Dairy")
    for sku in ("MILK-1L", "EGGS-12"):
        new = catalog.NewProduct(sku=sku, name=sku, price="1.25", category_id=category["id"])
        catalog.create_product(central.uow(), new)
        inventory.set_stock(central.uow(), ADMIN, sku, 5)
    return central


def order(central: Central, key: str, sku: str, quantity: int) -> Callable[[], orders.Placed]:
    lines = [{"sku": sku, "quantity": quantity}]
    return lambda: orders.place_order(central.uow(), STORE, key, lines)


def quantities() -> dict[str, int]:
    return {row.sku: row.quantity for row in Stock.select()}


def together(central: Central, group: GroupCommit, works: list[Callable[[], Any]]) -> list[Any]:
    """`works` submitted while this thread holds the writer turn, so that the writer thread
    finds them all waiting when it gets it: one batch. Each one's outcome."""

    async def submit_all() -> list[Any]:
        with central.db.writer:  # type: ignore[attr-defined]
            futures = [group.submit(work) for work in works]
        return await asyncio.gather(*futures, return_exceptions=True)

    return asyncio.run(submit_all())


def test_orders_waiting_together_commit_once_and_a_refusal_touches_only_its_own(shop) -> None:
    commits: list[int] = []
    group = GroupCommit(shop.db, lambda: commits.append(1))
    works = [
        order(shop, "k-1", "MILK-1L", 2),
        order(shop, "k-2", "MILK-1L", 4),  # 3 left: refused
        order(shop, "k-3", "EGGS-12", 1),
        order(shop, "k-1", "MILK-1L", 2),  # the first key again, in the same batch: a replay
    ]
    first, refused, third, replay = together(shop, group, works)

    assert isinstance(refused, InsufficientStock)
    assert isinstance(first, orders.Placed) and not first.replayed
    assert isinstance(replay, orders.Placed) and replay.replayed
    assert replay.order["id"] == first.order["id"]
    assert isinstance(third, orders.Placed) and not third.replayed
    assert commits == [1]
    with shop.db.connection_context():
        assert quantities() == {"MILK-1L": 3, "EGGS-12": 4}
        assert Order.select().count() == 2
        changes = [row.key for row in Outbox.select() if row.topic == "inventory-updated"]
    assert changes.count("MILK-1L") == 2 and changes.count("EGGS-12") == 2  # set + each order


def test_a_database_error_in_one_order_is_every_order_of_the_batch_and_none_is_written(
    shop,
) -> None:
    def broken() -> None:
        orders.place_order(shop.uow(), STORE, "k-2", [{"sku": "EGGS-12", "quantity": 1}])
        raise peewee.OperationalError("disk I/O error")

    group = GroupCommit(shop.db, None)
    answers = together(shop, group, [order(shop, "k-1", "MILK-1L", 1), broken])

    assert [type(answer) for answer in answers] == [peewee.OperationalError] * 2
    with shop.db.connection_context():
        assert quantities() == {"MILK-1L": 5, "EGGS-12": 5}
        assert Order.select().count() == 0


def test_a_commit_that_fails_is_the_answer_of_orders_that_had_succeeded(shop) -> None:
    with shop.db.connection_context():
        shop.db.execute_sql(
            'CREATE TABLE "notes" ("order_id" TEXT REFERENCES "orders" ("id") '
            "DEFERRABLE INITIALLY DEFERRED)"
        )

    def dangling() -> None:  # passes its statement; refused at COMMIT (a deferred key)
        shop.db.execute_sql('INSERT INTO "notes" VALUES (?)', ["no-such-order"])

    group = GroupCommit(shop.db, None)
    placed, noted = together(shop, group, [order(shop, "k-1", "MILK-1L", 1), dangling])

    assert isinstance(placed, peewee.IntegrityError) and isinstance(noted, peewee.IntegrityError)
    with shop.db.connection_context():
        assert Order.select().count() == 0
        assert quantities()["MILK-1L"] == 5


def test_the_writer_thread_ends_when_idle_and_starts_again_at_the_next_order(shop) -> None:
    group = GroupCommit(shop.db, None, idle_s=0.05)

    async def one(key: str) -> orders.Placed:
        return await group.submit(order(shop, key, "MILK-1L", 1))

    assert not asyncio.run(one("k-1")).replayed
    eventually(lambda: not group.running(), what="the idle writer thread ended")
    assert not asyncio.run(one("k-2")).replayed
    with shop.db.connection_context():
        assert quantities()["MILK-1L"] == 3
