"""Allowances: units of a SKU set aside for one store (docs/design/offline-allowances.md).

The stock row keeps `quantity`, what any store may take, and `held`, what allowances set
aside; on hand is their sum. A grant moves units from quantity to held, a return moves them
back, and an order by a store takes its quantity first and then its own live grants. Every
move is one new stock version with its StockChanged, whose `quantity` other stores see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from central.domain.stock import MAX_QUANTITY, StockLevel
from invwire.errors.central import (
    GrantNotYours,
    InvalidInput,
    InvalidQuantity,
    ReplayPending,
    StatementMismatch,
)
from invwire.events import StockChanged
from invwire.orders import Line, require_stock

LIVE, SETTLING, CLOSED = "live", "settling", "closed"
STATES = (LIVE, SETTLING, CLOSED)
GRANTED, RETURNED, USED = "allowance.granted", "allowance.returned", "allowance.used"
WRITTEN_OFF = "allowance.written_off"
GIVEN_BACK = (RETURNED, WRITTEN_OFF)  # the ledger reasons that close a grant
UNCOVERED = "allowance.uncovered"  # the review code of a replayed sale its grant fell short of
MIN_TTL_S = 60
MAX_TTL_S = 30 * 24 * 3600

Change = tuple[StockLevel, StockChanged]


@dataclass(frozen=True)
class Grant:
    id: str
    store_id: str
    sku: str
    remaining: int
    expires_at: datetime
    version: int


@dataclass(frozen=True)
class Taken:
    """What an order takes: the stock changes in order, each SKU's level once they are
    applied, and the store's grants it drew on, as they are after."""

    changes: list[Change]
    after: dict[str, StockLevel]
    grants: list[Grant]
    uncovered: list[dict[str, object]] = field(default_factory=list)


