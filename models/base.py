"""The declarative base, the Flask-SQLAlchemy handle and the idempotent-insert helper."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, TextClause, bindparam, column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def insert_for(session, model):
    """An INSERT that understands ON CONFLICT, for the session's database (SQLite or PostgreSQL).

    Every write of a Twilio fact goes through one of these, keyed on Twilio's ids, so that a
    retried or duplicated webhook can never add a row twice.
    """
    dialect = session.dialect.name if hasattr(session, "dialect") else session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


_DIALECTS = {
    "postgresql": (postgresql.insert, postgresql.base.PGDialect),
    "sqlite": (sqlite.insert, sqlite.base.SQLiteDialect),
}


def prepared(session, build: Callable) -> TextClause:
    """The statement `build(insert)` makes, compiled once per database and process, for a
    session or a connection.

    `build` receives the database's `insert` (the one with ON CONFLICT) and returns a
    statement whose values are `bindparam`s named for their columns; execute the result
    with those names as parameters. SQLAlchemy never caches these dialect INSERTs
    (`inherit_cache = False`) and would build and compile each one on every webhook, which
    was most of a webhook's time; a `text()` of the compiled SQL, with the same typed
    parameters, is cached like any other statement."""
    dialect = session.dialect if hasattr(session, "dialect") else session.get_bind().dialect
    return _prepare(dialect.name, build)


@lru_cache(maxsize=256)
def _prepare(dialect_name: str, build: Callable) -> TextClause:
    if dialect_name not in _DIALECTS:
        raise RuntimeError(f"unsupported database {dialect_name!r}: use SQLite or PostgreSQL")
    insert, dialect = _DIALECTS[dialect_name]
    statement = build(insert)
    compiled = statement.compile(dialect=dialect(paramstyle="named"))
    params = [
        bindparam(name, type_=bind.type) if bind.required else bindparam(name, value=bind.value, type_=bind.type)
        for bind, name in compiled.bind_names.items()
    ]
    prepared_text = text(compiled.string).bindparams(*params)
    returning = getattr(statement, "_returning", ())
    if returning:  # typed results, e.g. datetimes from SQLite's text columns
        return prepared_text.columns(*(column(c.name, c.type) for c in returning))
    return prepared_text


def binds(*columns) -> dict:
    """`bindparam`s named for these columns (None unless given), for `prepared` statements."""
    return {c.key: bindparam(c.key, None, type_=c.type) for c in columns}
