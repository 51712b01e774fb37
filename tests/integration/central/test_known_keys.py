"""Orders from a store key central has seen valid skip the key's lookup, and the order's own
transaction refuses a key revoked (or a store deactivated) anywhere: no staleness window."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from central.models import ApiKey, Order, Stock, Store, StoreRefusal
from tests.support.central_harness import Harness, running_central

SKU = "KNOWN-1"


@pytest.fixture
def shop(database_url: str) -> Iterator[tuple[Harness, str]]:
    with running_central(database_url) as h:
        admin = h.admin()
        category = h.call("POST", "/api/v1/categories", admin, json={"name": "Known"})
        product = {"sku": SKU, "name": SKU, "price": "1.00", "category_id": category["id"]}
        h.call("POST", "/api/v1/products", admin, json=product)
        h.call("PUT", f"/api/v1/stock/{SKU}", admin, json={"quantity": 100})
        store = h.call("POST", "/api/v1/stores", admin, json={"id": "known-1", "name": "Known"})
        yield h, store["api_key"]


def order(h: Harness, key: str, lines: Any = None, idem: str | None = None) -> Any:
    return h.client.post(
        "/api/v1/orders",
        json={"lines": lines if lines is not None else [{"sku": SKU, "quantity": 1}]},
        headers={"X-API-Key": key, "Idempotency-Key": idem or uuid.uuid4().hex},
    )


def key_lookups(records: list[logging.LogRecord]) -> int:
    """Statements that look a key up on their own (an order's INSERT ... SELECT is not one)."""
    texts = [str(r.msg[0]) if isinstance(r.msg, tuple) else str(r.msg) for r in records]
    return sum(1 for t in texts if t.startswith("SELECT") and "store_api_keys" in t)


def revoke_elsewhere(h: Harness) -> None:
    """As another central process would: straight in the database, this process not told."""
    with h.central.db.connection_context():
        ApiKey.update(revoked_at=datetime.now(UTC).replace(tzinfo=None)).execute()


def state(h: Harness) -> tuple[int, int]:
    with h.central.db.connection_context():
        return Order.select().count(), Stock.get(Stock.sku == SKU).quantity


def test_a_known_key_is_looked_up_once(shop, caplog) -> None:
    h, key = shop
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        for _ in range(3):
            assert order(h, key).status_code == 201
    assert key_lookups(caplog.records) == 1
    assert len(h.central.known_keys) == 1


def test_a_key_revoked_elsewhere_is_refused_on_its_next_order(shop) -> None:
    h, key = shop
    assert order(h, key).status_code == 201
    revoke_elsewhere(h)
    before = state(h)

    refused = order(h, key)

    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "auth.invalid"
    assert state(h) == before  # no order row, no unit taken
    assert len(h.central.known_keys) == 0
    with h.central.db.connection_context():
        assert StoreRefusal.get_or_none(StoreRefusal.store_id == "known-1") is not None


def test_a_store_deactivated_elsewhere_is_refused_on_its_next_order(shop) -> None:
    h, key = shop
    assert order(h, key).status_code == 201
    with h.central.db.connection_context():
        Store.update(active=False).where(Store.id == "known-1").execute()
    before = state(h)

    refused = order(h, key)

    assert refused.status_code == 401, refused.text
    assert state(h) == before


def test_a_revoked_known_key_learns_nothing_of_its_order(shop) -> None:
    """Bad lines and a replayed Idempotency-Key get 401, as they did when the key was looked
    up before anything else."""
    h, key = shop
    idem = uuid.uuid4().hex
    assert order(h, key, idem=idem).status_code == 201
    revoke_elsewhere(h)

    bad_lines = order(h, key, lines=[{"sku": SKU, "quantity": 1}, {"sku": SKU, "quantity": 1}])
    assert bad_lines.status_code == 401, bad_lines.text
    assert order(h, key).status_code == 401
    assert len(h.central.known_keys) == 0

    h.central.known_keys.add(known_hash(h), "known-1")  # known again, then replayed
    replayed = order(h, key, idem=idem)
    assert replayed.status_code == 401, replayed.text


def test_a_known_key_still_valid_gets_its_refusals_as_before(shop) -> None:
    h, key = shop
    assert order(h, key).status_code == 201
    too_many = order(h, key, lines=[{"sku": SKU, "quantity": 1000}])
    assert too_many.status_code == 409, too_many.text
    assert too_many.json()["error"]["code"] == "stock.insufficient"
    assert len(h.central.known_keys) == 1  # looked up again after the refusal, and kept


def known_hash(h: Harness) -> str:
    with h.central.db.connection_context():
        return str(ApiKey.get().key_hash)
