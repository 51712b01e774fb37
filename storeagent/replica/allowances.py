"""This store's allowances as the replica keeps them (docs/offline.md, "Allowance sales"):
the grants central set aside for the store (table allowance_grants, as central last said)
and the units each local sale took under a grant (table allowance_debits).

What the store may still sell under a grant is central's `remaining` less the units of the
debits central had not booked when it said so. A debit counts as booked once replayed
*before* the fetch that brought `remaining` was sent: each replay takes the next number of a
counter (meta `allowance_replays`) and each fetch keeps the counter's value when it started,
so a fetch answered before a replay was booked never makes its units sellable twice.

Helpers never commit: the caller holds the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import peewee

if TYPE_CHECKING:  # replica.db imports this module for its schema step
    from storeagent.replica.db import Replica

LIVE = "live"  # as central last listed it
UNLISTED = "unlisted"  # no longer in central's list (settling, returned, written off)
CLOSED = "closed"  # its statement was accepted: nothing more to do with it
_REPLAYS = "allowance_replays"
_MARGIN = "allowance_margin_s"
_SERVER_TIME = "allowance_server_time"
_FETCHED_AT = "allowance_fetched_at"

_CREATE = (
    "CREATE TABLE IF NOT EXISTS allowance_grants ("
    "id TEXT NOT NULL PRIMARY KEY, "
    "sku TEXT NOT NULL, "
    "units INTEGER NOT NULL, "
    "remaining INTEGER NOT NULL, "
    "expires_at TEXT NOT NULL, "
    "state TEXT NOT NULL, "
    "fetched_at TEXT NOT NULL, "
    "fetch_mark INTEGER NOT NULL DEFAULT 0, "
    "problem TEXT)",
    "CREATE TABLE IF NOT EXISTS allowance_debits ("
    "local_ref TEXT NOT NULL, "
    "grant_id TEXT NOT NULL, "
    "sku TEXT NOT NULL, "
    "quantity INTEGER NOT NULL, "
    "replayed INTEGER, "  # the replay counter's number when central booked it; NULL: not yet
    # 1: drawn by an online order (central said so in its answer), booked at once
    "online INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (local_ref, grant_id))",
    "CREATE INDEX IF NOT EXISTS allowance_debits_grant ON allowance_debits (grant_id)",
)
_UNBOOKED = (
    "SELECT g.id, COALESCE(SUM(d.quantity), 0) FROM allowance_grants g "
    "LEFT JOIN allowance_debits d ON d.grant_id = g.id "
    "AND (d.replayed IS NULL OR d.replayed > g.fetch_mark) GROUP BY g.id"
)
_GRANT_COLUMNS = "id, sku, units, remaining, expires_at, state, fetched_at, problem"


def create_tables(db: peewee.Database) -> None:
    """Replica schema 9."""
    for statement in _CREATE:
        db.execute_sql(statement)


@dataclass(frozen=True)
class Grant:
    id: str
    sku: str
    units: int
    remaining: int  # as central last said
    expires_at: str
    state: str
    fetched_at: str
    problem: str | None = None  # why central refused its statement, when it did


@dataclass(frozen=True)
class GrantUse:
    """A grant and what this store may still sell under it."""

    grant: Grant
    unbooked: int  # units sold here under it that central had not booked when it said so

    @property
    def left(self) -> int:
        return max(self.grant.remaining - self.unbooked, 0)


@dataclass(frozen=True)
class Debit:
    local_ref: str
    grant_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class FetchedGrant:
    id: str
    sku: str
    units: int
    remaining: int
    expires_at: str


class Allowances:
    """The allowance tables of one replica handle."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    @property
    def replica(self) -> Replica:
        return self._replica

    def replay_mark(self) -> int:
        """The replay counter now: keep it when a fetch starts, pass it to record_fetch()."""
        return int(self._replica.get_meta(_REPLAYS) or 0)

    def record_fetch(
        self,
        grants: Sequence[FetchedGrant],
        *,
        mark: int,
        fetched_at: str,
        margin_s: float,
        server_time: str | None,
    ) -> None:
        """Central's list of the store's live grants, asked for when the counter read `mark`.
        A grant it no longer lists stays (its statement may be due) but is never sold under."""
        db = self._replica.db
        listed = [grant.id for grant in grants]
        marks = ", ".join("?" for _ in listed) or "''"
        db.execute_sql(
            f"UPDATE allowance_grants SET state = ? WHERE state = ? AND id NOT IN ({marks})",  # noqa: S608 (bound values)
            (UNLISTED, LIVE, *listed),
        )
        for grant in grants:
            db.execute_sql(
                "INSERT INTO allowance_grants (id, sku, units, remaining, expires_at, state, "
                "fetched_at, fetch_mark) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO "
                "UPDATE SET remaining = excluded.remaining, expires_at = excluded.expires_at, "
                "state = excluded.state, fetched_at = excluded.fetched_at, "
                "fetch_mark = excluded.fetch_mark WHERE allowance_grants.state != 'closed'",
                (
                    grant.id,
                    grant.sku,
                    grant.units,
                    grant.remaining,
                    grant.expires_at,
                    LIVE,
                    fetched_at,
                    mark,
                ),
            )
        meta = {_MARGIN: str(margin_s), _FETCHED_AT: fetched_at}
        if server_time is not None:
            meta[_SERVER_TIME] = server_time
        self._replica.set_meta(meta)

    def margin_s(self, default: float) -> float:
        raw = self._replica.get_meta(_MARGIN)
        return default if raw is None else float(raw)

    def last_fetch(self) -> tuple[str | None, str | None]:
        """When the grants were last fetched, and central's time in that answer."""
        return self._replica.get_meta(_FETCHED_AT), self._replica.get_meta(_SERVER_TIME)

    def uses(self, states: Iterable[str] = (LIVE,)) -> list[GrantUse]:
        """The grants in `states`, first to expire first, each with its unbooked units."""
        wanted = tuple(states)
        unbooked = dict(self._replica.db.execute_sql(_UNBOOKED).fetchall())
        return [
            GrantUse(grant, int(unbooked.get(grant.id, 0)))
            for grant in self._grants()
            if grant.state in wanted
        ]

    def debit(self, debits: Sequence[Debit]) -> None:
        """The units a sale took under grants (the caller records the sale in the same
        transaction)."""
        for item in debits:
            self._replica.db.execute_sql(
                "INSERT INTO allowance_debits (local_ref, grant_id, sku, quantity) "
                "VALUES (?, ?, ?, ?)",
                (item.local_ref, item.grant_id, item.sku, item.quantity),
            )

    def debits_of(self, local_ref: str) -> list[Debit]:
        rows = self._replica.db.execute_sql(
            "SELECT local_ref, grant_id, sku, quantity FROM allowance_debits "
            "WHERE local_ref = ? ORDER BY sku",
            (local_ref,),
        ).fetchall()
        return [Debit(str(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def replayed(self, local_ref: str) -> None:
        """Central booked the sale: its debits are in the `remaining` of later fetches."""
        number = self._next_mark()
        self._replica.db.execute_sql(
            "UPDATE allowance_debits SET replayed = ? WHERE local_ref = ? AND replayed IS NULL",
            (number, local_ref),
        )

    def drawn_online(self, local_ref: str, draws: Sequence[Debit]) -> None:
        """What central said a sale's online order took from the store's grants: booked
        already, so it counts until a fetch sent after it (central's `remaining` then holds
        it). A grant the sale was sold under offline keeps its own debit."""
        if not draws:
            return
        number = self._next_mark()
        for item in draws:
            self._replica.db.execute_sql(
                "INSERT OR IGNORE INTO allowance_debits (local_ref, grant_id, sku, quantity, "
                "replayed, online) VALUES (?, ?, ?, ?, ?, 1)",
                (item.local_ref, item.grant_id, item.sku, item.quantity, number),
            )

    def _next_mark(self) -> int:
        number = self.replay_mark() + 1
        self._replica.set_meta({_REPLAYS: str(number)})
        return number

    def waiting_units(self) -> int:
        """Units sold under grants that central has not booked yet."""
        row = self._replica.db.execute_sql(
            "SELECT COALESCE(SUM(quantity), 0) FROM allowance_debits WHERE replayed IS NULL"
        ).fetchone()
        return int(row[0])

    def units_sold(self) -> int:
        """Units ever sold here offline under grants (debits are never deleted)."""
        row = self._replica.db.execute_sql(
            "SELECT COALESCE(SUM(quantity), 0) FROM allowance_debits WHERE online = 0"
        ).fetchone()
        return int(row[0])

    def sold_under(self, grant_id: str) -> tuple[int, int]:
        """Units sold here under the grant, offline and by online orders that drew on it
        (what central books against it), and how many of them wait to be replayed."""
        row = self._replica.db.execute_sql(
            "SELECT COALESCE(SUM(quantity), 0), "
            "COALESCE(SUM(CASE WHEN replayed IS NULL THEN quantity ELSE 0 END), 0) "
            "FROM allowance_debits WHERE grant_id = ?",
            (grant_id,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def close(self, grant_id: str) -> None:
        self._replica.db.execute_sql(
            "UPDATE allowance_grants SET state = ?, problem = NULL WHERE id = ?",
            (CLOSED, grant_id),
        )

    def problem(self, grant_id: str, message: str) -> None:
        self._replica.db.execute_sql(
            "UPDATE allowance_grants SET problem = ? WHERE id = ?", (message, grant_id)
        )

    def _grants(self) -> list[Grant]:
        rows = self._replica.db.execute_sql(
            f"SELECT {_GRANT_COLUMNS} FROM allowance_grants ORDER BY expires_at, id"  # noqa: S608
        ).fetchall()
        return [
            Grant(
                str(gid), str(sku), int(units), int(left), str(ends), str(state), str(at), problem
            )
            for gid, sku, units, left, ends, state, at, problem in rows
        ]


def by_sku(uses: Iterable[GrantUse]) -> Mapping[str, list[GrantUse]]:
    found: dict[str, list[GrantUse]] = {}
    for use in uses:
        found.setdefault(use.grant.sku, []).append(use)
    return found
