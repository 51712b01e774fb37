"""`invctl sales replay FILE`: send to central, as the store, the sales `storeagent salvage`
saved from a replica, each with its original idempotency key.

Central answers a key it already holds with that key's first order (`Idempotent-Replayed`),
so a sale the agent had sent already, or a second run of the same file, is counted as
already placed and never placed twice. A sale whose till was told it failed (`voided`) is
never sent; when central may hold it (`at_central`), it is looked up by its key and, if
central booked it, cancelled there. Sales of another store than the key's are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from invctl.client import ApiClient, items_of, segment
from invctl.config import refuse_plain_http
from invctl.context import State, state_of
from invctl.errors import (
    AuthError,
    ConfigError,
    InvalidRequestError,
    RefusedError,
    UnavailableError,
    UsageError,
)
from invctl.options import JsonFlag
from invwire.errors import WireError
from invwire.files import SharedFile, UnusableFile, read_private_text
from invwire.orders import valid_lines
from invwire.rules import is_idempotency_key

app = typer.Typer(
    help="Sales saved from a replica by `storeagent salvage` (central).\n\n"
    "Example: invctl sales replay replica.db.salvage.jsonl --api-key-file store.key",
    no_args_is_help=True,
)
# What became of each sale, in the order the summary lists them.
REPLAYED, ALREADY_PLACED, REFUSED = "replayed", "already_placed", "refused"
SKIPPED_VOIDED, VOIDED_CANCELLED = "skipped_voided", "voided_cancelled"
SKIPPED_OTHER_STORE = "skipped_other_store"
OUTCOMES = (
    REPLAYED,
    ALREADY_PLACED,
    REFUSED,
    SKIPPED_VOIDED,
    VOIDED_CANCELLED,
    SKIPPED_OTHER_STORE,
)
COLUMNS = ("idempotency_key", "local_ref", "outcome", "order_id", "code")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="sales")


@dataclass(frozen=True)
class SavedSale:
    """One line of a salvage file, checked."""

    number: int  # its line in the file
    key: str
    local_ref: str
    lines: list[dict[str, Any]]
    store_id: str | None
    replay: bool
    voided: bool
    at_central: bool


@dataclass(frozen=True)
class Outcome:
    sale: SavedSale
    outcome: str
    order_id: str | None = None
    code: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "idempotency_key": self.sale.key,
            "local_ref": self.sale.local_ref,
            "outcome": self.outcome,
            "order_id": self.order_id,
            "code": self.code,
            "message": self.message,
        }


@app.command("replay")
def replay(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="The JSON-lines file `storeagent salvage` wrote.",
            show_default=False,
        ),
    ],
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            metavar="FILE",
            help="The store's API key (mode 600), e.g. /etc/invctl/storeagent.key. Default: "
            "invctl's central login or INVCTL_API_KEY, which must be the store's or its staff's.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Send saved sales to central with their original idempotency keys, as the store.

    Sales central already holds are answered with their first order (counted as already
    placed), so running the same file twice places nothing twice. Voided sales are never
    sent; central's copy of one is cancelled. Exit 4 if central refused any sale (each is
    listed: its customer has the goods), 5 if central cannot be reached (run it again).

    Example: invctl sales replay replica.db.salvage.jsonl --api-key-file /etc/invctl/storeagent.key
    """
    state = state_of(ctx, json_out)
    sales = read_saved_sales(file)
    central = _store_client(ctx, state, api_key_file)
    store_id = _store_of(central)
    outcomes: list[Outcome] = []
    try:
        for sale in sales:
            outcomes.append(_settle(central, sale, store_id))
    except UnavailableError as err:
        _show(state, outcomes, store_id, unsent=len(sales) - len(outcomes))
        err.hint = (
            "run the same command again once central answers: the sales it placed already "
            "are answered with their first order, never placed twice"
        )
        raise
    _show(state, outcomes, store_id, unsent=0)
    refused = [o for o in outcomes if o.outcome == REFUSED]
    if refused:
        raise RefusedError(
            f"central refused {len(refused)} of the saved sales (their customers have the "
            "goods): " + "; ".join(f"{o.sale.key}: {o.code}" for o in refused[:5]),
            code="sales.refused",
            hint="each refused sale is listed with central's code; the stock at central does "
            "not cover those goods: an admin adjusts it",
        )


