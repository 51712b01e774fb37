"""Sales recovered from the stores (`POST /orders/recover`) on SQLite and on the real MariaDB:
after a restore, a store's sales central lost are taken again, those it cannot take are kept
for review, and a retry or a race never sells twice."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from central import migrations, models
from central.db import connect
from central.epochs import RestoredFrom, current_epoch, start_confirmed_epoch, start_restored_epoch
from central.models import Movement, Order, OrderLine, Outbox, utcnow
from tests.support.central_harness import Harness, running_central, served

ROUTE = "/api/v1/orders/recover"
PRICES = {"MILK": "2.00", "BREAD": "3.00", "OLD": "1.00"}
STOCK = {"MILK": 10, "BREAD": 5, "OLD": 4}


@dataclass
class World:
    h: Harness
    admin: dict[str, str]
    store: dict[str, str]  # store-1's key
    other: dict[str, str]  # store-2's key

    def recover(self, *sales: dict[str, Any], key: dict[str, str] | None = None) -> Any:
        return self.h.client.post(ROUTE, headers=key or self.store, json={"orders": list(sales)})

    def recovered(self, *sales: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.recover(*sales)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def stock(self, sku: str) -> int:
        return int(self.h.call("GET", f"/api/v1/stock/{sku}", self.admin)["quantity"])

    def buy(self, key: str, **lines: int) -> dict[str, Any]:
        body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines.items()]}
        headers = {**self.store, "Idempotency-Key": key}
        order: dict[str, Any] = self.h.call("POST", "/api/v1/orders", headers, json=body)
        return order

    def movements(self, order_id: str) -> list[Movement]:
        with self.h.central.db.connection_context():
            return list(Movement.select().where(Movement.order_id == order_id))

    def restored(self, backup_at: datetime | None = None) -> None:
        """A new epoch as a restore records it: of a backup taken at `backup_at`, or by
        `central confirm-restore` (the backup's time unknown) without one."""
        db = self.h.central.db
        if backup_at is None:
            start_confirmed_epoch(db, utcnow())
            return
        source = RestoredFrom(backup_at, 1, 0, "0" * 64)
        start_restored_epoch(db, current_epoch(db) + 1, source, utcnow())


@pytest.fixture
def world(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        category = h.call("POST", "/api/v1/categories", admin, json={"name": "Food"})
        for sku, price in PRICES.items():
            product = {"sku": sku, "name": sku, "price": price, "category_id": category["id"]}
            h.call("POST", "/api/v1/products", admin, json=product)
            h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": STOCK[sku]})
        h.call("PATCH", "/api/v1/products/OLD", admin, json={"active": False})
        keys = [
            h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})["api_key"]
            for s in ("store-1", "store-2")
        ]
        yield World(h, admin, {"X-API-Key": keys[0]}, {"X-API-Key": keys[1]})


def moment(at: datetime) -> str:
    return at.replace(tzinfo=UTC).isoformat()


def make_sale(
    *, ago: timedelta = timedelta(minutes=5), lines: dict[str, int] | None = None, **kw: Any
) -> dict[str, Any]:
    """A sale as an agent sends it back: central's id, time and unit prices (1.75 a unit,
    not the catalog's price, to tell them apart)."""
    wanted = lines or {"MILK": 2}
    return {
        "id": str(uuid.uuid4()),
        "idempotency_key": uuid.uuid4().hex,
        "created_at": moment(utcnow() - ago),
        "cancelled_at": None,
        "lines": [{"sku": s, "quantity": q, "unit_price": "1.75"} for s, q in wanted.items()],
        **kw,
    }


def as_sent(order: dict[str, Any], key: str, **kw: Any) -> dict[str, Any]:
    """Central's answer to a sale, as the store holds it and sends it back."""
    lines = [
        {"sku": line["sku"], "quantity": line["quantity"], "unit_price": line["unit_price"]}
        for line in order["lines"]
    ]
    sale = {"id": order["id"], "idempotency_key": key, "created_at": order["created_at"]}
    return {**sale, "cancelled_at": order["cancelled_at"], "lines": lines, **kw}


