"""The write path: how the facts a webhook learns reach the database, exactly once, in any order.

```
webhook --facts--> WritePath.submit(facts) / take_number(sid) / flush()
                     |  DirectWrites: one transaction before the reply ----\
                     |  WriteBehind: the thread's journal, a batch later ---+-> writer -> database
                     +  the spool, while the database is away -> Replayer -/
                        rules: (what is stored, the batch's facts) -> (rows, summary changes)
```

- `record`: a fact as a named, serialisable record, and its one-line JSON form.
- `rules`: the merge rule of every stored column and the summaries' arithmetic, as pure
  functions (no database): whatever order and batches a call's facts come in, the result
  is the same.
- `writer`: applies the rules with a fixed number of SQL statements per batch
  (`statements`: the driver-level SQL of SQLite and PostgreSQL).
- `journal` (`WriteBehind`) and `DirectWrites` below: the two ways a webhook's facts are
  handed over. `spool`: where they wait while the database is away, and their replay.
- `numbers`: comment numbers taken in blocks, for the `<Record>` action's reply.
- `identity`: which database a journal or spool file was written for.
- `threads`: the writer's and the replayer's threads, named for the kernel too (`top -H`).

The app holds one `WritePath` (`write_path(app)`); nothing else writes a webhook's facts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Flask
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from models import db

from .identity import DatabaseStamp
from .numbers import Numbers
from .record import Fact
from .spool import Breaker, Replayer, Spool, WriterTurn, database_unavailable
from .writer import apply, take_numbers

log = logging.getLogger(__name__)
T = TypeVar("T")


class WritePath:
    """What a webhook needs of the write path: `submit` its facts, `take_number` for a
    comment's reference, `flush` (for commands and tests). Shared parts: the spool, its
    replayer, the breaker that skips a database known to be away, and (SQLite) the turn
    that lets one writer at a time in."""

    def __init__(self, app: Flask, spool: Spool, breaker: Breaker, replayer: Replayer, turn) -> None:
        self.app, self.spool, self.breaker, self.replayer, self.turn = app, spool, breaker, replayer, turn
        self.numbers = Numbers()

    def submit(self, facts: list[Fact]) -> dict[str, int] | None:
        """Hand over one webhook's facts; on return they are safe (written, journalled or
        spooled). Returns each recording's number when they were written now, else None."""
        raise NotImplementedError

    def take_number(self, recording_sid: str) -> int | None:
        """The comment number to read back for a recording before its facts are written, or
        None when the write gives it (direct writes) or none can be had (the database away)."""
        return None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until what was submitted before this call is written or spooled."""
        return True

    def write_now(self, work: Callable[[Connection], T], where: str = "") -> T | None:
        """`work(connection)` in a transaction of its own; None when the database would not
        (logged; when it is down, the breaker skips it for a while)."""
        if not self.breaker.closed():
            return None
        try:
            with self.turn, db.engine.begin() as connection:
                return work(connection)
        except SQLAlchemyError as exc:
            if not database_unavailable(exc):
                log.exception("the database refused the facts of %s", where)
            elif "database is locked" in str(getattr(exc, "orig", exc)):  # busy, not down
                log.warning("database locked too long at %s", where)
            else:
                self.breaker.trip()
                log.warning("database unavailable (%s)", getattr(exc, "orig", exc))
        return None


class DirectWrites(WritePath):
    """Each webhook's facts in one transaction before its reply (`WRITE_BEHIND` off)."""

    def written(self, connection, numbers: dict[str, int]) -> dict[str, int]:
        self.spool.stamp.learn(connection)  # once: the files it spools name this database
        return numbers

    def submit(self, facts: list[Fact]) -> dict[str, int] | None:
        stored = self.write_now(lambda connection: self.written(connection, apply(connection, facts)), facts[0].name)
        if stored is None:
            self.spool.append(facts)
            self.replayer.start()
            log.info("spooled %d fact(s)", len(facts))
        return stored


def write_path(app: Flask) -> WritePath:
    """The app's write path."""
    return app.extensions["facts"]


def init_app(app: Flask) -> None:
    from .commands import spool_cli
    from .journal import WriteBehind

    cfg = app.config
    url = cfg["SQLALCHEMY_DATABASE_URI"]
    spool, breaker = Spool(cfg["SPOOL_DIR"], DatabaseStamp(url)), Breaker(cfg["DB_COOL_OFF_SECONDS"])
    replayer = Replayer(app, spool, breaker)
    # SQLite has one writer at a time and no queue for the rest: the web processes' threads
    # take turns here instead of sleeping in SQLite's busy handler.
    turn = WriterTurn(url.removeprefix("sqlite:///") + ".writer-lock") if url.startswith("sqlite:///") else None
    turn = turn or contextlib.nullcontext()
    if cfg["WRITE_BEHIND"]:
        path: WritePath = WriteBehind(
            app, spool, breaker, replayer, turn, fsync=cfg["JOURNAL_FSYNC"], gather=cfg["WRITE_BEHIND_GATHER_MS"] / 1000
        )
    else:
        path = DirectWrites(app, spool, breaker, replayer, turn)
    app.extensions["facts"] = path
    app.cli.add_command(spool_cli)


__all__ = ["DirectWrites", "Fact", "WritePath", "apply", "init_app", "take_numbers", "write_path"]
