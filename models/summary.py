"""Summary rows that make counts fast at millions of calls, kept exact.

- `hourly_counts` (hour, topic; topic 0 is the whole line): calls, routed calls, comments,
  stances; `callers_new` (callers of the topic whose earliest call falls in that hour) and
  `callers_day_new` (in a day's first hour, 00:00 UTC: the topic's distinct callers that day):
  distinct callers for all time are then a sum per topic, for a whole day a sum of 24 rows.
- `topic_callers` (topic, caller hash): every distinct caller of a topic, once, with the
  hour of their earliest call about it.
- `caller_hours` (hour, topic, caller hash) and `caller_days` (UTC day, topic, caller hash):
  who called about what in each hour and on each day, for distinct callers over a window,
  with `calls`, how many of the caller's calls about the topic put the row there (a row
  exists while that is above zero: a call whose start moves takes its part with it).

Each is written in the same transaction as the fact that changes it, and only when that fact
actually changed something: a retried webhook finds its fact already stored and adds nothing.
`rebuild` recomputes them all from the facts; `verify` reports where they differ.
Hours are the UTC hour of the call's first webhook: the hour a window filters on.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, String, delete, inspect, literal, select
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
    first_hour: Mapped[datetime | None] = mapped_column(DateTime)


class CallerHour(db.Model):
    __tablename__ = "caller_hours"

    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class CallerDay(db.Model):
    __tablename__ = "caller_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- recomputing from the facts ----------------------------------------------------------------


def _calls_have_is_test(session) -> bool:
    return any(column["name"] == "is_test" for column in inspect(session.connection()).get_columns("calls"))


def expected_summaries(session) -> tuple[dict, dict, Counter, Counter]:
    """(hourly counts, topic callers with their first hour, caller hours and caller days with
    their reference counts) as the facts say they should be: what each stored call counts for
    (`facts.rules.CallState`), added up from nothing."""
    from facts.rules import CallState, Counts

    from .calls import Call, CallTopic
    from .recordings import Recording, is_comment

    # A migration older than `calls.is_test` rebuilds the summaries too: then no call is a test.
    is_test = Call.is_test if _calls_have_is_test(session) else literal(False)
    calls = {
        sid: CallState(started_at, caller, is_test=bool(test))
        for sid, started_at, caller, test in session.execute(
            select(Call.call_sid, Call.started_at, Call.caller_hash, is_test)
        )
    }
    for sid, topic_id, stance in session.execute(select(CallTopic.call_sid, CallTopic.topic_id, CallTopic.stance)):
        if sid in calls:
            calls[sid].stances[topic_id] = stance
    rows = session.execute(select(Recording.call_sid, Recording.topic_id, Recording.duration, Recording.status))
    for sid, topic_id, duration, status in rows:
        if sid in calls and is_comment(topic_id, duration, status):
            calls[sid].comments[topic_id] += 1
    counts = Counts()
    for state in calls.values():
        counts.add_call_state(state)
    counts.count_callers()
    hourly: dict[tuple[datetime, int], dict[str, int]] = {}
    for key, changes in counts.hourly_rows().items():
        hourly[key] = {name: changes.get(name, 0) for name in COUNTED}
    hourly = {k: v for k, v in hourly.items() if any(v.values())}
    return hourly, counts.first_hours, +counts.caller_hours, +counts.caller_days


def stored_summaries(session) -> tuple[dict, dict, Counter, Counter]:
    hourly = {}
    for row in session.scalars(select(HourlyCount)):
        values = {name: getattr(row, name) for name in COUNTED}
        if any(values.values()):
            hourly[(row.hour, row.topic_id)] = values
    first_hours = {
        (t, c): h
        for t, c, h in session.execute(select(TopicCaller.topic_id, TopicCaller.caller_hash, TopicCaller.first_hour))
    }
    caller_hours = Counter(
        {
            (h, t, c): n
            for h, t, c, n in session.execute(
                select(CallerHour.hour, CallerHour.topic_id, CallerHour.caller_hash, CallerHour.calls)
            )
        }
    )
    caller_days = Counter(
        {
            (d, t, c): n
            for d, t, c, n in session.execute(
                select(CallerDay.day, CallerDay.topic_id, CallerDay.caller_hash, CallerDay.calls)
            )
        }
    )
    return hourly, first_hours, caller_hours, caller_days


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
    for name, want, have in (
        ("topic callers", want_callers, have_callers),
        ("caller hours", want_hours, have_hours),
        ("caller days", want_days, have_days),
    ):
        extra = len(have.keys() - want.keys())
        missing = len(want.keys() - have.keys())
        differing = sum(1 for key in want.keys() & have.keys() if want[key] != have[key])
        if extra or missing or differing:
            problems.append(f"{name}: {extra} extra, {missing} missing, {differing} differing")
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
        session.execute(
            TopicCaller.__table__.insert(),
            [{"topic_id": t, "caller_hash": c, "first_hour": h} for (t, c), h in topic_callers.items()],
        )
    if caller_hours:
        session.execute(
            CallerHour.__table__.insert(),
            [{"hour": h, "topic_id": t, "caller_hash": c, "calls": n} for (h, t, c), n in caller_hours.items()],
        )
    if caller_days:
        session.execute(
            CallerDay.__table__.insert(),
            [{"day": d, "topic_id": t, "caller_hash": c, "calls": n} for (d, t, c), n in caller_days.items()],
        )


__all__ = ["HourlyCount", "TopicCaller", "CallerHour", "CallerDay", "hour_of", "rebuild", "verify"]
