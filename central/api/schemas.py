"""The shapes of central's HTTP answers, for FastAPI's `response_model` and `/openapi.json`,
and the documented contract patterns of the values it receives.

The use cases build these bodies as dicts; the models only type and document them, so every
field keeps the type the use case gives it: timestamps and prices stay the strings the use
cases format (`as_utc`, `f"{price:.2f}"`), never re-encoded by pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonDict

from central.services.principal import USER_ROLES, Role
from invwire.rules import IDEMPOTENCY_KEY_REGEX, SKU_REGEX, STORE_ID_REGEX

Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-11-29T10:00:00+00:00"])
]
Money = Annotated[
    str,
    Field(
        json_schema_extra={"format": "decimal"}, examples=["1.25"], description="decimal, 2 places"
    ),
]


def pattern_doc(pattern: str) -> JsonDict:
    """A `pattern` shown in the schema but not enforced by validation: the use case checks the
    value, so a bad one keeps its own error code and message (e.g. 422 `sku.invalid`)."""
    return {"pattern": pattern}


# Received values whose contract pattern is documented (see pattern_doc), not validated here.
SkuStr = Annotated[str, Field(json_schema_extra=pattern_doc(SKU_REGEX))]
StoreIdStr = Annotated[str, Field(json_schema_extra=pattern_doc(STORE_ID_REGEX))]
IdempotencyKeyStr = Annotated[str, Field(json_schema_extra=pattern_doc(IDEMPOTENCY_KEY_REGEX))]
UserRoleStr = Annotated[str, Field(json_schema_extra={"enum": [r.value for r in USER_ROLES]})]


# --- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable dotted code", examples=["stock.insufficient"])
    message: str
    details: dict[str, Any] = Field(description="the code's own fields, e.g. `lines`")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


ERROR_CODES = {
    400: "`request.malformed` (the body is not JSON) or `idempotency.key_required`",
    401: "`auth.required` (no credentials) or `auth.invalid` (wrong, expired or revoked)",
    403: "`auth.forbidden`: the caller may not do this",
    404: "`not_found` or the entity's own code, e.g. `product.not_found`",
    409: "the entity's `*.exists`, `stock.negative` or `stock.insufficient`",
    422: "`request.invalid` (`details.errors` lists each field) or the field's own code, "
    "e.g. `sku.invalid`, `quantity.invalid`",
    503: "`database.unavailable` or, when a store key is issued, `kafka.unavailable` (nothing "
    "was created): try again shortly",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` declaring each status with the shared error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_CODES[status]}
        for status in sorted(statuses)
    }


# --- health and auth -------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, Any] = Field(description="`database` (`ok` or the error), `relay`")


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds")


class Me(BaseModel):
    subject: str = Field(description="the username, or the store id for an API key")
    role: Role
    store_id: str | None


# --- users and stores ------------------------------------------------------------------------


class User(BaseModel):
    id: int
    username: str
    role: Role
    store_id: str | None


class UserList(BaseModel):
    items: list[User]


KafkaUsername = Annotated[
    str | None,
    Field(
        description="the key's Kafka (SCRAM) user, whose password is the key; null when "
        "central does not provision Kafka identities (plaintext development)"
    ),
]


class StoreKey(BaseModel):
    id: str = Field(description="the store's id")
    api_key: str = Field(description="shown this once only")
    key_id: int
    kafka_username: KafkaUsername


class NewStore(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="shown this once only")
    key_id: int
    kafka_username: KafkaUsername


class Store(BaseModel):
    id: str
    name: str
    active: bool
    active_keys: int
    created_at: Timestamp


class StoreList(BaseModel):
    items: list[Store]


class StoreSync(BaseModel):
    store_id: str
    name: str
    active: bool
    group: str = Field(description="the store agent's Kafka consumer group")
    lag: int | None = Field(description="null when Kafka did not say")
    last_seen: Timestamp | None
    seconds_since_seen: float | None
    reported: dict[str, Any] = Field(description="the fields of the last heartbeat")


class Fleet(BaseModel):
    kafka: str = Field(examples=["ok", "not configured", "unavailable: NoBrokersAvailable"])
    items: list[StoreSync]


# --- catalog and stock -----------------------------------------------------------------------


class Category(BaseModel):
    id: int
    name: str
    version: int


class CategoryList(BaseModel):
    items: list[Category]


class Product(BaseModel):
    sku: str
    name: str
    price: Money
    category_id: int
    description: str
    active: bool
    version: int
    updated_at: Timestamp


class ProductList(BaseModel):
    items: list[Product]


class StockLevel(BaseModel):
    sku: str
    quantity: int
    stock_version: int
    updated_at: Timestamp


class Movement(BaseModel):
    id: int
    at: Timestamp
    actor: str = Field(examples=["user:alice", "store:store-042"])
    reason: str = Field(examples=["order", "cancel", "adjust", "set", "import", "create"])
    delta: int
    quantity: int = Field(description="after the change")
    stock_version: int
    order_id: str | None
    note: str


class MovementList(BaseModel):
    items: list[Movement]


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int


# --- orders ----------------------------------------------------------------------------------


class LineStock(BaseModel):
    quantity: int
    stock_version: int


class OrderLine(BaseModel):
    sku: str
    quantity: int
    unit_price: Money
    stock: LineStock = Field(description="the SKU's stock right after this order was placed")


class Order(BaseModel):
    id: str
    store_id: str
    status: Literal["confirmed", "cancelled"]
    created_at: Timestamp
    created_by: str = Field(examples=["store:store-042", "user:sam"])
    cancelled_at: Timestamp | None
    total: Money
    lines: list[OrderLine]


class OrderPage(BaseModel):
    items: list[Order]
    next_before: int | None = Field(description="pass as `before` for the next page")
