"""The shapes of central's HTTP answers, for FastAPI's `response_model` and `/openapi.json`,
and the documented contract patterns of the values it receives.

The use cases build these bodies as dicts; the models only type and document them, so every
field keeps the type the use case gives it: timestamps and prices stay the strings the use
cases format (`as_utc`, `f"{price:.2f}"`), never re-encoded by pydantic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
)
from pydantic.json_schema import JsonDict

from central.services.fleet import StoreState
from central.services.principal import USER_ROLES, Role
from invwire.events import MAX_INTEGER
from invwire.rules import IDEMPOTENCY_KEY_REGEX, MAX_PRICE, SKU_REGEX, STORE_ID_REGEX
from invwire.text import is_clean_text

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


def range_doc(low: int, high: int) -> JsonDict:
    """Bounds shown in the schema but checked by the use case, like pattern_doc."""
    return {"minimum": low, "maximum": high}


# --- what central receives -------------------------------------------------------------------


class RequestBody(BaseModel):
    """A JSON body central receives. A field it does not know is refused (422
    `request.invalid`, the field named in `details.errors`): a misspelt field would otherwise
    be dropped without a word."""

    model_config = ConfigDict(extra="forbid")


# Ids, cursors and counts fit the databases' signed 64-bit integers: a larger number would
# make the driver fail (SQLite's OverflowError) instead of finding nothing.
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_INTEGER)]
Cursor = Annotated[int, Field(ge=0, le=MAX_INTEGER, description="0: from the newest")]
Count = Annotated[int, Field(ge=0, le=MAX_INTEGER)]


def _as_naive_utc(moment: datetime) -> datetime:
    """The stored form of a moment (naive UTC); one beyond years 1-9999 in UTC is refused."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("the moment is outside the years 1 to 9999 in UTC") from None


def _clean(text: str) -> str:
    if not is_clean_text(text):
        raise ValueError("control and format characters are not allowed")
    return text


UtcMoment = Annotated[datetime, AfterValidator(_as_naive_utc)]
CleanStr = Annotated[str, AfterValidator(_clean)]

MAX_PRICE_TEXT = 32  # "999999999.99" is 12; room for zeros and spaces, not for a novel


def _short_price(raw: object) -> object:
    if isinstance(raw, str) and len(raw) > MAX_PRICE_TEXT:
        raise ValueError(f"a price is at most {MAX_PRICE_TEXT} characters")
    return raw


# A price as received: a JSON number or a decimal string. The use case checks its value
# (central.domain.catalog.valid_price), so a bad one keeps its code, 422 price.invalid.
PriceIn = Annotated[
    Decimal | str,
    BeforeValidator(_short_price),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_PRICE},
                {"type": "string", "format": "decimal", "maxLength": MAX_PRICE_TEXT},
            ],
            "examples": ["1.25"],
        }
    ),
]


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
    413: "`request.too_large`: the body is larger than the limit in `details.limit_bytes`; "
    "nothing was read past it",
    422: "`request.invalid` (`details.errors` lists each field) or the field's own code, "
    "e.g. `sku.invalid`, `quantity.invalid`",
    429: "`auth.throttled`: too many failed logins; `Retry-After` (and `details.retry_after`) "
    "says how many seconds to wait",
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
    checks: dict[str, Any] = Field(
        description="`database`: `ok` or `unavailable`; `relay`: `leader` (this process "
        "publishes), `standby` (another relay holds the lease, or none yet), `ok` (this "
        "process runs no relay), `failing` (an event has waited longer than "
        "relay_failing_after_seconds: no relay publishes), `behind_kafka` (this process's relay "
        "found the database behind what central already published, and publishes nothing "
        "until a restore is confirmed) or `off` (no Kafka configured); a failing relay leaves "
        "the answer 200. The reasons are in the log only"
    )


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
    active: bool = Field(description="false once disabled: it can neither log in nor act")


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


# --- the lives of users and stores -----------------------------------------------------------


class RoleChange(RequestBody):
    # Documented, not validated here: a bad role keeps its own code, 422 role.invalid.
    role: Annotated[UserRoleStr, Field(max_length=16)]
    store_id: Annotated[
        StoreIdStr | None, Field(max_length=64, description="staff only: the store it sells for")
    ] = None


class PasswordReset(RequestBody):
    password: str = Field(max_length=1024, description="8-1024 characters")


class PasswordChange(RequestBody):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024, description="8-1024 characters")


class DeactivatedStore(Store):
    revoked_keys: int = Field(description="how many of its API keys this request revoked")


class HeartbeatAnswer(BaseModel):
    server_time: Timestamp = Field(
        description="central's time as it answers, to the millisecond: the agent estimates "
        "its clock's offset from it",
        examples=["2026-11-29T10:00:00.123+00:00"],
    )


class LastHeartbeat(BaseModel):
    store_id: str
    last_seen: Timestamp | None = Field(description="null: never heard from")
    reported: dict[str, Any] = Field(
        description="the fields of the last heartbeat, e.g. offline_queue and replica_id"
    )


class FleetProblem(BaseModel):
    code: str = Field(examples=["duplicate_agents"])
    message: str
    instance_ids: list[str] = Field(description="duplicate_agents: the live agent processes")


class AgentInstanceSync(BaseModel):
    instance_id: str
    first_seen: Timestamp = Field(description="its first heartbeat: it runs since then")
    last_seen: Timestamp
    seconds_since_seen: float
    live: bool = Field(description="heartbeated within two of its intervals")
    ready: bool | None = Field(description="as its last heartbeat said")


