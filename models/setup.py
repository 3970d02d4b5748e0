"""Wiring the database into the app: engine settings per database, and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import event
from sqlalchemy.engine import Engine

from config import PROJECT_DIR

from .base import db

migrate = Migrate()
SQLITE_CHECKPOINT_PAGES = 10_000  # pages of 4 KiB in the write-ahead log before it is copied back


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite: WAL, so that readers never block the writer; synchronous=NORMAL, which in WAL
    keeps every committed transaction through an application crash (a power cut may lose
    the last few); foreign keys on; the log copied into the database once it holds
    `SQLITE_CHECKPOINT_PAGES` pages rather than SQLite's 1,000. A page the writer changes in
    many batches (an index's upper levels, this hour's rows) is then copied once for ten times
    as many batches; the commits, which run the copy, took half as much of the writer's CPU
    (docs/benchmark.md). The log file stays at that size, about 40 MB."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cursor.close()


def engine_options(url: str, sqlite_busy_seconds: float) -> dict:
    """SQLite waits at most `sqlite_busy_seconds` for the write lock (then the webhook spools).
    PostgreSQL gives up connecting after 3 s, and each pooled connection is checked before use
    (`pool_pre_ping`): after the database restarts or fails over, or ends our sessions, the
    next request on each connection gets a fresh one instead of an error. The check is one
    empty statement per checkout (0.25 ms on loopback here): a console or API request pays it
    once; with write-behind a webhook does not check out at all (its process does, for the
    script's version once a second and for each batch of its writer)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": sqlite_busy_seconds, "check_same_thread": False}}
    return {
        "pool_size": 4,
        "max_overflow": 8,
        "pool_recycle": 1800,
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": 3},
    }


def init_app(app: Flask) -> None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(url, app.config["SQLITE_BUSY_SECONDS"]))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"), render_as_batch=True, compare_type=True)
