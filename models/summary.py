"""Summary rows that make counts fast at millions of calls, kept exact.

- `hourly_counts` (hour, topic; topic 0 is the whole line): calls, routed calls, comments,
  stances, and `callers_new` (callers first counted for the topic in that hour).
- `topic_callers` (topic, caller hash): every distinct caller of a topic, once.
- `caller_hours` (hour, topic, caller hash): who called about what in each hour, for distinct
  callers over a window.
- `caller_days` (UTC day, topic, caller hash): who called about what on each day, and on
  `hourly_counts`, `callers_day_new` (callers first counted for the topic on that day, in that
  hour): distinct callers for a whole day are then a sum of 24 rows, and for several whole
  days a distinct count over one row per caller and day rather than per hour.

Each is written in the same transaction as the fact that changes it, and only when that fact
actually changed something: a retried webhook finds its fact already stored and adds nothing.
`rebuild` recomputes them all from the facts; `verify` reports where they differ.
Hours are the UTC hour of the call's first webhook: the hour a window filters on.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from .base import db

WHOLE_LINE = 0  # topic_id of the hourly row for every call
COUNTED = ("calls", "routed", "comments", "support", "oppose", "other", "callers_new", "callers_day_new")


class HourlyCount(db.Model):
    __tablename__ = "hourly_counts"

    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    routed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    comments: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    support: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    oppose: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    other: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callers_new: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callers_day_new: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TopicCaller(db.Model):
    __tablename__ = "topic_callers"

    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


class CallerHour(db.Model):
    __tablename__ = "caller_hours"

    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


class CallerDay(db.Model):
    __tablename__ = "caller_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- recomputing from the facts ----------------------------------------------------------------


def expected_summaries(session) -> tuple[dict, set, set, set]:
    """(hourly counts, topic callers, caller hours, caller days) as the facts say they should be."""
    from .calls import Call, CallTopic
    from .recordings import Recording, is_comment

    hourly: dict[tuple[datetime, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    hours: dict[str, datetime] = {}
    hashes: dict[str, str | None] = {}
    for call_sid, started_at, caller_hash in session.execute(select(Call.call_sid, Call.started_at, Call.caller_hash)):
        hour = hours[call_sid] = hour_of(started_at)
        hashes[call_sid] = caller_hash
        hourly[(hour, WHOLE_LINE)]["calls"] += 1
    routed, topic_callers, caller_hours = set(), set(), set()
    first_hours: dict[tuple[int, str], datetime] = {}
    first_in_day: dict[tuple[date, int, str], datetime] = {}
    rows = session.execute(select(CallTopic.call_sid, CallTopic.topic_id, CallTopic.stance))
    for call_sid, topic_id, stance in rows:
        if call_sid not in hours:
            continue
        hour, caller = hours[call_sid], hashes[call_sid]
        counts = hourly[(hour, topic_id)]
        counts["calls"] += 1
        if stance:
            counts[stance] += 1
        if call_sid not in routed:
            routed.add(call_sid)
            hourly[(hour, WHOLE_LINE)]["routed"] += 1
        if caller:
            topic_callers.add((topic_id, caller))
            caller_hours.add((hour, topic_id, caller))
            key = (topic_id, caller)
            first_hours[key] = min(first_hours.get(key, hour), hour)
            day_key = (hour.date(), topic_id, caller)
            first_in_day[day_key] = min(first_in_day.get(day_key, hour), hour)
    for (topic_id, _), hour in first_hours.items():
        hourly[(hour, topic_id)]["callers_new"] += 1
    for (_, topic_id, _), hour in first_in_day.items():
        hourly[(hour, topic_id)]["callers_day_new"] += 1
    recordings = session.execute(select(Recording.call_sid, Recording.topic_id, Recording.duration, Recording.status))
    for call_sid, topic_id, duration, status in recordings:
        if call_sid in hours and is_comment(topic_id, duration, status):
            hourly[(hours[call_sid], topic_id)]["comments"] += 1
    hourly = {k: v for k, v in hourly.items() if any(v.values())}
    return hourly, topic_callers, caller_hours, set(first_in_day)


def stored_summaries(session) -> tuple[dict, set, set, set]:
    hourly = {}
    for row in session.scalars(select(HourlyCount)):
        values = {name: getattr(row, name) for name in COUNTED}
        if any(values.values()):
            hourly[(row.hour, row.topic_id)] = values
    topic_callers = set(session.execute(select(TopicCaller.topic_id, TopicCaller.caller_hash)).tuples())
    caller_hours = set(session.execute(select(CallerHour.hour, CallerHour.topic_id, CallerHour.caller_hash)).tuples())
    caller_days = set(session.execute(select(CallerDay.day, CallerDay.topic_id, CallerDay.caller_hash)).tuples())
    return hourly, topic_callers, caller_hours, caller_days


def verify(session) -> list[str]:
    """Every difference between the stored summaries and the facts, described."""
    (want_hourly, want_callers, want_hours, want_days), (have_hourly, have_callers, have_hours, have_days) = (
        expected_summaries(session),
        stored_summaries(session),
    )
    problems = []
    zero = dict.fromkeys(COUNTED, 0)
    for key in sorted(want_hourly.keys() | have_hourly.keys()):
        want, have = want_hourly.get(key, zero), have_hourly.get(key, zero)
        for name in COUNTED:
            if want[name] != have[name]:
                problems.append(
                    f"hour {key[0]:%Y-%m-%d %H:00} topic {key[1]}: {name} {have[name]}, facts say {want[name]}"
                )
    if want_callers != have_callers:
        problems.append(
            f"topic callers: {len(have_callers - want_callers)} extra, {len(want_callers - have_callers)} missing"
        )
    if want_hours != have_hours:
        problems.append(f"caller hours: {len(have_hours - want_hours)} extra, {len(want_hours - have_hours)} missing")
    if want_days != have_days:
        problems.append(f"caller days: {len(have_days - want_days)} extra, {len(want_days - have_days)} missing")
    return problems


def rebuild(session) -> None:
    """Replace every summary row with what the facts say (in the caller's transaction)."""
    hourly, topic_callers, caller_hours, caller_days = expected_summaries(session)
    for model in (HourlyCount, TopicCaller, CallerHour, CallerDay):
        session.execute(delete(model))
    if hourly:
        session.execute(
            HourlyCount.__table__.insert(), [{"hour": h, "topic_id": t, **v} for (h, t), v in hourly.items()]
        )
    if topic_callers:
        session.execute(TopicCaller.__table__.insert(), [{"topic_id": t, "caller_hash": c} for t, c in topic_callers])
    if caller_hours:
        session.execute(
            CallerHour.__table__.insert(), [{"hour": h, "topic_id": t, "caller_hash": c} for h, t, c in caller_hours]
        )
    if caller_days:
        session.execute(
            CallerDay.__table__.insert(), [{"day": d, "topic_id": t, "caller_hash": c} for d, t, c in caller_days]
        )


__all__ = ["HourlyCount", "TopicCaller", "CallerHour", "CallerDay", "hour_of", "rebuild", "verify"]
