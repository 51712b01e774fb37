"""What the routes that write their answer themselves (JSONResponse, without FastAPI checking
it against the response model) must still answer: exactly the model's shape."""

from __future__ import annotations

from typing import Any

from central.api.schemas import Order


def as_order_model_writes_it(body: dict[str, Any]) -> dict[str, Any]:
    """`body` validated by the Order model and written back: equal to `body` only if it has
    every field, no other, and each of the model's type."""
    return Order.model_validate(body).model_dump(mode="json")
