"""A cancelled order tells its store: one `order.updated` event (topic order-updated) in the
same transaction as the release of its stock, none for a cancel that changes nothing."""

import json

import pytest

from central.models import Outbox
from central.services import catalog, inventory, orders
from central.services.principal import Principal, Role
from invwire.errors.central import Forbidden, OrderNotFound

from .conftest import ADMIN

STORE = Principal("store-1", Role.STORE, "store-1")


def order_rows(central) -> list[tuple[str, dict]]:
    with central.db.connection_context():
        rows = Outbox.select().where(Outbox.topic == "order-updated").order_by(Outbox.id)
        return [(row.key, json.loads(row.payload)) for row in rows]


@pytest.fixture
def order_id(central) -> str:
    category = catalog.create_category(central.uow(), "Dairy")
    catalog.create_product(
        central.uow(),
        catalog.NewProduct(sku="MILK-1L", name="Milk", price="1.25", category_id=category["id"]),
    )
    inventory.set_stock(central.uow(), ADMIN, "MILK-1L", 40)
    lines = [{"sku": "MILK-1L", "quantity": 2}]
    return str(orders.place_order(central.uow(), STORE, "key-1", lines).order["id"])


def test_placing_an_order_tells_the_store_nothing_new(central, order_id):
    assert order_rows(central) == []


def test_a_cancel_records_one_order_updated_for_the_orders_store(central, order_id):
    cancelled = orders.cancel_order(central.uow(), STORE, order_id)
    orders.cancel_order(central.uow(), ADMIN, order_id)  # again: changes nothing

    [(key, event)] = order_rows(central)
    assert (key, event["type"]) == (order_id, "order.updated")
    assert event["data"] == {
        "order_id": order_id,
        "store_id": "store-1",
        "status": "cancelled",
        "version": 2,
        "cancelled_at": cancelled["cancelled_at"],
    }


def test_an_admins_cancel_tells_the_orders_store_too(central, order_id):
    orders.cancel_order(central.uow(), ADMIN, order_id)

    [(_, event)] = order_rows(central)
    assert event["data"]["store_id"] == "store-1"


@pytest.mark.parametrize(
    ("principal", "error"),
    [
        (Principal("store-2", Role.STORE, "store-2"), OrderNotFound),
        (Principal("bob", Role.STAFF, "store-2"), OrderNotFound),
        (Principal("olga", Role.OPS), Forbidden),
    ],
)
def test_only_the_owning_store_its_staff_or_an_admin_may_cancel(
    central, order_id, principal, error
):
    with pytest.raises(error):
        orders.cancel_order(central.uow(), principal, order_id)

    assert order_rows(central) == []
