"""Which grants cover an offline sale (docs/offline.md, "Allowance sales"). Pure.

A line is covered by one live grant of its SKU whose `expires_at - margin` is still ahead on
the agent's estimate of central's clock and that has units left for the whole line (left:
central's `remaining` less this store's sales under it that central has not booked yet).
Each line takes one grant, the first to expire, so that a replayed line names one grant.
A sale is sold under allowances only when every line is covered; otherwise it is not, and
the reason says why (the first line that is not covered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from invwire.orders import Line
from storeagent.replica.allowances import GrantUse

NONE = "allowance.none"  # no live grant of the SKU
EXPIRED = "allowance.expired"  # its grants are within the margin of their expiry, or past it
SHORT = "allowance.short"  # no grant of the SKU has units left for the whole line
OUTCOME_UNKNOWN = "allowance.outcome_unknown"  # central may hold the sale already
REASONS = frozenset({NONE, EXPIRED, SHORT})


@dataclass(frozen=True)
class Cover:
    grants: dict[str, str]  # SKU -> the grant it is sold under


def cover(
    lines: Sequence[Line],
    grants: Mapping[str, Sequence[GrantUse]],
    *,
    now: datetime,
    margin_s: float,
) -> Cover | str:
    """The grant of each line's SKU, or the reason the sale is not covered."""
    chosen: dict[str, str] = {}
    for line in lines:
        # sold under a grant only while now < expires_at - margin
        found = _grant_for(line, grants.get(line.sku, ()), now + timedelta(seconds=margin_s))
        if found in REASONS:
            return found
        chosen[line.sku] = found
    return Cover(chosen)


def _grant_for(line: Line, uses: Sequence[GrantUse], after: datetime) -> str:
    """The id of the grant that covers the line, or a reason (one of REASONS)."""
    if not uses:
        return NONE
    ahead = [use for use in uses if datetime.fromisoformat(use.grant.expires_at) > after]
    if not ahead:
        return EXPIRED
    for use in ahead:
        if use.left >= line.quantity:
            return use.grant.id
    return SHORT
