"""SQL at the driver's level, for SQLite and PostgreSQL: what the writer (facts/writer.py)
runs, in the connection's transaction.

Statements go to the driver's cursor as SQL text: a batch runs about fifteen of them, and
SQLAlchemy's statement building, and even its handling of a driver statement's result, cost
more than the database's work. A driver error is raised as SQLAlchemy's
(`DBAPIError.instance`, as its own execution does), and a connection the error shows broken
is invalidated, so that the pool does not hand it out again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import NoReturn

from sqlalchemy.exc import DBAPIError

# Most rows per multi-row statement on SQLite (it allows 32,766 parameters). Each connection
# keeps its prepared statements, and a statement's size grows with its rows: at 256 one web
# worker held 13 MB more after 10,000 calls, for no writer time that could be measured.
CHUNK = 64
INSERT_HEAD = re.compile(r"INSERT INTO (?P<table>\w+) \((?P<columns>[\w, ]+)\)")


@lru_cache(maxsize=64)
def array_casts(table: str, columns: tuple[str, ...]) -> str:
    """`%b::TYPE[]` for each column, its type as PostgreSQL names it, from the models. The
    arrays go in PostgreSQL's binary format (`%b`): psycopg writes a text array in Python,
    quoting each element (about 2 µs a string or a datetime), a binary one in C (0.15 µs)."""
    from sqlalchemy.dialects import postgresql

    from models.base import Base

    found = Base.metadata.tables[table].c
    return ", ".join(f"%b::{found[name].type.compile(dialect=postgresql.dialect())}[]" for name in columns)


def pieces(count: int) -> Iterator[tuple[int, int]]:
    """(start, size) of the pieces a SQLite statement takes `count` rows in: each a power of
    two, at most CHUNK. So a table's statement has a handful of texts, which SQLite's
    statement cache keeps prepared; with one text per row count it parsed nearly every
    statement anew, and each connection's cache filled with large ones (RSS grew with them)."""
    start = 0
    while start < count:
        size = min(CHUNK, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


class Sql:
    """What differs between the two databases at the driver's level."""

    def __init__(self, dialect_name: str) -> None:
        if dialect_name not in ("sqlite", "postgresql"):
            raise RuntimeError(f"unsupported database {dialect_name!r}: use SQLite or PostgreSQL")
        self.postgres = dialect_name == "postgresql"
        self.mark = "%s" if self.postgres else "?"
        self.for_update = " FOR UPDATE" if self.postgres else ""
        self.least = "LEAST" if self.postgres else "MIN"  # the smaller of two values

    def stamp(self, value: datetime | None):
        """A datetime as a parameter: SQLite keeps SQLAlchemy's text form, microseconds always."""
        if value is None or self.postgres:
            return value
        return value.isoformat(" ", "microseconds")

    @staticmethod
    def moment(value) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    def marks(self, width: int) -> str:
        return "(" + ", ".join([self.mark] * width) + ")"

    def rows(self, width: int, count: int) -> str:
        one = self.marks(width)
        return ", ".join([one] * count)


def keyed_arrays(table: str, names: tuple[str, ...], keys: tuple[str, ...]) -> tuple[str, str]:
    """PostgreSQL: (`unnest(…) AS v(names)`, the condition that matches `table`'s row to v's
    by `keys`), for a statement that takes its rows as one array per column."""
    rows = f"unnest({array_casts(table, names)}) AS v({', '.join(names)})"
    return rows, " AND ".join(f"{table}.{k} = v.{k}" for k in keys)


class Statements:
    """Multi-row statements over one connection's driver cursor."""

    def __init__(self, connection) -> None:
        if hasattr(connection, "get_bind"):  # an ORM session: write in its transaction
            connection = connection.connection()
        self.sql = Sql(connection.dialect.name)
        self.connection = connection
        self.cursor = connection.connection.cursor()  # the driver's, in the connection's transaction

    def close(self) -> None:
        self.cursor.close()

    def begin(self) -> None:
        """SQLite: take the write lock now, so that what the batch reads stays true."""
        if not self.sql.postgres and not self.connection.connection.driver_connection.in_transaction:
            self.execute("BEGIN IMMEDIATE")

    def execute(self, statement: str, params: Sequence = (), *, rows: bool = False) -> list:
        """Run SQL as the driver takes it; the rows it returns when `rows`."""
        try:
            self.cursor.execute(statement, tuple(params))
            return self.cursor.fetchall() if rows else []
        except self.connection.dialect.loaded_dbapi.Error as exc:
            self.fail(exc, statement, params)

    def execute_many(self, statement: str, params: list[Sequence]) -> None:
        try:
            self.cursor.executemany(statement, params)
        except self.connection.dialect.loaded_dbapi.Error as exc:
            self.fail(exc, statement, params)

    def fail(self, exc: Exception, statement: str, params) -> NoReturn:
        """Raise a driver's error as SQLAlchemy does, invalidating a connection it shows broken."""
        dialect = self.connection.dialect
        broken = dialect.is_disconnect(exc, self.connection.connection.dbapi_connection, self.cursor)
        if broken:
            self.connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=broken, dialect=dialect
        ) from exc

    def many_rows(self, head: str, rows: list[Sequence], tail: str = "") -> list[tuple]:
        """`head VALUES (…), (…) tail` over the rows, in chunks; the rows any RETURNING gave.
        `head` is `INSERT INTO table (column, …)`. PostgreSQL takes one array per column
        instead (`SELECT * FROM unnest(…)`): the same text for any number of rows, so the
        driver prepares it once per connection and the server neither parses nor plans it
        again, and the driver converts 13 arrays rather than hundreds of values."""
        match = INSERT_HEAD.fullmatch(head)
        columns = tuple(c.strip() for c in match["columns"].split(","))
        if self.sql.postgres:
            casts = array_casts(match["table"], columns)
            return self.execute(
                f"{head} SELECT * FROM unnest({casts}) {tail}",
                [list(column) for column in zip(*rows, strict=True)],
                rows="RETURNING" in tail,
            )
        found: list[tuple] = []
        for start, size in pieces(len(rows)):
            chunk = rows[start : start + size]
            found += self.execute(
                f"{head} VALUES {self.sql.rows(len(columns), len(chunk))} {tail}",
                [value for row in chunk for value in row],
                rows="RETURNING" in tail,
            )
        return found

    def update_rows(
        self, table: str, columns: tuple[str, ...], keys: tuple[str, ...], rows: list[tuple], *, where: str = ""
    ) -> None:
        """Set the `columns` of one row of `table` per tuple (the columns' new values, then the
        `keys`'), no two tuples naming the same row; `where` adds a condition, in which the
        table's columns are named with the table's name. SQLite runs the statement for each
        row (in C, prepared once). PostgreSQL takes the rows as arrays, one per column, in one
        statement of the same text for any number of rows: a statement per row cost the
        writer and the server more than the rest of a batch together."""
        s = self.sql
        if s.postgres:
            sets = ", ".join(f"{c} = v.{c}" for c in columns)
            arrays, match = keyed_arrays(table, (*columns, *keys), keys)
            self.execute(
                f"UPDATE {table} SET {sets} FROM {arrays} WHERE {match}{where}",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            sets = ", ".join(f"{c} = {s.mark}" for c in columns)
            match = " AND ".join(f"{k} = {s.mark}" for k in keys)
            self.execute_many(f"UPDATE {table} SET {sets} WHERE {match}{where}", rows)

    def select_in(self, query: str, keys: list, suffix: str = "") -> list[tuple]:
        """`query IN (keys)suffix`. PostgreSQL takes the keys as one array, in one text for
        any number of them, as `IN (SELECT unnest(array))`: a set the planner can hash or
        look up by index. Not `= ANY(array)`: its prepared plan costs the array as ten
        elements and, on a table of a few thousand rows, scans it comparing each row with
        every key, a time that grows with the table times the batch."""
        if self.sql.postgres:
            return self.execute(f"{query} IN (SELECT unnest(%b)){suffix}", [list(keys)], rows=True)
        found: list[tuple] = []
        for start, size in pieces(len(keys)):
            chunk = keys[start : start + size]
            marks = ", ".join([self.sql.mark] * len(chunk))
            found += self.execute(f"{query} IN ({marks}){suffix}", chunk, rows=True)
        return found

    def select_keys(self, query: str, table: str, keys: tuple[str, ...], rows: list[tuple], suffix: str = "") -> list:
        """`query` (which names `table`) limited to the rows whose `keys` columns equal one of
        `rows`: a join with the keys, as arrays on PostgreSQL, as a `VALUES` list on SQLite.
        The join finds each key by the table's index; SQLite scanned the whole table for
        `(a, b) IN (VALUES …)`, so a batch cost more the more the line had stored."""
        if not rows:
            return []
        if self.sql.postgres:
            arrays, match = keyed_arrays(table, keys, keys)
            return self.execute(
                f"{query} JOIN {arrays} ON {match}{suffix}",
                [list(column) for column in zip(*rows, strict=True)],
                rows=True,
            )
        found: list[tuple] = []
        for start, size in pieces(len(rows)):
            chunk = rows[start : start + size]
            values = ", ".join([self.sql.marks(len(keys))] * len(chunk))
            match = " AND ".join(f"{table}.{k} = v.column{i}" for i, k in enumerate(keys, 1))
            found += self.execute(
                f"{query} JOIN (VALUES {values}) AS v ON {match}{suffix}",
                [value for row in chunk for value in row],
                rows=True,
            )
        return found

    def delete_spent(self, table: str, keys: tuple[str, ...], rows: list[tuple]) -> None:
        """Delete the rows of `table` named by `rows` (values of `keys`) whose `calls` count
        fell to zero."""
        if not rows:
            return
        if self.sql.postgres:
            arrays, match = keyed_arrays(table, keys, keys)
            self.execute(
                f"DELETE FROM {table} USING {arrays} WHERE {match} AND {table}.calls <= 0",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            match = " AND ".join(f"{k} = ?" for k in keys)
            self.execute_many(f"DELETE FROM {table} WHERE {match} AND calls <= 0", rows)

    def delete_rows(self, table: str, keys: tuple[str, ...], rows: list[tuple]) -> None:
        """Delete the rows of `table` named by `rows` (values of `keys`)."""
        if not rows:
            return
        if self.sql.postgres:
            arrays, match = keyed_arrays(table, keys, keys)
            self.execute(
                f"DELETE FROM {table} USING {arrays} WHERE {match}",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            match = " AND ".join(f"{k} = ?" for k in keys)
            self.execute_many(f"DELETE FROM {table} WHERE {match}", rows)
