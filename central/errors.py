"""Central's error hierarchy: every error carries a stable code and an HTTP status.

The API maps these exactly once (central.api.errors); use cases only raise them.
"""

from __future__ import annotations

from typing import Any


class CentralError(Exception):
    """Central could not complete the request."""

    code = "error"
    status = 400

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(CentralError):
    """The request is not valid."""

    code = "request.invalid"
    status = 422


class InvalidSku(InvalidInput):
    """A SKU is 1-64 characters of A-Z, 0-9, '.', '_' or '-', starting with a letter or digit."""

    code = "sku.invalid"


class InvalidPrice(InvalidInput):
    """A price is a non-negative decimal with at most two decimal places."""

    code = "price.invalid"


class InvalidName(InvalidInput):
    """A name must be 1-200 characters."""

    code = "name.invalid"


class NameTooLong(InvalidName):
    """The name is longer than 200 characters."""

    code = "name.too_long"


class InvalidQuantity(InvalidInput):
    """A quantity is a whole number between 0 and 1,000,000,000."""

    code = "quantity.invalid"


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


class InvalidOrder(InvalidInput):
    """The order is not valid."""

    code = "order.invalid"


class DuplicateLine(InvalidOrder):
    """The order names the same SKU twice; send one line per SKU."""

    code = "order.duplicate_line"


class UnknownSku(InvalidOrder):
    """The order names a SKU that does not exist."""

    code = "order.sku_unknown"


class InactiveSku(InvalidOrder):
    """The order names a product that is not for sale."""

    code = "order.sku_inactive"


class IdempotencyKeyRequired(CentralError):
    """An Idempotency-Key header (1-128 printable characters) is required."""

    code = "idempotency.key_required"
    status = 400


class IdempotencyMismatch(InvalidInput):
    """This Idempotency-Key was used with a different request body."""

    code = "idempotency.mismatch"


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


class Conflict(CentralError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


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


class InsufficientStock(Conflict):
    """Not enough stock for some lines; nothing was reserved."""

    code = "stock.insufficient"


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


class ConfigError(CentralError):
    """The configuration is invalid."""

    code = "config.invalid"
    status = 500
