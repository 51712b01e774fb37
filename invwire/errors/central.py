"""Central's error hierarchy: every error carries a stable code and an HTTP status.

The contract's own errors (SKUs, order lines, idempotency keys, stock conflicts) live in
`invwire.errors` and are re-exported here; the API maps all of them exactly once
(central.api.errors); use cases only raise them.
"""

from __future__ import annotations

from invwire.errors import (
    Conflict,
    DuplicateLine,
    IdempotencyKeyRequired,
    IdempotencyMismatch,
    InactiveSku,
    InsufficientStock,
    InvalidInput,
    InvalidOrder,
    InvalidQuantity,
    InvalidSku,
    UnknownSku,
    WireError,
)

# Central's root is the contract's root: an InvalidSku raised by shared rules is central's too.
CentralError = WireError

__all__ = [
    "AlreadyExists",
    "AuthInvalid",
    "AuthRequired",
    "BackupChecksumMismatch",
    "BackupExists",
    "BackupFailed",
    "BackupInvalid",
    "BackupSchemaTooNew",
    "BackupToolMissing",
    "BackupWrongDatabase",
    "BehindKafka",
    "CategoryExists",
    "CategoryNotFound",
    "CentralError",
    "CentralRunning",
    "ConfigError",
    "ConfigFileInsecure",
    "Conflict",
    "DatabaseConfigError",
    "DatabaseUnavailable",
    "DuplicateLine",
    "Forbidden",
    "GrantNotYours",
    "GrantUnknown",
    "IdempotencyKeyRequired",
    "IdempotencyMismatch",
    "ImportBatchFull",
    "ImportBatchNotFound",
    "ImportInvalid",
    "InactiveSku",
    "InsufficientStock",
    "InvalidActive",
    "InvalidInput",
    "InvalidKind",
    "InvalidName",
    "InvalidOrder",
    "InvalidPrice",
    "InvalidQuantity",
    "InvalidRole",
    "InvalidSku",
    "KafkaUnavailable",
    "LastAdmin",
    "NameTooLong",
    "NegativeStock",
    "NodeUnavailable",
    "NotFound",
    "NotRestored",
    "OrderIdTaken",
    "OrderNotFound",
    "OutsideRecoveryWindow",
    "ProductExists",
    "ProductNotFound",
    "RecoveryRefused",
    "ReplayPending",
    "RestoreUnconfirmed",
    "StaffStoreInactive",
    "StatementMismatch",
    "StoreExists",
    "StoreInactive",
    "StoreNotFound",
    "Throttled",
    "TooManyImportBatches",
    "Unavailable",
    "UnknownField",
    "UnknownSku",
    "UserExists",
    "UserNotFound",
    "WeakPassword",
    "WireError",
    "WorkerFailed",
    "WriteConflict",
    "WrongPassword",
]


class InvalidPrice(InvalidInput):
    """A price is a non-negative decimal with at most two decimal places."""

    code = "price.invalid"


class InvalidName(InvalidInput):
    """A name must be 1-200 characters."""

    code = "name.invalid"


class NameTooLong(InvalidName):
    """The name is longer than 200 characters."""

    code = "name.too_long"


class InvalidRole(InvalidInput):
    """The role must be admin, ops or staff."""

    code = "role.invalid"


class WeakPassword(InvalidInput):
    """The password must be at least 8 characters."""

    code = "password.weak"


class ImportInvalid(InvalidInput):
    """Some import rows are invalid; nothing was applied."""

    code = "import.invalid"


class InvalidActive(InvalidInput):
    """An import row's active must be true or false."""

    code = "active.invalid"


class ImportBatchNotFound(CentralError):
    """No such import batch: it was committed, discarded, or expired after an hour unused."""

    code = "import.batch_not_found"
    status = 404


class ImportBatchFull(Conflict):
    """The import batch holds as many rows as one batch may; nothing of this request was
    staged."""

    code = "import.batch_full"


class TooManyImportBatches(Conflict):
    """Too many import batches are open; commit or discard one, or wait an hour."""

    code = "import.too_many_batches"


class InvalidKind(InvalidInput):
    """An import row's kind must be category, product or stock."""

    code = "kind.invalid"


class UnknownField(InvalidInput):
    """An import row has a field central does not know."""

    code = "field.unknown"


class NotFound(CentralError):
    """Not found."""

    code = "not_found"
    status = 404


class CategoryNotFound(NotFound):
    """No such category."""

    code = "category.not_found"


class ProductNotFound(NotFound):
    """No such product."""

    code = "product.not_found"


class OrderNotFound(NotFound):
    """No such order."""

    code = "order.not_found"


class StoreNotFound(NotFound):
    """No such store."""

    code = "store.not_found"


class AlreadyExists(Conflict):
    """It already exists."""

    code = "exists"


class CategoryExists(AlreadyExists):
    """A category with that name already exists."""

    code = "category.exists"


class ProductExists(AlreadyExists):
    """A product with that SKU already exists."""

    code = "product.exists"


class StoreExists(AlreadyExists):
    """A store with that id already exists."""

    code = "store.exists"


class UserExists(AlreadyExists):
    """A user with that name already exists."""

    code = "user.exists"


class NegativeStock(Conflict):
    """Stock cannot go below zero."""

    code = "stock.negative"


class AuthRequired(CentralError):
    """Authentication is required."""

    code = "auth.required"
    status = 401


class AuthInvalid(AuthRequired):
    """The credentials are invalid or expired."""

    code = "auth.invalid"


class Forbidden(CentralError):
    """Your role may not do this."""

    code = "auth.forbidden"
    status = 403


