"""The error root every package derives from, and the errors of the contract itself.

Central's errors live in `invwire.errors.central` and the store agent's in
`invwire.errors.agent`: every stable code the product answers with is declared in this one
package, so a new code is chosen next to all the others (docs/wire.md lists them). Both
modules, like this one, import nothing but the standard library and each other.

Each error has a stable dotted `code`, the HTTP `status` it maps to, and `details`; the
docstring is the default message. Central and the agent answer these with the same codes,
so a refusal reads the same whichever side made it.
"""

from __future__ import annotations

from typing import Any


class WireError(Exception):
    """The operation could not be completed."""

    code = "error"
    status = 400

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(WireError):
    """The request is not valid."""

    code = "request.invalid"
    status = 422


class InvalidSku(InvalidInput):
    """A SKU is 1-64 characters of A-Z, 0-9, '.', '_' or '-', starting with a letter or digit."""

    code = "sku.invalid"


class InvalidQuantity(InvalidInput):
    """The quantity is not a whole number in the allowed range."""

    code = "quantity.invalid"


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


class IdempotencyKeyRequired(WireError):
    """An Idempotency-Key header (1-128 printable characters) is required."""

    code = "idempotency.key_required"
    status = 400


class InvalidIdempotencyKey(WireError):
    """An Idempotency-Key is 1-128 printable ASCII characters without spaces."""

    code = "idempotency.key_invalid"
    status = 400


class IdempotencyMismatch(InvalidInput):
    """This Idempotency-Key was used with a different request body."""

    code = "idempotency.mismatch"


class Conflict(WireError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class InsufficientStock(Conflict):
    """Not enough stock for some lines; nothing was reserved."""

    code = "stock.insufficient"


class PoisonRecord(WireError):
    """A Kafka record cannot be applied; it goes to dead_letters."""

    code = "record.invalid"


class RecordTooLarge(PoisonRecord):
    """The record value is larger than 1 MiB."""

    code = "record.too_large"


class InvalidJson(PoisonRecord):
    """The record value is not UTF-8 JSON."""

    code = "json.invalid"


class InvalidEnvelope(PoisonRecord):
    """The record value is not an event envelope."""

    code = "envelope.invalid"


class UnknownType(PoisonRecord):
    """The event type is not known on this topic."""

    code = "type.unknown"


class UnsupportedSchema(PoisonRecord):
    """The event schema is newer than this agent understands."""

    code = "schema.unsupported"


class MissingField(PoisonRecord):
    """A required event field is missing."""

    code = "field.missing"


class InvalidField(PoisonRecord):
    """An event field has the wrong type or value."""

    code = "field.invalid"
