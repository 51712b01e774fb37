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
    "CategoryExists",
    "CategoryNotFound",
    "CentralError",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "DuplicateLine",
    "Forbidden",
    "IdempotencyKeyRequired",
    "IdempotencyMismatch",
    "ImportInvalid",
    "InactiveSku",
    "InsufficientStock",
    "InvalidInput",
    "InvalidKind",
    "InvalidName",
    "InvalidOrder",
    "InvalidPrice",
    "InvalidQuantity",
    "InvalidRole",
    "InvalidSku",
    "KafkaUnavailable",
    "NameTooLong",
    "NegativeStock",
    "NotFound",
    "OrderNotFound",
    "ProductExists",
    "ProductNotFound",
    "StoreExists",
    "StoreNotFound",
    "Unavailable",
    "UnknownSku",
    "UserExists",
    "WeakPassword",
    "WireError",
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


class InvalidKind(InvalidInput):
    """An import row's kind must be category, product or stock."""

    code = "kind.invalid"


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


class KafkaUnavailable(Unavailable):
    """Kafka did not answer, so nothing was changed; try again shortly."""

    code = "kafka.unavailable"


class ConfigError(CentralError):
    """The configuration is invalid."""

    code = "config.invalid"
    status = 500