class Unavailable(CentralError):
    """A dependency is unavailable; try again shortly."""

    code = "unavailable"
    status = 503


class DatabaseUnavailable(Unavailable):
    """The database is unreachable; try again shortly."""

    code = "database.unavailable"


class WriteConflict(DatabaseUnavailable):
    """Changes committed at the same moment on other database nodes kept this one from
    committing, however often it was tried; nothing was changed: try again shortly."""

    code = "database.write_conflict"

    def __init__(self, attempts: int, retry_after: int = 1) -> None:
        super().__init__(retry_after=retry_after, attempts=attempts)
        self.retry_after = retry_after


class NodeUnavailable(DatabaseUnavailable):
    """The database node central uses is not serving (a Galera node out of its cluster, or
    still joining it); nothing was changed: try again shortly."""

    code = "database.node_unavailable"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(retry_after=retry_after)
        self.retry_after = retry_after


class KafkaUnavailable(Unavailable):
    """Kafka did not answer, so nothing was changed; try again shortly."""

    code = "kafka.unavailable"


class ConfigError(CentralError):
    """The configuration is invalid."""

    code = "config.invalid"
    status = 500


# --- the lives of users and stores -----------------------------------------------------------


class UserNotFound(NotFound):
    """No such user."""

    code = "user.not_found"


class LastAdmin(Conflict):
    """The last active admin cannot be disabled or given another role; make another first."""

    code = "user.last_admin"


class StoreInactive(Conflict):
    """The store is deactivated; activate it first."""

    code = "store.inactive"


class StaffStoreInactive(Forbidden):
    """Your store is deactivated; an admin can activate it again."""

    code = "auth.store_inactive"


class WrongPassword(InvalidInput):
    """The current password is wrong."""

    code = "password.wrong"


class Throttled(CentralError):
    """Too many failed logins; try again later."""

    code = "auth.throttled"
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed logins; try again in {retry_after} seconds",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class ConfigFileInsecure(ConfigError):
    """A file holding secrets is accessible to other users; run chmod 600 on it."""

    code = "config.file_insecure"


class DatabaseConfigError(ConfigError):
    """The database named by INVCTL_DATABASE_URL cannot be used."""

    code = "config.database"


# --- backups and restores (central backup / central restore) ---------------------------------


class RecoveryRefused(CentralError):
    """The backup or restore was refused, and nothing was changed."""

    code = "recovery.refused"
    status = 409


class BackupExists(RecoveryRefused):
    """The backup file exists already; name a new one."""

    code = "backup.exists"


class BackupToolMissing(RecoveryRefused):
    """A MariaDB client program that backups and restores need is not installed."""

    code = "backup.tool_missing"


class BackupInvalid(RecoveryRefused):
    """The file is not a central backup, or it is damaged."""

    code = "backup.invalid"


class BackupChecksumMismatch(BackupInvalid):
    """The backup's content does not match its checksum: it is damaged."""

    code = "backup.checksum_mismatch"


class BackupWrongDatabase(RecoveryRefused):
    """The backup is of another kind of database than the one configured."""

    code = "backup.wrong_database"


class BackupSchemaTooNew(RecoveryRefused):
    """The backup has a newer schema than this central knows; restore it with that version."""

    code = "backup.schema_too_new"


class CentralRunning(RecoveryRefused):
    """Central is running against this database; stop every central process first."""

    code = "restore.central_running"


class RestoreUnconfirmed(RecoveryRefused):
    """A restore replaces the database's content: confirm it (--yes)."""

    code = "restore.unconfirmed"


class BehindKafka(RecoveryRefused):
    """The database is behind what central already published to Kafka: it was restored
    without `central restore`. Confirm the restore (`central confirm-restore`) to start."""

    code = "central.behind_kafka"


class BackupFailed(CentralError):
    """The backup or restore program failed."""

    code = "backup.failed"
    status = 500


# --- sales recovered from the stores after a restore (central.services.recovery) -------------


class NotRestored(Conflict):
    """Central was never restored, so it lost no sale a store could send back."""

    code = "recovery.no_restore"


class OutsideRecoveryWindow(Conflict):
    """The sale was placed outside what the restore could have lost: before the backup's
    time less 1 h, or after the restore."""

    code = "recovery.outside_window"


class OrderIdTaken(Conflict):
    """The order id is another order's at central."""

    code = "order.id_taken"


# --- `central serve --workers` (central.supervisor) ------------------------------------------


class WorkerFailed(CentralError):
    """A worker of `central serve --workers` could not start, so none is served."""

    code = "serve.worker_failed"
    status = 500


class AllowanceNotFound(NotFound):
    """No such allowance."""

    code = "allowance.not_found"


class AllowanceClosed(Conflict):
    """The allowance is no longer live: its units were returned already."""

    code = "allowance.closed"


class GrantUnknown(InvalidInput):
    """An order line names an allowance central does not have."""

    code = "allowance.not_found"


class GrantNotYours(InvalidInput):
    """An order line names another store's allowance, or one for another SKU."""

    code = "allowance.not_yours"


class ReplayPending(Conflict):
    """The store says it sold more under the allowance than central has booked: its sales
    are to be replayed before its statement."""

    code = "allowance.replay_pending"


class StatementMismatch(Conflict):
    """The store says it sold fewer units under the allowance than central has booked."""

    code = "allowance.statement_mismatch"


class AllowanceRuleNotFound(NotFound):
    """No allowance rule for that SKU or category."""

    code = "allowance_rule.not_found"