def valid_units(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_QUANTITY:
        raise InvalidQuantity("units is a whole number from 1 to 1,000,000,000", field="units")
    return raw


def expiry(now: datetime, raw_ttl: object) -> datetime:
    """When a grant made at `now` for `raw_ttl` seconds expires."""
    if (
        isinstance(raw_ttl, bool)
        or not isinstance(raw_ttl, int)
        or not MIN_TTL_S <= raw_ttl <= MAX_TTL_S
    ):
        raise InvalidInput(
            f"ttl_s is a whole number of seconds from {MIN_TTL_S} to {MAX_TTL_S}", field="ttl_s"
        )
    return now + timedelta(seconds=raw_ttl)


def set_aside(level: StockLevel, units: int) -> Change:
    """Grant `units`: they leave what anyone may take, all of them or none."""
    require_stock({level.sku: level.quantity}, [Line(level.sku, units)])
    after = StockLevel(level.sku, level.quantity - units, level.version + 1, level.held + units)
    return after, StockChanged(level.sku, after.quantity, -units, GRANTED, after.version)


def give_back(level: StockLevel, units: int) -> Change:
    """A grant's unused `units` become available to anyone again."""
    return _release(level, units, RETURNED, None)


def write_off(level: StockLevel, units: int) -> Change:
    """A grant's `units` become available again without its store's word: a replay under
    it later is booked as a shortfall (book)."""
    return _release(level, units, WRITTEN_OFF, None)


def valid_sold(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_QUANTITY:
        raise InvalidInput("sold is a whole number from 0 to 1,000,000,000", field="sold")
    return raw


def check_statement(grant_id: str, booked: int, sold: int) -> None:
    """A store's statement that it sold `sold` units under a grant central has `booked`
    that many against: equal, or the store has sales still to replay, or the two differ."""
    if sold > booked:
        raise ReplayPending(allowance_id=grant_id, sold=sold, booked=booked)
    if sold < booked:
        raise StatementMismatch(allowance_id=grant_id, sold=sold, booked=booked)


def use(level: StockLevel, units: int, order_id: str) -> Change:
    """`units` of the ordering store's grants go into its order (which then takes them)."""
    return _release(level, units, USED, order_id)


def _release(level: StockLevel, units: int, reason: str, order_id: str | None) -> Change:
    if not 0 < units <= level.held:
        raise RuntimeError(f"{level.sku}: {units} units released, {level.held} held")
    after = StockLevel(level.sku, level.quantity + units, level.version + 1, level.held - units)
    return after, StockChanged(level.sku, after.quantity, units, reason, after.version, order_id)


def state_at(state: str, expires_at: datetime, now: datetime, margin_s: int) -> str:
    """A grant's state at `now`: a live one past its expiry and the margin is settling,
    whether or not the sweep has written so yet."""
    if state == LIVE and expires_at + timedelta(seconds=margin_s) <= now:
        return SETTLING
    return state


def usable(grants: Sequence[Grant], now: datetime) -> list[Grant]:
    """The grants an online order may draw on, the first to expire first. An expired grant
    is left alone: its store may have sold under it offline and not yet said so."""
    live = [g for g in grants if g.expires_at > now and g.remaining > 0]
    return sorted(live, key=lambda g: (g.expires_at, g.id))


def take(
    levels: Mapping[str, StockLevel],
    lines: list[Line],
    order_id: str,
    own: Mapping[str, Sequence[Grant]],
) -> Taken:
    """Every line or nothing: each from what anyone may take first, the rest from the
    ordering store's own grants (`own`, by SKU, in the order to draw on them)."""
    held = {sku: sum(g.remaining for g in own.get(sku, ())) for sku in levels}
    require_stock({sku: level.quantity + held[sku] for sku, level in levels.items()}, lines)
    changes: list[Change] = []
    after: dict[str, StockLevel] = {}
    drawn: list[Grant] = []
    for line in lines:
        level = levels[line.sku]
        short = max(0, line.quantity - level.quantity)
        if short:
            drawn += draw(own.get(line.sku, ()), short)
            level, event = use(level, short, order_id)
            changes.append((level, event))
        level, event = level.adjusted(-line.quantity, "order", order_id)
        changes.append((level, event))
        after[line.sku] = level
    return Taken(changes, after, drawn)


def draw(grants: Sequence[Grant], units: int) -> list[Grant]:
    """The grants `units` are drawn from, in order, with what each has left after."""
    drawn = []
    for grant in grants:
        if units == 0:
            break
        taken = min(units, grant.remaining)
        units -= taken
        drawn.append(replace(grant, remaining=grant.remaining - taken, version=grant.version + 1))
    if units:  # take() checked the lines against these grants first
        raise RuntimeError(f"{units} units drawn beyond the grants")
    return drawn


def book(
    levels: Mapping[str, StockLevel],
    lines: list[Line],
    order_id: str,
    own: Mapping[str, Sequence[Grant]],
    named: Mapping[str, Grant],
) -> Taken:
    """An order some of whose lines were sold under a grant they name (`named`, by id):
    the other lines are taken as `take` takes them, all or nothing; a named line is never
    refused. It takes its grant's remaining units (whatever its state or expiry), the rest
    from what anyone may take if that is enough, and otherwise records what no stock covers
    (nothing goes below zero: the order is left for review)."""
    plain = [line for line in lines if line.grant_id is None]
    taken = take({ln.sku: levels[ln.sku] for ln in plain}, plain, order_id, own)
    for line in lines:
        if line.grant_id is not None:
            grant = named[line.grant_id]
            if grant.sku != line.sku:
                raise GrantNotYours(allowance_id=grant.id, sku=line.sku, field="grant_id")
            _book_line(taken, levels[line.sku], line, grant, order_id)
    return taken


def _book_line(taken: Taken, level: StockLevel, line: Line, grant: Grant, order_id: str) -> None:
    covered = min(line.quantity, grant.remaining)
    short = line.quantity - covered
    if covered:
        level, event = use(level, covered, order_id)
        taken.changes.append((level, event))
        taken.grants.append(
            replace(grant, remaining=grant.remaining - covered, version=grant.version + 1)
        )
    # what anyone may take covers the rest only whole: short of it, none is taken
    booked = line.quantity if short <= level.quantity - covered else covered
    if booked < line.quantity:
        taken.uncovered.append(
            {"sku": line.sku, "grant_id": grant.id, "quantity": line.quantity, "uncovered": short}
        )
    if booked:
        level, event = level.adjusted(-booked, "order", order_id)
        taken.changes.append((level, event))
    taken.after[line.sku] = level


def taken_lines(lines: list[Line], uncovered: Mapping[str, int]) -> list[Line]:
    """What an order left for review as allowance.uncovered took of each line, given the
    units no stock covered by SKU: a cancel gives back only that."""
    taken = [Line(line.sku, line.quantity - uncovered.get(line.sku, 0)) for line in lines]
    return [line for line in taken if line.quantity > 0]
