"""Central's tables. Models are unbound; the composition root binds them to a database."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import peewee


class Timestamp(peewee.DateTimeField):
    """Naive UTC with microseconds on every backend (MySQL's DATETIME drops them)."""

    field_type = "DATETIME(6)"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat() if value else None


class BaseModel(peewee.Model):
    pass


class Category(BaseModel):
    id = peewee.AutoField()
    name = peewee.CharField(max_length=200, unique=True)
    version = peewee.IntegerField(default=1)
    created_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "categories"


class Product(BaseModel):
    sku = peewee.CharField(max_length=64, primary_key=True)
    name = peewee.CharField(max_length=200)
    price = peewee.DecimalField(max_digits=12, decimal_places=2, auto_round=True)
    category = peewee.ForeignKeyField(Category, column_name="category_id", backref="products")
    category_id: int
    description = peewee.TextField(default="")
    active = peewee.BooleanField(default=True)
    version = peewee.IntegerField(default=1)
    created_at = Timestamp(default=utcnow)
    updated_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "products"


class Stock(BaseModel):
    """`quantity` is what is available to any store; `held` is what is set aside in stores'
    live or settling allowances. On hand is their sum, and neither goes below zero."""

    sku = peewee.CharField(max_length=64, primary_key=True)
    quantity = peewee.BigIntegerField(default=0)
    version = peewee.BigIntegerField(default=0)
    updated_at = Timestamp(default=utcnow)
    held = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "stock"


class Movement(BaseModel):
    id = peewee.BigAutoField()
    sku = peewee.CharField(max_length=64)
    delta = peewee.BigIntegerField()
    quantity = peewee.BigIntegerField()
    stock_version = peewee.BigIntegerField()
    reason = peewee.CharField(max_length=32)
    order_id = peewee.CharField(max_length=36, null=True)
    actor = peewee.CharField(max_length=100)
    note = peewee.CharField(max_length=500, default="")
    created_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "stock_movements"
        indexes = ((("sku", "id"), False),)


class Store(BaseModel):
    id = peewee.CharField(max_length=64, primary_key=True)
    name = peewee.CharField(max_length=200)
    active = peewee.BooleanField(default=True)
    created_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "stores"


class ApiKey(BaseModel):
    id = peewee.AutoField()
    store = peewee.ForeignKeyField(Store, column_name="store_id", backref="keys")
    key_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    created_at = Timestamp(default=utcnow)
    revoked_at = Timestamp(null=True)

    class Meta:
        table_name = "store_api_keys"


def first_token_version() -> int:
    """A new user's token version starts at random: SQLite may give a re-created user the
    row id of a deleted one, and then it must still not match the old user's tokens."""
    return secrets.randbelow(2**31) + 1


class User(BaseModel):
    id = peewee.AutoField()
    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=255)
    role = peewee.CharField(max_length=16)
    store_id = peewee.CharField(max_length=64, null=True)
    active = peewee.BooleanField(default=True)
    created_at = Timestamp(default=utcnow)
    # Every token carries it; bumping it revokes every token issued before.
    token_version = peewee.BigIntegerField(default=first_token_version)

    class Meta:
        table_name = "users"


class Order(BaseModel):
    seq = peewee.BigAutoField()
    id = peewee.CharField(max_length=36, unique=True)
    store_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16)
    idempotency_key = peewee.CharField(max_length=128)
    fingerprint = peewee.CharField(max_length=64)
    created_by = peewee.CharField(max_length=100)
    created_at = Timestamp(default=utcnow)
    cancelled_at = Timestamp(null=True)
    cancelled_by = peewee.CharField(max_length=100, null=True)
    # A sale a store sent back after a restore (central.services.recovery): when central took
    # it again, or why it could not (status `unrecovered`: code, message, details as JSON).
    recovered_at = Timestamp(null=True)
    review_code = peewee.CharField(max_length=64, null=True)
    review_message = peewee.TextField(null=True)
    review_details = peewee.TextField(null=True)
    # JSON [{"grant_id", "sku", "units"}]: what the order took from its store's allowances
    # (NULL: nothing), told in every answer so the store's agent counts it against them
    allowance_draws = peewee.TextField(null=True)

    class Meta:
        table_name = "orders"
        indexes = (
            (("store_id", "idempotency_key"), True),
            (("store_id", "seq"), False),
            (("status", "seq"), False),
        )