# --- before any restore ----------------------------------------------------------------------


def test_a_central_never_restored_refuses_and_writes_nothing(world):
    response = world.recover(make_sale())

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "recovery.no_restore"
    with world.h.central.db.connection_context():
        assert Order.select().count() == 0
    assert world.stock("MILK") == 10


def test_the_largest_batch_fits_the_route_body_limit(world):
    """100 orders of 100 lines at their longest pass the body limit (1 MiB elsewhere) and
    the checks; this central was never restored, so it answers 409 and does nothing."""
    lines = [
        {"sku": f"{n:02d}" + "S" * 62, "quantity": 10_000, "unit_price": "9999999999.99"}
        for n in range(100)
    ]
    batch = [
        make_sale(idempotency_key="k" * 120 + f"{n:08d}", lines=None) | {"lines": lines}
        for n in range(100)
    ]

    response = world.recover(*batch)

    assert len(response.request.content) > 1024 * 1024
    assert response.status_code == 409, response.text[:300]


# --- taken again -----------------------------------------------------------------------------


def test_a_lost_sale_is_taken_again_with_its_id_time_and_unit_prices(world):
    sale = make_sale(lines={"MILK": 2, "BREAD": 1})
    world.restored()

    answer = world.recover(sale)
    [item] = answer.json()["items"]

    assert answer.json()["epoch"] == 2
    assert (item["outcome"], item["code"], item["message"]) == ("recovered", None, None)
    order = item["order"]
    assert (order["id"], order["created_at"]) == (sale["id"], sale["created_at"])
    assert order["status"] == "confirmed" and order["created_by"] == "store:store-1"
    assert order["recovered_at"] is not None and order["review"] is None
    assert [line["unit_price"] for line in order["lines"]] == ["1.75", "1.75"]
    assert order["total"] == "5.25"
    assert (world.stock("MILK"), world.stock("BREAD")) == (8, 4)
    ledger = world.movements(sale["id"])
    assert sorted((m.sku, m.delta, m.reason, m.note) for m in ledger) == [
        ("BREAD", -1, "order", "recovered"),
        ("MILK", -2, "order", "recovered"),
    ]
    shown = world.h.call("GET", f"/api/v1/orders/{sale['id']}", world.store)
    assert shown == order


def test_a_retry_of_the_same_batch_is_all_present_and_sells_nothing_more(world):
    batch = [make_sale(), make_sale(lines={"BREAD": 2})]
    world.restored()
    first = world.recovered(*batch)

    again = world.recovered(*batch)

    assert [i["outcome"] for i in first] == ["recovered", "recovered"]
    assert [i["outcome"] for i in again] == ["present", "present"]
    assert [i["order"] for i in again] == [i["order"] for i in first]
    assert (world.stock("MILK"), world.stock("BREAD")) == (8, 3)
    assert len(world.movements(batch[0]["id"])) == 1


def test_a_sale_central_holds_is_present_and_not_sold_again(world):
    order = world.buy("kept-1", MILK=3)
    world.restored()

    [item] = world.recovered(as_sent(order, "kept-1"))

    assert item["outcome"] == "present"
    assert item["order"]["id"] == order["id"] and item["order"]["recovered_at"] is None
    assert world.stock("MILK") == 7


def test_a_held_sale_the_store_holds_cancelled_is_cancelled_and_its_stock_comes_back(world):
    order = world.buy("kept-2", MILK=3)
    world.restored()
    sent = as_sent(order, "kept-2", cancelled_at=moment(utcnow()))

    [item] = world.recovered(sent)

    assert item["outcome"] == "present"
    assert item["order"]["status"] == "cancelled"
    assert world.stock("MILK") == 10
    with world.h.central.db.connection_context():
        updates = Outbox.select().where(Outbox.topic == "order-updated", Outbox.key == order["id"])
        assert updates.count() == 1


