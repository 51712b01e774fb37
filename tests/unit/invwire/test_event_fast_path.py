"""The fast path of parse_record only ever accepts what the slow path accepts, as the same
event: for each record of a corpus of valid records and their damaged variants, it either
leaves the record to the slow path (None) or gives exactly the slow path's answer."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from invwire.errors import PoisonRecord
from invwire.events import _FAST_PATHS, parse_record, parse_slowly
from invwire.topics import TOPIC_INVENTORY, TOPIC_PRODUCT
from tests.support.agent_fakes import product_data, stock_data

EVENT_ID = "88417406-71bd-4555-88c7-9b5515bb48d3"
STOCK = {
    "event_id": EVENT_ID,
    "type": "stock.changed",
    "schema": 1,
    "occurred_at": "2026-11-29T10:00:00+00:00",
    # an order id set: an odd value in its place must then be told from a valid one
    "data": stock_data(order_id="5f0c9a1e-0000-4000-8000-000000000001"),
}
PRODUCT = {
    "event_id": EVENT_ID,
    "type": "product.updated",
    "schema": 1,
    "occurred_at": "2026-11-29T10:00:00.123456+01:00",
    "data": product_data(),
}
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.0, 2**63, -(2**63), "", " ", "x", "MILK-1L\n", "milk",
    "é", "\u202e", "\x07", "\ud800", "NaN", "1e3", "-0.5", "Infinity", [], {},
]  # fmt: skip


def variants(envelope: dict[str, Any]) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """(label, key, value): the record, then each field removed or given an odd value."""
    key = envelope["data"]["sku"].encode()
    yield "valid", key, _dumps(envelope)
    yield "tombstone", key, None
    yield "no key", None, _dumps(envelope)
    yield "other key", b"BREAD", _dumps(envelope)
    yield "raw non-ascii", key, json.dumps(envelope, ensure_ascii=False).encode() + b" \xc3\xa9"
    yield "bad utf-8", key, _dumps(envelope)[:-1] + b',"x":"\xff"}'
    yield "repeated key", key, _dumps(envelope)[:-1] + b',"schema":2}'
    yield "extra field", key, _dumps({**envelope, "extra": {"nested": [1.5e400]}})
    for path in _fields(envelope):
        yield f"{path} removed", key, _dumps(_set(envelope, path, _REMOVE))
        for odd in ODD_VALUES:
            yield f"{path}={odd!r}", key, _dumps(_set(envelope, path, odd))


@pytest.mark.parametrize(
    ("topic", "envelope"),
    [(TOPIC_INVENTORY, STOCK), (TOPIC_PRODUCT, PRODUCT)],
    ids=["stock", "product"],
)
def test_the_fast_path_gives_the_slow_paths_answer_or_leaves_the_record_to_it(topic, envelope):
    quick_path = _FAST_PATHS[topic]
    taken = declined = 0
    for label, key, value in variants(envelope):
        quick = quick_path(key, value)
        try:
            slow = parse_slowly(topic, key, value)
        except PoisonRecord as exc:
            assert quick is None, (
                f"{label}: the fast path accepted what the slow path refused ({exc.reason})"
            )
            with pytest.raises(type(exc)):
                parse_record(topic, key, value)
            declined += 1
            continue
        assert quick is None or quick == slow, label
        taken += quick is not None
    assert taken > 10 and declined > 50, (taken, declined)


def test_the_fast_path_takes_central_s_own_records():
    for topic, envelope in ((TOPIC_INVENTORY, STOCK), (TOPIC_PRODUCT, PRODUCT)):
        key, value = envelope["data"]["sku"].encode(), _dumps(envelope)
        quick = _FAST_PATHS[topic](key, value)
        assert quick is not None and quick == parse_slowly(topic, key, value)


_REMOVE = object()


def _fields(envelope: dict[str, Any]) -> list[tuple[str, ...]]:
    top = [(name,) for name in envelope if name != "data"]
    return top + [("data",)] + [("data", name) for name in envelope["data"]]


def _set(envelope: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(envelope))
    target = copy
    for name in path[:-1]:
        target = target[name]
    if value is _REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


def _dumps(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()
