"""Catalog rules: what a valid SKU, name and price are."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from invwire.errors.central import InvalidName, InvalidPrice, InvalidSku, NameTooLong
from invwire.rules import MAX_PRICE as RULES_MAX_PRICE
from invwire.rules import is_sku
from invwire.text import first_refused_char

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_PRICE = Decimal(RULES_MAX_PRICE)  # the contract's bound (invwire.rules), exact


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
    return clean_text(raw, name, field)


def valid_description(raw: str | None) -> str:
    if raw is not None and not isinstance(raw, str):
        raise InvalidName("description must be text", field="description")
    text = (raw or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise NameTooLong(
            f"description is longer than {MAX_DESCRIPTION} characters", field="description"
        )
    return clean_text(raw or "", text, "description")


def clean_text(raw: str, text: str, field: str) -> str:
    """`text` (`raw` trimmed) when it holds no control, format or surrogate character: names
    travel to every replica and onto terminals (invwire.text)."""
    index = refused_index(raw, text)
    if index is None:
        return text
    raise InvalidName(
        f"{field} holds a control or format character at index {index}", field=field, index=index
    )


def refused_index(raw: str, text: str) -> int | None:
    """Where the first character `text` (`raw` trimmed) may not hold is in `raw`, else None."""
    index = first_refused_char(text)
    return None if index is None else index + len(raw) - len(raw.lstrip())


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