def read_saved_sales(path: Path) -> list[SavedSale]:
    """Every line checked before anything is sent: a bad line is a usage error (exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", code="usage.file") from None
    return [
        _saved_sale(number, line)
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def _saved_sale(number: int, line: str) -> SavedSale:
    try:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        key = raw.get("idempotency_key")
        if not isinstance(key, str) or not is_idempotency_key(key):
            raise ValueError("idempotency_key is not a key")
        replay_it, voided = raw.get("replay") is True, raw.get("voided") is True
        if replay_it:
            valid_lines(raw.get("lines"))
        store_id = raw.get("store_id")
        return SavedSale(
            number=number,
            key=key,
            local_ref=str(raw.get("local_ref") or ""),
            lines=list(raw.get("lines") or []),
            store_id=store_id if isinstance(store_id, str) else None,
            replay=replay_it and not voided,
            voided=voided,
            at_central=raw.get("at_central") is True,
        )
    except (ValueError, WireError) as exc:
        raise UsageError(
            f"line {number} is not a saved sale: {exc}",
            code="usage.salvage_file",
            hint="pass the file `storeagent salvage` wrote, unchanged",
        ) from None


def _store_client(ctx: typer.Context, state: State, api_key_file: Path | None) -> ApiClient:
    if api_key_file is None:
        return state.central()
    key = _read_key(api_key_file)
    target = state.central_target()
    if not state.options.insecure:
        for url in target.urls:
            refuse_plain_http(target.name, url)
    client = ApiClient(
        target,
        timeout=state.options.timeout,
        headers={"X-Request-ID": state.request_id, "X-API-Key": key},
        transport=state.deps.transport,
        auth_hint=f"central refused the key in {api_key_file}: is it the store's active key?",
        on_switch=state.note_switch,
    )
    ctx.call_on_close(client.close)
    return client


def _read_key(path: Path) -> str:
    try:
        key = read_private_text(path, "API key file")
    except SharedFile as exc:
        raise ConfigError(exc.message, code="config.key_file_insecure") from None
    except UnusableFile as exc:
        raise ConfigError(exc.message) from None
    if not key or not all(33 <= ord(char) <= 126 for char in key):
        raise ConfigError(f"the API key file {path} holds no usable key")
    return key


def _store_of(central: ApiClient) -> str:
    """The store the credential acts for; replaying needs one (an admin is no store)."""
    me = central.get("/auth/me")
    store_id = me.get("store_id") if isinstance(me, dict) else None
    if not isinstance(store_id, str) or not store_id:
        raise AuthError(
            "saved sales are replayed as their store, and this credential is no store's",
            code="auth.not_a_store",
            hint="pass --api-key-file with the store's API key (e.g. /etc/invctl/storeagent.key)",
        )
    return store_id


def _settle(central: ApiClient, sale: SavedSale, store_id: str) -> Outcome:
    if sale.store_id is not None and sale.store_id != store_id:
        return Outcome(sale, SKIPPED_OTHER_STORE, message=f"a sale of store {sale.store_id}")
    if sale.voided:
        return _void(central, sale)
    if not sale.replay:
        return Outcome(sale, SKIPPED_VOIDED, message="not a sale to replay")
    return _place(central, sale)


def _place(central: ApiClient, sale: SavedSale) -> Outcome:
    body = {"lines": sale.lines}
    try:
        order, headers = central.exchange(
            "POST", "/orders", json=body, headers={"Idempotency-Key": sale.key}
        )
    except (RefusedError, InvalidRequestError) as err:
        return Outcome(sale, REFUSED, code=err.code, message=err.message)
    replayed = headers.get("idempotent-replayed") == "true"
    order_id = str(order.get("id")) if isinstance(order, dict) else None
    return Outcome(sale, ALREADY_PLACED if replayed else REPLAYED, order_id=order_id)


def _void(central: ApiClient, sale: SavedSale) -> Outcome:
    """A sale its till was told failed: if central booked it, it is cancelled there."""
    if not sale.at_central:
        return Outcome(sale, SKIPPED_VOIDED)
    found = items_of(central.get("/orders", params={"idempotency_key": sale.key}))
    live = [order for order in found if order.get("status") == "confirmed"]
    if not live:
        return Outcome(sale, SKIPPED_VOIDED)
    order_id = str(live[0]["id"])
    central.post(f"/orders/{segment(order_id)}/cancel")
    return Outcome(sale, VOIDED_CANCELLED, order_id=order_id)


def _show(state: State, outcomes: list[Outcome], store_id: str, *, unsent: int) -> None:
    counts = Counter(outcome.outcome for outcome in outcomes)
    summary = {name: counts.get(name, 0) for name in OUTCOMES}
    data = {
        "store_id": store_id,
        **summary,
        "unsent": unsent,
        "sales": [outcome.to_dict() for outcome in outcomes],
    }
    if state.json:
        state.out.done(data, "")
        return
    if outcomes:
        state.out.emit([outcome.to_dict() for outcome in outcomes], table=COLUMNS)
    listed = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in summary.items())
    state.out.note(f"store {store_id}: {listed}" + (f", not sent yet {unsent}" if unsent else ""))