def test_a_lost_cancelled_sale_is_recorded_cancelled_and_moves_no_stock(world):
    cancelled_at = utcnow() - timedelta(minutes=1)
    sale = make_sale(cancelled_at=moment(cancelled_at))
    world.restored()

    [item] = world.recovered(sale)

    assert item["outcome"] == "recovered"
    order = item["order"]
    assert order["status"] == "cancelled" and order["cancelled_at"] == moment(cancelled_at)
    assert order["lines"][0]["stock"] == {"quantity": 10, "stock_version": 1}
    assert world.stock("MILK") == 10 and world.movements(sale["id"]) == []


# --- left for review -------------------------------------------------------------------------


def test_a_sale_whose_stock_was_sold_meanwhile_is_unrecovered_and_kept_for_review(world):
    sale = make_sale(lines={"BREAD": 7, "MILK": 1})
    world.restored()

    [item] = world.recovered(sale)
    [again] = world.recovered(sale)

    assert (item["outcome"], item["code"]) == ("unrecovered", "stock.insufficient")
    order = item["order"]
    assert order["status"] == "unrecovered" and order["recovered_at"] is None
    assert order["review"]["code"] == "stock.insufficient"
    assert order["review"]["details"] == {
        "lines": [{"sku": "BREAD", "requested": 7, "available": 5}]
    }
    assert [line["stock"]["quantity"] for line in order["lines"]] == [5, 10]
    assert (world.stock("BREAD"), world.stock("MILK")) == (5, 10)
    assert world.movements(sale["id"]) == []
    assert (again["outcome"], again["code"], again["order"]) == (
        "unrecovered",
        "stock.insufficient",
        order,
    )


@pytest.mark.parametrize(
    ("lines", "code"), [({"GONE": 1}, "order.sku_unknown"), ({"OLD": 1}, "order.sku_inactive")]
)
def test_a_sale_of_a_sku_not_for_sale_is_unrecovered(world, lines, code):
    sale = make_sale(lines=lines)
    world.restored()

    [item] = world.recovered(sale)

    assert (item["outcome"], item["code"]) == ("unrecovered", code)
    assert item["order"]["review"]["details"]["skus"] == list(lines)
    stock = item["order"]["lines"][0]["stock"]
    assert stock == ({"quantity": 0, "stock_version": 0} if code == "order.sku_unknown" else
                     {"quantity": 4, "stock_version": 1})  # fmt: skip
    assert world.stock("OLD") == 4


def test_only_sales_within_the_restores_window_are_taken_again(world):
    backup_at = utcnow() - timedelta(hours=3)
    too_old = make_sale(ago=timedelta(hours=4, minutes=1))
    just_before_the_backup = make_sale(ago=timedelta(hours=3, minutes=30))
    world.restored(backup_at)
    after_the_restore = make_sale(ago=-timedelta(minutes=1))

    items = world.recovered(too_old, just_before_the_backup, after_the_restore)

    assert [(i["outcome"], i["code"]) for i in items] == [
        ("unrecovered", "recovery.outside_window"),
        ("recovered", None),
        ("unrecovered", "recovery.outside_window"),
    ]
    assert items[0]["order"]["review"]["details"]["earliest"] == moment(
        backup_at - timedelta(hours=1)
    )
    assert world.stock("MILK") == 8


# --- conflicts -------------------------------------------------------------------------------


def test_a_key_holding_another_sale_or_an_id_taken_is_a_conflict_and_writes_nothing(world):
    held = world.buy("kept-3", MILK=1)
    others = world.h.call(
        "POST",
        "/api/v1/orders",
        {**world.other, "Idempotency-Key": "theirs"},
        json={"lines": [{"sku": "BREAD", "quantity": 1}]},
    )
    world.restored()
    other_lines = make_sale(idempotency_key="kept-3", lines={"MILK": 2})
    id_taken = make_sale(id=others["id"])

    items = world.recovered(other_lines, id_taken)

    assert [(i["outcome"], i["code"], i["order"]) for i in items] == [
        ("conflict", "idempotency.mismatch", None),
        ("conflict", "order.id_taken", None),
    ]
    with world.h.central.db.connection_context():
        assert Order.select().count() == 2
        assert Order.get(Order.idempotency_key == "kept-3").id == held["id"]
    assert (world.stock("MILK"), world.stock("BREAD")) == (9, 4)


