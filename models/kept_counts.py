"""Figures of past days kept once computed, and used only while no fact behind them changed.

Some figures cannot be summed from per-hour summaries: the flags (each call's depends on the
rules' current settings and on its caller's other calls), and distinct callers inside a
district (a district is only a set of ZIP codes, applied when counting). For whole past
days they are computed from the facts once and kept here, with a stamp that says whether
they still hold:

- `hour_changes` (UTC hour): how many of the writer's batches changed a fact of a call that
  started in that hour (facts/writer.py: one upsert per batch, for the hours of the calls
  the batch named, and a moved call's former hour). It only rises. Hours, not days: today's
  calls leave yesterday's figures alone, though a burst can reach across midnight.
- `kept_counts` (kind, key, topic, part; topic 0 is the whole line; part "" or, for one
  voice per caller, "ZIP code:stance"): a figure computed from the facts, with `stamp`: the
  sum of `hour_changes` over the hours whose calls it depends on, read before it was
  computed. A kept figure is used only while that sum is unchanged, so a late fact about
  any of those calls (a replayed spool, a recording's status) makes it computed again,
  exactly; a stamp read before the figure can only make it recomputed needlessly.

Today's completed hours are kept the same way (models/flags.py `summed_by_days`, models/tally.py
`callers_kept` and `voices_kept`): their figure is stamped with the hours before the current
one, so that only the current hour (for the flags, the hour before it too, which a burst
reaches across) is counted from the facts on each read. A `repeat` flag depends on its
caller's calls of the whole day: today's kept flags name in their key the (caller, topic)
pairs `repeat` flags today (a digest), and a call that makes a new pair makes them counted
again.

A figure is kept by its own short transaction on its own connection (never the caller's,
which may be a read-only request); when the database is busy it is not kept, and the next
request computes it again. `flask counts rebuild` forgets every kept figure, then counts all
time again to keep those it uses; the worker's sweep does the same every WORKER_SWEEP_SECONDS
(after a migration that forgot them, after midnight), so that all-time requests find them
kept (models/tally.py `keep_all_time`). Other windows' figures are kept on first request.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import partial

from sqlalchemy import DateTime, Integer, String, delete, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow

log = logging.getLogger(__name__)
KEEP_BUSY_MS = 100  # how long keeping a figure may wait for SQLite's write lock
KEPT_FROM = timedelta(hours=1)  # a window's part before today this long or longer is kept once counted
# At most this many keys (days, windows) kept per kind: a client asking for a window that
# slides with the clock makes a new key each time; past the bound, the kind's kept figures
# are all forgotten and counted again as they are asked for.
MAX_KEPT_KEYS = 5000


class HourChanges(db.Model):
    __tablename__ = "hour_changes"

    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    changes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class KeptCount(db.Model):
    __tablename__ = "kept_counts"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    part: Mapped[str] = mapped_column(String(32), primary_key=True, default="", server_default="")
    value: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stamp: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


def today() -> datetime:
    """The start of the current UTC day: days before it are the ones worth keeping figures of."""
    return datetime.combine(utcnow().date(), time())


class Stamps:
    """`hour_changes` over a span of hours, read once; `stamp(first, last)` sums the hours
    first..last (both included; first None: from the first)."""

    def __init__(self, session, first: datetime | None, last: datetime) -> None:
        conditions = [HourChanges.hour <= last]
        if first is not None:
            conditions.append(HourChanges.hour >= first)
        rows = session.execute(
            select(HourChanges.hour, HourChanges.changes).where(*conditions).order_by(HourChanges.hour)
        )
        self.hours, self.sums = [], [0]
        for hour, n in rows:
            self.hours.append(hour)
            self.sums.append(self.sums[-1] + n)

    def stamp(self, first: datetime | None, last: datetime) -> int:
        lo = 0 if first is None else bisect_left(self.hours, first)
        return self.sums[bisect_right(self.hours, last)] - self.sums[lo]


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


Figures = dict[tuple[int, str], int]  # {(topic, part): value}


def kept(session, kind: str, keys: list[str]) -> dict[str, tuple[int, Figures]]:
    """{key: (stamp, figures)} for the kept figures of `kind` named by `keys`."""
    found: dict[str, tuple[int, Figures]] = {}
    for chunk in range(0, len(keys), 500):
        rows = session.execute(
            select(KeptCount.key, KeptCount.topic_id, KeptCount.part, KeptCount.value, KeptCount.stamp).where(
                KeptCount.kind == kind, KeptCount.key.in_(keys[chunk : chunk + 500])
            )
        )
        for key, topic_id, part, value, stamp in rows:
            found.setdefault(key, (stamp, {}))[1][(topic_id, part)] = value
    return found


def keep(session, kind: str, figures: dict[str, tuple[int, Figures]]) -> None:
    """Keep {key: (stamp, figures)} (replacing what was kept for those keys), in a
    transaction of its own; give up quietly when the database is busy or refuses."""
    if not figures:
        return
    engine = session.get_bind()
    rows = [
        {"kind": kind, "key": key, "topic_id": topic_id, "part": part, "value": value, "stamp": stamp}
        for key, (stamp, values) in figures.items()
        for (topic_id, part), value in {(0, ""): 0, **values}.items()  # (0, "") marks a key kept
    ]
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {KEEP_BUSY_MS}")
                connection.commit()
            try:
                held = connection.execute(
                    select(func.count()).where(KeptCount.kind == kind, KeptCount.topic_id == 0, KeptCount.part == "")
                ).scalar_one()
                if held + len(figures) > MAX_KEPT_KEYS:
                    connection.execute(delete(KeptCount).where(KeptCount.kind == kind))
                connection.execute(delete(KeptCount).where(KeptCount.kind == kind, KeptCount.key.in_(list(figures))))
                connection.execute(KeptCount.__table__.insert(), rows)
                connection.commit()
            finally:
                connection.rollback()
                if sqlite:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy)}")
                    connection.commit()
    except SQLAlchemyError as exc:  # busy, or a concurrent request kept the same key first
        log.info("figures of %s not kept: %s", kind, exc.__class__.__name__)


def kept_or_computed(
    session,
    kind: str,
    wanted: dict[str, tuple[int, Callable[[], Figures]]],
) -> dict[str, Figures]:
    """{key: figures} for `wanted` ({key: (stamp now, compute)}): the kept figures when their
    stamp is the one given, else computed (and kept). Figures of 0 are left out."""
    found = kept(session, kind, list(wanted))
    result = {}
    for key, (stamp, compute) in wanted.items():
        have = found.get(key)
        if have is not None and have[0] == stamp:
            result[key] = {k: v for k, v in have[1].items() if v}
        else:  # kept at once: a request cut short still leaves what it counted
            result[key] = {k: v for k, v in compute().items() if v}
            keep(session, kind, {key: (stamp, result[key])})
    return result


def by_topic(compute: Callable[[], dict[int, int]]) -> Callable[[], Figures]:
    """`compute`'s {topic: value} as figures with no part."""
    return lambda: {(topic_id, ""): value for topic_id, value in compute().items()}


