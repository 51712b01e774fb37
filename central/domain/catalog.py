"""Catalog rules: what a valid SKU, name and price are."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from central.errors import InvalidName, InvalidPrice, InvalidSku, NameTooLong
from invwire.rules import is_sku

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_PRICE = Decimal("1000000000")


def valid_sku(raw: str) -> str:
    if not is_sku(raw):
        raise InvalidSku(sku=str(raw)[:80])
    return raw


def valid_name(raw: str, *, limit: int = MAX_NAME, field: str = "name") -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not name:
        raise InvalidName(f"{field} must not be empty", field=field)
    if len(name) > limit:
        raise NameTooLong(f"{field} is longer than {limit} characters", field=field, limit=limit)
    return name


def valid_description(raw: str | None) -> str:
    text = (raw or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise NameTooLong(
            f"description is longer than {MAX_DESCRIPTION} characters", field="description"
        )
    return text


def valid_price(raw: object) -> Decimal:
    if isinstance(raw, bool) or raw is None:
        raise InvalidPrice(price=str(raw))
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise InvalidPrice(price=str(raw)[:40]) from None
    if not price.is_finite() or price < 0 or price >= MAX_PRICE:
        raise InvalidPrice(price=str(raw)[:40])
    if price != price.quantize(Decimal("0.01")):
        raise InvalidPrice("a price has at most two decimal places", price=str(raw)[:40])
    return price.quantize(Decimal("0.01"))