class OrderLine(BaseModel):
    id = peewee.BigAutoField()
    order_id = peewee.CharField(max_length=36, index=True)
    sku = peewee.CharField(max_length=64)
    quantity = peewee.IntegerField()
    unit_price = peewee.DecimalField(max_digits=12, decimal_places=2, auto_round=True)
    stock_after = peewee.BigIntegerField()
    stock_version = peewee.BigIntegerField()

    class Meta:
        table_name = "order_lines"


class StoreStatus(BaseModel):
    """The last heartbeat of each store's agent."""

    store_id = peewee.CharField(max_length=64, primary_key=True)
    last_seen = Timestamp()
    report = peewee.TextField(default="{}")

    class Meta:
        table_name = "store_status"


class AgentInstance(BaseModel):
    """The last heartbeat of each agent process (its instance id) of a store: two live at
    once for one store is an operator mistake that the fleet view flags. An instance quiet
    for long is pruned as its store's heartbeats come."""

    store_id = peewee.CharField(max_length=64)
    instance_id = peewee.CharField(max_length=64)
    first_seen = Timestamp()
    last_seen = Timestamp()
    every_s = peewee.FloatField(null=True)  # its heartbeat interval, as it said
    report = peewee.TextField(default="{}")

    class Meta:
        table_name = "agent_instances"
        primary_key = peewee.CompositeKey("store_id", "instance_id")


class StoreRefusal(BaseModel):
    """When central last refused a store's API key (a revoked key, or its store deactivated):
    the fleet view shows the store `auth_failed` while no heartbeat was accepted since. The
    time is written at most every few seconds (services.fleet.REFUSAL_RESOLUTION), so a
    revoked key still in use does not turn each request into a write."""

    store_id = peewee.CharField(max_length=64, primary_key=True)
    last_refused = Timestamp()

    class Meta:
        table_name = "store_refusals"


class KafkaRevocation(BaseModel):
    """A Kafka user whose credential and ACLs are still to be deleted (usernames are not
    secret); the revocation retrier drains this table."""

    username = peewee.CharField(max_length=200, primary_key=True)
    created_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "kafka_revocations"


class Outbox(BaseModel):
    id = peewee.BigAutoField()
    event_id = peewee.CharField(max_length=36)
    topic = peewee.CharField(max_length=64)
    key = peewee.CharField(max_length=128)
    payload = peewee.TextField()
    # The W3C trace context (JSON of traceparent/tracestate) of the span that wrote the row,
    # sent as Kafka record headers; NULL when tracing was off. Before published_at, which a
    # MariaDB backup reads as the row's last column (central.backup.dump_facts).
    trace_context = peewee.TextField(null=True)
    created_at = Timestamp(default=utcnow)
    published_at = Timestamp(null=True)

    class Meta:
        table_name = "outbox"
        indexes = ((("published_at", "id"), False),)


class RelayLease(BaseModel):
    name = peewee.CharField(max_length=32, primary_key=True)
    owner = peewee.CharField(max_length=64)
    expires_at = Timestamp()

    class Meta:
        table_name = "relay_lease"


class LoginCounter(BaseModel):
    """Recent failed logins of one username or one client address, for throttling. The key
    is a SHA-256, so what someone typed as a username is not kept."""

    key = peewee.CharField(max_length=64, primary_key=True)
    failures = peewee.IntegerField(default=0)
    last_at = Timestamp(index=True)

    class Meta:
        table_name = "login_counters"


