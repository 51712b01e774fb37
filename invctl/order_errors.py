"""What a refused or failed sale or cancel means, for `invctl buy` and `invctl orders`: the
exit code docs/wire.md documents for its code (the HTTP status alone does not say it: an
unknown SKU is a 422, a refused store key reaches the till as the agent's 502) and a hint
naming the real cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invctl.errors import (
    AuthError,
    InvctlError,
    NotFoundError,
    RefusedError,
    UnavailableError,
    UsageError,
    recast,
)

EXITS: dict[str, type[InvctlError]] = {
    "order.sku_unknown": NotFoundError,  # 3, as `stock show` of an unknown SKU
    "order.sku_inactive": RefusedError,  # 4: the product exists and is not sold
    "idempotency.mismatch": RefusedError,  # 4: the key was used for other lines
    "central.auth_failed": AuthError,  # 6: the agent's key is refused; retrying cannot help
    "order.in_progress": UnavailableError,  # 5: the same command works in a moment
    "order.ambiguous": UsageError,  # 2: give more of the id
}
OFFLINE_OFF = (
    "central is unreachable from the store agent and offline selling is off at this store "
    "(the default), so nothing was sold; try again once central is back. To sell while "
    "central is down, start the agent with --offline on (STOREAGENT_OFFLINE=on; "
    "docs/offline.md)"
)


@contextmanager
def explained(target: str, action: str) -> Iterator[None]:
    """Errors of the requests inside, with their documented exit code and hint. `target` is
    `agent` or `central`; `action` what did not happen ("sold", "cancelled")."""
    try:
        yield
    except InvctlError as err:
        raise explain(err, target, action) from None


def explain(err: InvctlError, target: str, action: str) -> InvctlError:
    return recast(err, EXITS.get(err.code, type(err)), _hint(err, target, action))


def _hint(err: InvctlError, target: str, action: str) -> str | None:
    code, details = err.code, err.details
    if code == "central.auth_failed":
        return _key_refused(details.get("store_id"), action)
    if code == "central.unavailable" and target == "agent":
        return _central_down(details, action)
    if code == "database.unavailable":
        return _replica_failed(details)
    if code == "order.not_found":
        return AGENT_NOT_FOUND if target == "agent" else None
    return HINTS.get(code)


def _key_refused(store_id: object, action: str) -> str:
    store = store_id if isinstance(store_id, str) and store_id else "STORE"
    return (
        f"central refused the store agent's API key (store {store}): it was revoked or the "
        f"store deactivated, so nothing was {action}. An admin issues a new key with "
        f"`invctl store rotate-key {store}` (after `invctl store activate {store}` if it was "
        "deactivated); put it in the agent's STOREAGENT_API_KEY or --api-key-file and "
        "restart the agent"
    )


def _central_down(details: dict[str, Any], action: str) -> str:
    if action != "sold":
        return (
            f"central is unreachable from the store agent, so nothing was {action} (a cancel "
            "is never queued); try again once central is back"
        )
    offline = details.get("offline")
    if isinstance(offline, dict):
        return (
            "central is unreachable from the store agent and the sale could not be queued "
            f"offline ({offline.get('message') or offline.get('code')}), so nothing was sold"
        )
    return OFFLINE_OFF


def _replica_failed(details: dict[str, Any]) -> str:
    if details.get("outcome") == "voided":
        return (
            "the store agent could not record the sale's outcome, so the sale is void: it "
            "will not happen (any copy central holds is cancelled); ring it up again"
        )
    return "the store agent's replica database is unavailable; nothing was saved or sent"


HINTS = {
    "order.sku_unknown": "check the SKU: `invctl stock show SKU` or `invctl product list`",
    "order.sku_inactive": "the product is not for sale (it is inactive at central)",
    "order.in_progress": "the agent is settling this sale with central right now; run the "
    "same command again in a moment",
    "order.voided": "this sale will not happen; ring it up again with a new "
    "--idempotency-key (or none)",
    "order.key_conflict": "another agent or till used this idempotency key; use a new one, "
    "and make sure only one agent runs for this store",
    "order.not_placed": "nothing was sold, so there is nothing to cancel",
    "idempotency.mismatch": "this --idempotency-key was used for a sale with other lines; "
    "nothing was sold: use a new key for a new sale",
    "replica.not_ready": "the store agent is still building its replica from Kafka (see "
    "`invctl sync status`); try again shortly",
}
AGENT_NOT_FOUND = (
    "the store agent knows the sales made through it; for an order placed at central, ask "
    "central: invctl --central URL orders ..."
)
