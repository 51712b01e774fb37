"""Sales a store sends back after central was restored (`POST /orders/recover`): the shape of
each, checked for the whole batch before anything is done, and the window of time in which a
restore can have lost a sale."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from invwire.errors import WireError
from invwire.errors.central import InvalidInput, OutsideRecoveryWindow
from invwire.orders import Line, fingerprint, valid_lines
from invwire.rules import is_idempotency_key

MAX_ORDERS = 100
ORDER_FIELDS = frozenset({"id", "idempotency_key", "created_at", "cancelled_at", "lines"})
REQUIRED_FIELDS = ("id", "idempotency_key", "created_at", "lines")
LINE_FIELDS = frozenset({"sku", "quantity", "unit_price"})
# Central's own unit prices as it answered them: a decimal string, at most 2 places, under
# 10^10 (what the order_lines column holds).
UNIT_PRICE_REGEX = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
UNIT_PRICE = re.compile(UNIT_PRICE_REGEX)
MAX_UNIT_PRICE_TEXT = 13
MAX_MOMENT_TEXT = 40  # "2026-11-29T10:00:00.123456+00:00" is 32
UUID_TEXT = 36
# A sale committed shortly before the backup's snapshot began may still be missing from it.
BACKUP_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class HeldSale:
    """One sale as the store holds it: central's id, time and unit prices."""

    id: str
    idempotency_key: str
    created_at: datetime  # naive UTC, as central stores its times
    cancelled_at: datetime | None
    lines: list[Line]  # sorted by SKU, as valid_lines gives them
    unit_prices: dict[str, Decimal]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.lines)


def held_sales(raw: object) -> list[HeldSale]:
    """Every sale of the batch, or InvalidInput (`details.field`, `details.index`) for the
    first one malformed: then none is settled."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ORDERS:
        raise InvalidInput(f"orders is a list of 1 to {MAX_ORDERS} orders", field="orders")
    return [_sale(item, index) for index, item in enumerate(raw)]


def _invalid(index: int, field: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, **details, field=field, index=index)


def _sale(item: object, index: int) -> HeldSale:
    if not isinstance(item, dict):
        raise _invalid(index, "orders", "each order is an object")
    unknown = sorted(set(item) - ORDER_FIELDS, key=str)
    if unknown:
        raise _invalid(index, str(unknown[0])[:64], "unknown field")
    missing = [name for name in REQUIRED_FIELDS if name not in item]
    if missing:
        raise _invalid(index, missing[0], "required")
    sale_id = _order_id(item["id"], index)
    key = _key(item["idempotency_key"], index)
    created_at = _moment(item["created_at"], index, "created_at")
    cancelled = item.get("cancelled_at")
    cancelled_at = None if cancelled is None else _moment(cancelled, index, "cancelled_at")
    lines, prices = _lines(item["lines"], index)
    return HeldSale(sale_id, key, created_at, cancelled_at, lines, prices)


def _order_id(raw: object, index: int) -> str:
    if isinstance(raw, str) and _is_canonical_uuid(raw):
        return raw
    raise _invalid(index, "id", "id is central's order id: a UUID in 36 lower-case characters")


def _is_canonical_uuid(text: str) -> bool:
    """Central's ids are UUIDs in their 36-character lower-case form, and nothing else."""
    try:
        return len(text) == UUID_TEXT and str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _key(raw: object, index: int) -> str:
    if not is_idempotency_key(raw):
        raise _invalid(
            index, "idempotency_key", "an idempotency key is 1-128 printable ASCII characters"
        )
    return raw


def _moment(raw: object, index: int, field: str) -> datetime:
    """An ISO 8601 moment with its offset, as naive UTC."""
    message = f"{field} is an ISO 8601 moment with its offset, e.g. 2026-11-29T10:00:00+00:00"
    if not isinstance(raw, str) or len(raw) > MAX_MOMENT_TEXT:
        raise _invalid(index, field, message)
    try:
        moment = datetime.fromisoformat(raw)
        if moment.utcoffset() is None:
            raise ValueError("no offset")
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise _invalid(index, field, message) from None


def _lines(raw: object, index: int) -> tuple[list[Line], dict[str, Decimal]]:
    try:
        lines = valid_lines(raw)
    except WireError as refusal:
        # The line rules' own code (order.duplicate_line, sku.invalid, ...) goes in `cause`:
        # a malformed batch is request.invalid as a whole.
        shown = {k: v for k, v in refusal.details.items() if k not in ("field", "index")}
        raise _invalid(index, "lines", refusal.message, **shown, cause=refusal.code) from None
    assert isinstance(raw, list)  # valid_lines accepted it: a list of objects
    prices: dict[str, Decimal] = {}
    for number, line in enumerate(raw):
        unknown = sorted(set(line) - LINE_FIELDS, key=str)
        if unknown:
            raise _invalid(index, f"lines.{number}.{str(unknown[0])[:64]}", "unknown field")
        prices[line["sku"]] = _unit_price(line.get("unit_price"), index, number)
    return lines, prices


def _unit_price(raw: object, index: int, number: int) -> Decimal:
    if not isinstance(raw, str) or UNIT_PRICE.fullmatch(raw) is None:
        raise _invalid(
            index,
            f"lines.{number}.unit_price",
            "unit_price is a decimal string of at most 2 places under 10^10, e.g. 2.50",
        )
    return Decimal(raw)


@dataclass(frozen=True)
class RecoveryWindow:
    """When a sale the restored database lacks can have been placed: from the backup's time
    less BACKUP_SLACK (no lower bound when the backup's time is unknown, as after
    `central confirm-restore`) up to the restore. A sale outside it was not lost by the
    restore, so central does not take it on the store's word."""

    earliest: datetime | None
    latest: datetime

    @classmethod
    def of_epoch(
        cls, started_at: datetime, cause: str, backup_created_at: datetime | None
    ) -> RecoveryWindow:
        if cause == "restore" and backup_created_at is not None:
            return cls(backup_created_at - BACKUP_SLACK, started_at)
        return cls(None, started_at)

    def check(self, created_at: datetime) -> None:
        early = self.earliest is not None and created_at < self.earliest
        if early or created_at > self.latest:
            raise OutsideRecoveryWindow(
                created_at=_shown(created_at),
                earliest=_shown(self.earliest),
                latest=_shown(self.latest),
            )


def _shown(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=UTC).isoformat() if moment is not None else None
