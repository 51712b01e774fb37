"""The order path's statements with their SQL text built once per shape.

peewee builds every query's SQL anew from its expression tree; for the few statements each
order makes that building cost more than SQLite's work itself (bench/order_ceiling.py
measures the gap). These write the statements peewee would and run them through
`Database.execute_sql`: the same connection, transaction, error translation
(IntegrityError, OperationalError) and query log.

- `RowInsert`: `INSERT INTO t (columns) VALUES (...), (...)`, each value bound with its
  field's own `db_value` conversion.
- `Statement`: a fixed text written with SQL's double-quoted names and `?` marks, turned
  into the database's own quoting and parameter style; `{marks}` stands for a list of
  `size` marks, `{whens}` for `size` `WHEN ? THEN ?` arms of a CASE, and `{lock}` for
  FOR UPDATE where the backend has row locks.
- `together`: several of them (as `Call`s) in one round trip where the database takes
  several statements a query (MySQL, see central.db), one by one where not (SQLite, whose
  statements cost no round trip); each one's `Result`, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import __exception_wrapper__ as driver_errors  # type: ignore[attr-defined]
from pymysql.constants import SERVER_STATUS

# A query of several statements stays well under max_allowed_packet (16 MiB by default, 4 MiB
# on older servers): a staged import's thousands of outbox rows go in several.
MAX_QUERY_CHARS = 1 << 20


@dataclass(frozen=True)
class Call:
    """A statement's SQL text for its database, and its parameters."""

    sql: str
    params: list[Any]


@dataclass(frozen=True)
class Result:
    rows: list[tuple[Any, ...]]
    rowcount: int
    lastrowid: int | None


def together(
    database: peewee.Database, calls: Sequence[Call], max_chars: int = MAX_QUERY_CHARS
) -> list[Result]:
    """Each call's result, in order. The first that fails raises its error (as peewee's,
    as execute_sql does) and those after it are not run: inside a transaction, which the
    caller then rolls back, as it would after the same statements sent one by one. A query
    of several holds at most `max_chars` (one statement longer goes alone)."""
    if getattr(database, "multi_statements", False) and len(calls) > 1:
        return _in_few_queries(database, calls, max_chars)
    return [_result(database.execute_sql(call.sql, call.params)) for call in calls]


def _in_few_queries(
    database: peewee.Database, calls: Sequence[Call], max_chars: int
) -> list[Result]:
    in_transaction = database.in_transaction()
    cursor = database.cursor()
    # Each text is one of this module's (their values escaped by the driver, as execute
    # would), so the ';' between them is the only one outside a quoted value.
    texts = [cursor.mogrify(call.sql, call.params) for call in calls]
    results: list[Result] = []
    for group in _queries(texts, max_chars):
        results += _in_one_query(cursor, group)
        if in_transaction and not _still_in_transaction(cursor):
            raise peewee.InterfaceError(_ENDED)
    return results


_ENDED = (
    "the database ended the transaction in the middle of a query of several statements: "
    "the statements after that point may have been committed on their own"
)


def _still_in_transaction(cursor: Any) -> bool:
    """What the server said in its last answer (SERVER_STATUS_IN_TRANS). Statements after a
    transaction's end ran on their own, each committed (as they did on a Galera node after a
    brute-force abort, where these queries are not used: central.db): raised, the order or
    change is not answered as made, and its COMMIT is not sent."""
    status = getattr(cursor.connection, "server_status", None)
    return not isinstance(status, int) or bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


def _queries(texts: list[str], max_chars: int) -> Iterable[list[str]]:
    """The texts in groups of at most `max_chars` each (one longer goes alone)."""
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) > max_chars:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text) + 1
    if group:
        yield group


def _in_one_query(cursor: Any, texts: list[str]) -> list[Result]:
    with driver_errors:  # the driver's errors as peewee's, as execute_sql does
        cursor.execute(";".join(texts))
        results = [_result(cursor)]
        while cursor.nextset():  # every result read: the connection is left in step
            results.append(_result(cursor))
    if len(results) != len(texts):
        raise peewee.InterfaceError(f"{len(texts)} statements sent, {len(results)} answered")
    return results


def _result(cursor: Any) -> Result:
    return Result(list(cursor.fetchall()), cursor.rowcount, cursor.lastrowid)


class RowInsert:
    """INSERT of `columns` into `model`'s table; values are given as mappings by column."""

    def __init__(self, model: type[peewee.Model], columns: Iterable[str]) -> None:
        self._model = model
        self._fields = tuple(model._meta.fields[name] for name in columns)
        self._sql: dict[tuple[str, str, int], str] = {}

    def insert(self, rows: Iterable[Mapping[str, Any]]) -> None:
        call = self.call(rows)
        if call is not None:
            self._model._meta.database.execute_sql(call.sql, call.params)

    def call(self, rows: Iterable[Mapping[str, Any]]) -> Call | None:
        """The INSERT of `rows`, to run later or `together` with others; None for no rows."""
        fields = self._fields
        params: list[Any] = []
        count = 0
        for row in rows:
            params += [field.db_value(row[field.name]) for field in fields]
            count += 1
        if not count:
            return None
        return Call(self._text(self._model._meta.database, count), params)

    def _text(self, database: peewee.Database, count: int) -> str:
        key = (database.param, database.quote, count)
        text = self._sql.get(key)
        if text is None:
            text = self._sql[key] = self._build(database, count)
        return text

    def _build(self, database: peewee.Database, count: int) -> str:
        opening, closing = database.quote[0], database.quote[1]
        table = f"{opening}{self._model._meta.table_name}{closing}"
        names = ", ".join(f"{opening}{field.column_name}{closing}" for field in self._fields)
        marks = "(" + ", ".join([database.param] * len(self._fields)) + ")"
        # names from the model's metadata, values bound as parameters: nothing from input
        values = ", ".join([marks] * count)
        return f"INSERT INTO {table} ({names}) VALUES {values}"  # noqa: S608


class Statement:
    """A statement of the order path (see the module's docstring for its notation)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._sql: dict[tuple[str, str, bool, int], str] = {}

    def run(self, database: peewee.Database, params: Sequence[Any], size: int = 0) -> Any:
        """The cursor of the statement run with `params` (`size`: how many `{marks}`)."""
        return database.execute_sql(self._text_for(database, size), list(params))

    def call(self, database: peewee.Database, params: Sequence[Any], size: int = 0) -> Call:
        """The statement with `params`, to run `together` with others."""
        return Call(self._text_for(database, size), list(params))

    def run_many(self, database: peewee.Database, rows: Sequence[Sequence[Any]]) -> None:
        """The statement once per row of `rows`, as one `executemany` on the transaction's
        connection (no `{marks}`): the driver loops, not Python and peewee."""
        if not rows:
            return
        text = self._text_for(database, 0)
        with driver_errors:  # the driver's errors as peewee's, as execute_sql does
            database.cursor().executemany(text, [list(row) for row in rows])

    def _text_for(self, database: peewee.Database, size: int) -> str:
        lock = bool(getattr(database, "for_update", False))
        key = (database.param, database.quote, lock, size)
        text = self._sql.get(key)
        if text is None:
            text = self._sql[key] = self._build(database, lock, size)
        return text

    def _build(self, database: peewee.Database, lock: bool, size: int) -> str:
        marks = ", ".join(["?"] * size)
        whens = " ".join(["WHEN ? THEN ?"] * size)
        text = self._text.format(marks=marks, whens=whens, lock=" FOR UPDATE" if lock else "")
        # the texts are this module's callers' constants: no quote or mark inside a literal
        return text.replace('"', database.quote[0]).replace("?", database.param)
