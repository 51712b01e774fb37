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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import peewee
from peewee import __exception_wrapper__ as driver_errors  # type: ignore[attr-defined]


class RowInsert:
    """INSERT of `columns` into `model`'s table; values are given as mappings by column."""

    def __init__(self, model: type[peewee.Model], columns: Iterable[str]) -> None:
        self._model = model
        self._fields = tuple(model._meta.fields[name] for name in columns)
        self._sql: dict[tuple[str, str, int], str] = {}

    def insert(self, rows: Iterable[Mapping[str, Any]]) -> None:
        fields = self._fields
        params: list[Any] = []
        count = 0
        for row in rows:
            params += [field.db_value(row[field.name]) for field in fields]
            count += 1
        if count:
            database = self._model._meta.database
            database.execute_sql(self._text(database, count), params)

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