def topics_of(figures: Figures) -> dict[int, int]:
    return {topic_id: value for (topic_id, _), value in figures.items()}


def verify_kept(session) -> list[str]:
    """Each kept figure still in use (its stamp the days' changes now) that differs from
    the facts, described: what `flask counts verify` adds to its checks."""
    from .flags import recount_by_days
    from .tally import recount_callers, recount_voices

    recount = {
        **{kind: partial(recount_by_days, session, kind) for kind in ("flagged", "blocked", "callbacks")},
        "callers": partial(recount_callers, session),
        "voices": partial(recount_voices, session),
    }
    if not inspect(session.connection()).has_table(KeptCount.__tablename__):
        return []
    problems = []
    keys = session.execute(select(KeptCount.kind, KeptCount.key).distinct()).all()
    for kind, key in sorted(keys):
        stamp, figures = kept(session, kind, [key])[key]
        stamp_now, facts = recount[kind](key)
        if stamp_now != stamp:
            continue  # no longer used: counted again when next asked
        want = {k: v for k, v in facts.items() if v}
        have = {k: v for k, v in figures.items() if v}
        if want != have:
            problems.append(f"kept {kind} {key}: {len(set(want.items()) ^ set(have.items()))} figures differ")
    return problems


def forget_all(session) -> None:
    """Forget every kept figure (in the caller's transaction): `flask counts rebuild` (also
    run by migrations older than the table, which then has nothing to forget)."""
    if inspect(session.connection()).has_table(KeptCount.__tablename__):
        session.execute(delete(KeptCount))


def whole_past_days(start: datetime | None, end: datetime | None, first_call: datetime) -> tuple[list, list]:
    """[start, end) (open ends: from the first call, to now) as its whole UTC days before
    today, and the rest as (start, end) ranges (None for an open end)."""
    lo = max(start, first_call) if start is not None else first_call
    hi = min(end, today()) if end is not None else today()
    first_day = datetime.combine(lo.date(), time())
    if start is not None and first_day < start:  # no call lies before the first one: its day is whole
        first_day += timedelta(days=1)
    last_day = datetime.combine(hi.date(), time())
    if first_day >= last_day:
        return [], [(start, end)]
    days = [first_day + timedelta(days=k) for k in range((last_day - first_day).days)]
    rest = [(start, first_day)] if lo < first_day else []  # none before the first call
    if end is None or last_day < end:
        rest.append((last_day, end))
    return days, rest


def first_call_start(session) -> datetime | None:
    from .calls import Call

    return session.execute(select(func.min(Call.started_at))).scalar()
