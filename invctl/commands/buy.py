"""`invctl buy SKU[:QTY]...`: sell at this store, through the store agent or central."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from invctl.client import ApiClient
from invctl.commands.orders import lines_table
from invctl.context import state_of
from invctl.errors import RefusedError, UsageError
from invctl.options import JsonFlag
from invctl.order_errors import explained
from invwire.rules import MAX_LINE_QUANTITY, MAX_LINES, is_idempotency_key

if TYPE_CHECKING:
    from rich.console import RenderableType

QUANTITY = re.compile(r"[0-9]+")
LINE_HINT = "write each product as SKU or SKU:QTY, e.g. MILK-1L or MILK-1L:2"

LinesArg = Annotated[
    list[str],
    typer.Argument(
        metavar="SKU[:QTY]",
        help=f"What to sell: a SKU, with :QTY for more than one (1-{MAX_LINE_QUANTITY}).",
        show_default=False,
    ),
]
IdempotencyKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        metavar="KEY",
        help="Reuse KEY (1-128 printable ASCII characters) so a retried buy sells once; "
        "default: a fresh random key per run.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int = 1

    def to_wire(self) -> dict[str, Any]:
        return {"sku": self.sku, "quantity": self.quantity}


def register(root: typer.Typer) -> None:
    root.command("buy")(buy)


def buy(
    ctx: typer.Context,
    products: LinesArg,
    idempotency_key: IdempotencyKeyOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Sell products: reserve their stock at central and record the order.

    Each argument is SKU or SKU:QTY (QTY 1-10000, default 1); name each SKU once. The
    sale goes through the store agent, which checks its replica, then reserves the stock
    at central. With --central URL (or INVCTL_CENTRAL) it goes straight to central, as
    the store (INVCTL_API_KEY) or the logged-in staff user.

    When central cannot be reached the sale fails and nothing is sold (exit 5), unless
    the store agent runs with offline selling on. That is off by default; the agent's
    operator turns it on with `storeagent run --offline on` (or STOREAGENT_OFFLINE=on).
    Then the agent queues the sale within its limits and sends it when central is back:
    exit 0, "queued offline" with a local reference and why the store's allowances did
    not cover it. A sale the store's allowances from central cover is final even offline,
    whatever that setting: exit 0, "sold under the store's allowance" with a local
    reference.

    Every buy carries an Idempotency-Key, random per run. A script that may retry a buy
    passes its own --idempotency-key (e.g. its sale's id): the same key with the same
    lines returns the first order instead of selling twice.

    Exit 3 if a SKU is unknown, 4 if stock is short (each short line is listed with what
    is available) or a product is not sold, 5 if the agent or central cannot be reached
    (retry), 6 if the agent's store key or your login is refused (retrying cannot help).

    Example: invctl buy MILK-1L:2 BREAD-WHITE --idempotency-key till3-sale-0042
    """
    state = state_of(ctx, json_out)
    lines = parse_lines(products)
    key = str(uuid.uuid4()) if idempotency_key is None else idempotency_key
    check_idempotency_key(key)
    answer = place_order(state.reader(), lines, key)
    if isinstance(answer, dict) and answer.get("status") == "queued":
        state.out.done(answer, queued_message(answer))
    elif isinstance(answer, dict) and answer.get("status") == "allowance":
        state.out.done(answer, allowance_message(answer))
    else:
        state.out.emit(answer, render=receipt)


def parse_lines(texts: Sequence[str]) -> list[Line]:
    """`SKU[:QTY]` arguments as order lines; a usage error (exit 2) for anything wrong."""
    lines = [parse_line(text) for text in texts]
    skus = [line.sku for line in lines]
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        raise UsageError(
            f"each SKU may be given once; repeated: {', '.join(repeated)}",
            code="usage.duplicate_sku",
            hint=f"give the total quantity once, e.g. {repeated[0]}:{_total(lines, repeated[0])}",
        )
    if len(lines) > MAX_LINES:
        raise UsageError(f"an order has at most {MAX_LINES} lines", code="usage.too_many_lines")
    return lines


def parse_line(text: str) -> Line:
    sku, colon, quantity = text.partition(":")
    return Line(_sku(sku, text), _quantity(quantity, text) if colon else 1)


def _sku(sku: str, text: str) -> str:
    from invctl.importfile import FieldError, check_sku

    try:
        return check_sku(sku)
    except FieldError as exc:
        raise UsageError(f"{text!r}: {exc.message}", code="usage.sku", hint=LINE_HINT) from None


def _quantity(quantity: str, text: str) -> int:
    if not QUANTITY.fullmatch(quantity) or not 1 <= int(quantity) <= MAX_LINE_QUANTITY:
        raise UsageError(
            f"{text!r}: QTY must be a whole number from 1 to {MAX_LINE_QUANTITY}",
            code="usage.quantity",
            hint=LINE_HINT,
        )
    return int(quantity)


def _total(lines: Iterable[Line], sku: str) -> int:
    return sum(line.quantity for line in lines if line.sku == sku)


def check_idempotency_key(key: str) -> None:
    if not is_idempotency_key(key):
        raise UsageError(
            "--idempotency-key must be 1-128 printable ASCII characters without spaces",
            code="usage.idempotency_key",
        )


def place_order(client: ApiClient, lines: list[Line], key: str) -> Any:
    body = {"lines": [line.to_wire() for line in lines]}
    try:
        with explained(client.target.name, "sold"):
            return client.request("POST", "/orders", json=body, headers={"Idempotency-Key": key})
    except RefusedError as err:
        if err.code == "stock.insufficient" and not err.hint:
            err.hint = "nothing was sold; buy less, or check with `invctl stock show SKU`"
        raise


def queued_message(answer: dict[str, Any]) -> str:
    why = ALLOWANCE_REASONS.get(str(answer.get("reason")), "")
    return (
        f"queued offline (central unreachable): local reference {answer.get('local_ref')}"
        " — it will be sent when central is back" + (f" ({why})" if why else "")
    )


def allowance_message(answer: dict[str, Any]) -> str:
    return (
        "sold offline under the store's allowance (final; central unreachable): local "
        f"reference {answer.get('local_ref')} — it will be sent when central is back"
    )


ALLOWANCE_REASONS = {  # why a sale queued offline was not sold under the store's allowances
    "allowance.none": "the store holds no allowance of a product in it",
    "allowance.expired": "the store's allowance of a product in it has expired",
    "allowance.short": "the store's allowance of a product in it is too small for it",
    "allowance.outcome_unknown": "central may have the sale already",
}


def receipt(data: Any) -> Iterable[RenderableType]:
    """What was bought and the stock left, then the order id and total. Central and the
    agent both answer the order object; the agent adds its `local_ref` beside its fields."""
    from rich.text import Text

    order: dict[str, Any] = data if isinstance(data, dict) else {}
    yield lines_table(order, title="Bought", stock="stock left")
    local = f" (local reference {order['local_ref']})" if order.get("local_ref") else ""
    yield Text(f"Order {order.get('id')}: total {order.get('total')}{local}")