# --- review: list, metric, close -------------------------------------------------------------


def test_unrecovered_orders_are_listed_counted_and_closed_by_an_admin_without_stock(world):
    short = make_sale(lines={"BREAD": 9})
    taken = make_sale()
    world.restored()
    world.recovered(short, taken)

    listed = world.h.call("GET", "/api/v1/orders", world.admin, params={"status": "unrecovered"})
    own = world.h.call("GET", "/api/v1/orders", world.store, params={"status": "unrecovered"})
    metrics = world.h.client.get("/metrics").text
    by_store = world.h.client.post(f"/api/v1/orders/{short['id']}/cancel", headers=world.store)
    closed = world.h.call("POST", f"/api/v1/orders/{short['id']}/cancel", world.admin)

    assert [o["id"] for o in listed["items"]] == [short["id"]] == [o["id"] for o in own["items"]]
    assert "invctl_orders_unrecovered 1.0" in metrics
    assert 'invctl_orders_recovered_total{outcome="unrecovered"} 1.0' in metrics
    assert 'invctl_orders_recovered_total{outcome="recovered"} 1.0' in metrics
    assert by_store.status_code == 403, by_store.text
    assert closed["status"] == "cancelled" and closed["review"]["code"] == "stock.insufficient"
    assert world.stock("BREAD") == 5 and world.movements(short["id"]) == []
    assert "invctl_orders_unrecovered 0.0" in world.h.client.get("/metrics").text


def test_an_unrecovered_order_is_not_a_sale_in_the_report(world):
    world.restored()
    world.recovered(make_sale(lines={"BREAD": 9}))

    report = world.h.call("GET", "/api/v1/reports/sales", world.admin, params={"by": "sku"})

    assert report["rows"] == [] and report["keys"] == 0
    assert report["totals"]["orders"] == 0 and report["cancelled"]["orders"] == 0


# --- refusals --------------------------------------------------------------------------------


def test_only_a_stores_key_may_send_sales_back(world):
    world.restored()

    response = world.recover(make_sale(), key=world.admin)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "auth.forbidden"


def _malformed(sale: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    if field.startswith("lines."):
        return {**sale, "lines": [{**sale["lines"][0], field.removeprefix("lines."): value}]}
    return {**sale, field: value}


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("id", "not-a-uuid", "id"),
        ("id", "D460B582-513A-4625-A0C8-37F818BB1E62", "id"),  # upper case: refused
        ("idempotency_key", "has space", "idempotency_key"),
        ("created_at", "2026-11-29T10:00:00", "created_at"),
        ("created_at", "0001-01-01T00:00:00+01:00", "created_at"),
        ("cancelled_at", "yesterday", "cancelled_at"),
        ("lines", [], "lines"),
        ("lines.unit_price", "1.234", "lines.0.unit_price"),
        ("lines.unit_price", 1.5, "lines.0.unit_price"),
        ("lines.unit_price", "10000000000", "lines.0.unit_price"),
        ("lines.quantity", 0, "lines"),
        ("lines.colour", "red", "lines.0.colour"),
        ("note", "hi", "note"),
    ],
)
def test_a_malformed_order_refuses_the_whole_batch_naming_its_field_and_index(
    world, field, value, named
):
    world.restored()
    good = make_sale()

    response = world.recover(good, _malformed(make_sale(), field, value))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "request.invalid"
    assert (error["details"]["field"], error["details"]["index"]) == (named, 1)
    with world.h.central.db.connection_context():
        assert Order.select().count() == 0


@pytest.mark.parametrize("count", [0, 101])
def test_a_batch_of_no_order_or_over_a_hundred_is_refused(world, count):
    world.restored()

    response = world.recover(*[make_sale() for _ in range(count)])

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "orders"


# --- races -----------------------------------------------------------------------------------