class StoreSync(BaseModel):
    store_id: str
    name: str
    active: bool
    group: str = Field(description="the store agent's Kafka consumer group")
    lag: int | None = Field(description="null when Kafka did not say")
    last_seen: Timestamp | None
    seconds_since_seen: float | None
    ready: bool | None = Field(
        description="the store is in state `ok` (a live agent says it is ready, no problem "
        "stands); null: never heard from"
    )
    state: StoreState = Field(description="the store's health in one word (docs/wire.md)")
    healthy: bool = Field(description="state `ok`, or `inactive` (deactivated on purpose)")
    last_refused: Timestamp | None = Field(
        description="when central last refused one of its keys (revoked, or the store "
        "deactivated), recorded at most every 5 s; null: never"
    )
    problems: list[FleetProblem] = Field(description="`duplicate_agents`: two live agents")
    instances: list[AgentInstanceSync] = Field(
        description="the agent processes heard from in the last hour, newest first"
    )
    reported: dict[str, Any] = Field(description="the fields of the last heartbeat")


class Fleet(BaseModel):
    kafka: str = Field(examples=["ok", "not configured", "unavailable: NoBrokersAvailable"])
    lag_as_of: Timestamp | None = Field(
        default=None,
        description="when central read the lags (or failed to) from Kafka: a reading is "
        "kept 2 s for every request; null: Kafka is not configured",
    )
    items: list[StoreSync]


# --- catalog and stock -----------------------------------------------------------------------


class Category(BaseModel):
    id: int
    name: str
    version: int


class CategoryList(BaseModel):
    items: list[Category]
    next_after: int | None = Field(
        default=None, description="pass as `after` for the next page; null: there is no more"
    )


class Product(BaseModel):
    sku: str
    name: str
    price: Money
    category_id: int
    description: str
    active: bool
    version: int
    updated_at: Timestamp


class ListedProduct(Product):
    quantity: int = Field(description="its stock now (0 without a stock row)")
    stock_version: int


class ProductList(BaseModel):
    items: list[ListedProduct]
    next_after: str | None = Field(
        default=None, description="pass as `after` for the next page; null: there is no more"
    )


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


class ImportBatch(BaseModel):
    id: str = Field(description="the batch's id, for its rows, commit and delete")
    rows: int = Field(description="rows staged so far")
    max_rows: int = Field(description="the most rows one batch may hold")
    expires_at: Timestamp = Field(description="dropped if unused until then")


# --- orders ----------------------------------------------------------------------------------


class LineStock(BaseModel):
    quantity: int
    stock_version: int


class OrderLine(BaseModel):
    sku: str
    quantity: int
    unit_price: Money
    stock: LineStock = Field(description="the SKU's stock right after this order was placed")


class Review(BaseModel):
    code: str = Field(
        examples=["stock.insufficient"],
        description="`stock.insufficient`, `order.sku_unknown`, `order.sku_inactive`, "
        "`recovery.outside_window` (a recovered sale) or `allowance.uncovered` (a sale made "
        "under an allowance that did not cover it)",
    )
    message: str
    details: dict[str, Any] = Field(
        description="the code's own fields, e.g. `lines` (each short line: `sku`, `requested`, "
        "`available`) or `skus`"
    )


class AllowanceDraw(BaseModel):
    grant_id: str
    sku: str
    units: int = Field(description="units the order took from that allowance")


class Order(BaseModel):
    id: str
    store_id: str
    status: Literal["confirmed", "cancelled", "unrecovered"]
    created_at: Timestamp
    created_by: str = Field(examples=["store:store-042", "user:sam"])
    cancelled_at: Timestamp | None
    recovered_at: Timestamp | None = Field(
        description="when central took it again from its store's copy after a restore; "
        "null for any other order"
    )
    review: Review | None = Field(
        description="why central could not take the store's copy again after a restore "
        "(status `unrecovered`, kept once an admin closed it); null for any other order"
    )
    allowances: list[AllowanceDraw] = Field(
        default_factory=list,
        description="what the order took from its store's allowances (empty: nothing); the "
        "store's agent counts it against them until its next read of /allowances/mine",
    )
    total: Money
    lines: list[OrderLine]


class OrderPage(BaseModel):
    items: list[Order]
    next_before: int | None = Field(description="pass as `before` for the next page")


class RecoveredItem(BaseModel):
    id: str = Field(description="the order's id, as sent")
    idempotency_key: str = Field(description="as sent")
    outcome: Literal["present", "recovered", "unrecovered", "conflict"]
    code: str | None = Field(
        description="`unrecovered` and `conflict`: why (`stock.insufficient`, "
        "`recovery.outside_window`, `idempotency.mismatch`, `order.id_taken`, ...); else null"
    )
    message: str | None
    order: Order | None = Field(description="central's order now; null for a conflict")


class Recovery(BaseModel):
    epoch: int = Field(description="central's epoch as it settled them")
    items: list[RecoveredItem] = Field(description="one per order sent, in the same order")


class Allowance(BaseModel):
    id: str = Field(description="the grant's id (a UUID)")
    store_id: str
    sku: str
    units: int = Field(description="units granted")
    remaining: int = Field(description="units the store may still sell under it")
    expires_at: Timestamp = Field(description="the store sells under it until then, less a margin")
    state: str = Field(json_schema_extra={"enum": ["live", "settling", "closed"]})
    created_at: Timestamp
    updated_at: Timestamp
    version: int


class AllowancePage(BaseModel):
    items: list[Allowance]
    next_before: int | None = Field(description="pass as `before` for the next page")


class AllowanceList(BaseModel):
    items: list[Allowance]
    margin_s: int = Field(description="sell under a grant only until this long before expiry")
    server_time: Timestamp = Field(description="central's clock when it answered")
