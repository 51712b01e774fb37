"""Patterns and limits of the contract. `*_REGEX` strings are for schema declarations
(pydantic `pattern=`); the compiled forms and `is_*` predicates for code."""

from __future__ import annotations

import re
from typing import TypeGuard

SKU_REGEX = r"^[A-Z0-9][A-Z0-9._-]{0,63}$"
IDEMPOTENCY_KEY_REGEX = r"^[\x21-\x7e]{1,128}$"
REQUEST_ID_REGEX = r"^[A-Za-z0-9._-]{1,64}$"
STORE_ID_REGEX = r"^[a-z0-9][a-z0-9-]{0,63}$"

SKU = re.compile(SKU_REGEX)
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_REGEX)
REQUEST_ID = re.compile(REQUEST_ID_REGEX)
STORE_ID = re.compile(STORE_ID_REGEX)

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
MAX_EVENT_BYTES = 1024 * 1024
# Stock levels are 0..MAX_STOCK_QUANTITY; prices are below MAX_PRICE (so 999,999,999.99 at
# most, with two decimals). Central and the agent check against these.
MAX_STOCK_QUANTITY = 1_000_000_000
MAX_PRICE = 1_000_000_000


def _matches(pattern: re.Pattern[str], raw: object) -> TypeGuard[str]:
    # fullmatch: `$` alone would accept one trailing newline.
    return isinstance(raw, str) and pattern.fullmatch(raw) is not None


def is_sku(raw: object) -> TypeGuard[str]:
    return _matches(SKU, raw)


def is_idempotency_key(raw: object) -> TypeGuard[str]:
    return _matches(IDEMPOTENCY_KEY, raw)


def is_request_id(raw: object) -> TypeGuard[str]:
    return _matches(REQUEST_ID, raw)


def is_store_id(raw: object) -> TypeGuard[str]:
    return _matches(STORE_ID, raw)