def test_the_same_batch_sent_twice_at_once_sells_each_sale_once(world):
    batch = [make_sale(lines={"MILK": 1}) for _ in range(5)] + [make_sale(lines={"BREAD": 1})]
    world.restored()
    answers: list[list[dict[str, Any]]] = []
    with served(world.h) as url:
        start = threading.Barrier(2)

        def send() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                start.wait()
                response = client.post(ROUTE, headers=world.store, json={"orders": batch})
                assert response.status_code == 200, response.text
                answers.append(response.json()["items"])

        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(answers) == 2
    for number, sale in enumerate(batch):
        outcomes = Counter(answer[number]["outcome"] for answer in answers)
        assert outcomes == Counter({"recovered": 1, "present": 1}), (sale["id"], outcomes)
    assert (world.stock("MILK"), world.stock("BREAD")) == (5, 4)
    with world.h.central.db.connection_context():
        assert Movement.select().where(Movement.note == "recovered").count() == 6


def test_a_recover_racing_the_stores_own_order_with_the_same_key_sells_once(world):
    """The agent replays a sale with POST /orders while it also sends it back: one order."""
    world.restored()
    keys = [uuid.uuid4().hex for _ in range(4)]
    sales = [make_sale(idempotency_key=key, lines={"MILK": 1}) for key in keys]
    statuses: list[int] = []
    with served(world.h) as url:
        start = threading.Barrier(2)

        def recover() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                start.wait()
                response = client.post(ROUTE, headers=world.store, json={"orders": sales})
                statuses.append(response.status_code)

        def place() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                start.wait()
                for key in keys:
                    response = client.post(
                        "/api/v1/orders",
                        headers={**world.store, "Idempotency-Key": key},
                        json={"lines": [{"sku": "MILK", "quantity": 1}]},
                    )
                    statuses.append(response.status_code)

        threads = [threading.Thread(target=recover), threading.Thread(target=place)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(statuses) == [200, 201, 201, 201, 201]
    assert world.stock("MILK") == 6
    with world.h.central.db.connection_context():
        assert Order.select().where(Order.idempotency_key.in_(keys)).count() == 4
        assert OrderLine.select().count() == 4


# --- schema ----------------------------------------------------------------------------------


def test_migration_10_adds_the_recovery_columns_and_keeps_the_orders(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    up_to_nine = [m for m in migrations.MIGRATIONS if m[0] <= 9]
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        for version, name, step in up_to_nine:
            step(db)
            models.SchemaMigration.create(version=version, name=name)
        # orders as migration 2 made it before migration 10 was written
        db.execute_sql("DROP TABLE orders")
        db.execute_sql(
            "CREATE TABLE orders (seq INTEGER PRIMARY KEY"
            + (" AUTO_INCREMENT" if "mysql" in database_url else "")
            + ", id VARCHAR(36) NOT NULL, store_id VARCHAR(64) NOT NULL,"
            " status VARCHAR(16) NOT NULL, idempotency_key VARCHAR(128) NOT NULL,"
            " fingerprint VARCHAR(64) NOT NULL, created_by VARCHAR(100) NOT NULL,"
            " created_at DATETIME(6) NOT NULL, cancelled_at DATETIME(6), cancelled_by VARCHAR(100))"
        )
        db.execute_sql(
            "INSERT INTO orders (id, store_id, status, idempotency_key, fingerprint, created_by,"
            " created_at) VALUES ('o-1', 's', 'confirmed', 'k', 'f', 'u', '2026-01-01 00:00:00')"
        )

    assert migrations.migrate(db) == [v for v, _, _ in migrations.MIGRATIONS if v >= 10]

    with db.connection_context():
        kept = models.Order.get(models.Order.id == "o-1")
        assert (kept.status, kept.recovered_at, kept.review_code) == ("confirmed", None, None)
        assert {"recovered_at", "review_code", "review_message", "review_details"} <= {
            column.name for column in db.get_columns("orders")
        }
    assert migrations.migrate(db) == []
    db.close()