class ImportBatch(BaseModel):
    """A staged import (`POST /import/batches`): its rows wait in import_staged_rows until a
    commit applies them all in one transaction."""

    id = peewee.CharField(max_length=36, primary_key=True)
    owner = peewee.CharField(max_length=100)  # the principal's actor; only it may use it
    rows = peewee.BigIntegerField(default=0)
    size = peewee.BigIntegerField(default=0)  # bytes of staged rows
    created_at = Timestamp(default=utcnow)
    touched_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "import_batches"


class StagedRow(BaseModel):
    """One checked import row of a batch, as JSON, in the order it was sent."""

    id = peewee.BigAutoField()
    batch_id = peewee.CharField(max_length=36)
    payload = peewee.TextField()

    class Meta:
        table_name = "import_staged_rows"
        indexes = ((("batch_id", "id"), False),)


class Epoch(BaseModel):
    """Each incarnation of this database: epoch 1 from its first schema, one more at each
    `central restore` (central.epochs), which records here the backup it came from. Events
    made after a restore must not be ordered before those of an earlier epoch."""

    epoch = peewee.BigIntegerField(primary_key=True)
    started_at = Timestamp(default=utcnow)
    cause = peewee.CharField(max_length=16)  # "initial" or "restore"
    backup_created_at = Timestamp(null=True)
    backup_epoch = peewee.BigIntegerField(null=True)
    backup_outbox_position = peewee.BigIntegerField(null=True)
    backup_sha256 = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "epochs"


class Allowance(BaseModel):
    """Units of a SKU set aside for one store until `expires_at`: held on the stock row,
    available to nobody else, sold by that store without asking (docs/design/
    offline-allowances.md). `remaining` falls as the store sells under it."""

    seq = peewee.BigAutoField()
    id = peewee.CharField(max_length=36, unique=True)
    store_id = peewee.CharField(max_length=64)
    sku = peewee.CharField(max_length=64)
    units = peewee.BigIntegerField()
    remaining = peewee.BigIntegerField()
    expires_at = Timestamp()
    state = peewee.CharField(max_length=16)  # live, settling or closed
    created_at = Timestamp(default=utcnow)
    updated_at = Timestamp(default=utcnow)
    version = peewee.BigIntegerField(default=1)

    class Meta:
        table_name = "allowances"
        indexes = (
            (("store_id", "sku", "state"), False),
            (("state", "seq"), False),
        )


class AllowanceRule(BaseModel):
    """How many units of a SKU, or of each SKU of a category, a store is granted while it is
    online (central.services.allowance_rules): `units` at a time, topped up once what it has
    left falls below `threshold`, each grant for `ttl_s` seconds. `target` is the SKU or the
    category's id as text."""

    id = peewee.AutoField()
    scope = peewee.CharField(max_length=16)  # "sku" or "category"
    target = peewee.CharField(max_length=64)
    units = peewee.BigIntegerField()
    threshold = peewee.BigIntegerField()
    ttl_s = peewee.IntegerField()
    # optional: a store holds at most `share` of what is available, split between the
    # stores that sold the SKU in the last `share_days` days
    share = peewee.DecimalField(max_digits=5, decimal_places=4, null=True)
    share_days = peewee.IntegerField(null=True)
    updated_at = Timestamp(default=utcnow)
    updated_by = peewee.CharField(max_length=100)

    class Meta:
        table_name = "allowance_rules"
        indexes = ((("scope", "target"), True),)


class SchemaMigration(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=100)
    applied_at = Timestamp(default=utcnow)

    class Meta:
        table_name = "schema_migrations"


ALL_MODELS: list[type[BaseModel]] = [
    Category,
    Product,
    Stock,
    Movement,
    Store,
    ApiKey,
    User,
    Outbox,
    RelayLease,
    SchemaMigration,
    Order,
    OrderLine,
    StoreStatus,
    AgentInstance,
    StoreRefusal,
    KafkaRevocation,
    LoginCounter,
    ImportBatch,
    StagedRow,
    Epoch,
    Allowance,
    AllowanceRule,
]
