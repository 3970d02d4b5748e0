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

- `caller_periods` (period, period start, topic, caller hash) as `caller_days`, per ISO week
  from Monday (`w`) and UTC month (`m`), with its reference count; `period_callers`
  (period, period start, topic): how many of those rows are above zero, so that a
  calendar week's or month's distinct callers are one row per topic.
- `zip_counts` (period, period start, topic, entered ZIP code; "" for none): calls, routed
  calls, comments and stances as in `hourly_counts`, per hour (`h`), UTC day (`d`), UTC
  month (`m`) and all time (`a`, one period starting `ALL_TIME`). Districts are read from
  these at count time (a district is a set of ZIP codes), so changing a district's ZIP
  codes needs no rebuild; any window is a few months, days and hours of rows, plus the
  ragged ends from the facts.
- `caller_voices` (period, period start, topic, caller hash): one voice per caller, the
  caller's latest position on the topic in that UTC day (`d`), ISO week from Monday (`w`),
  month (`m`) or all time (`a`), with the call that gave it (start, `CallSid`) and its
  ZIP code: "latest" is by the call's start, then `CallSid`, never by arrival.
- `voice_counts` (period, period start, topic, ZIP code): how many callers' latest position
  over the period is support, oppose, other: a calendar day, week, month or all time is
  then a handful of rows. Any other window takes the latest per caller over its days'
  `caller_voices` rows and the facts of its ragged ends (models/tally.py).

Each is written in the same transaction as the fact that changes it, and only when that fact
actually changed something: a retried webhook finds its fact already stored and adds nothing.
`rebuild` recomputes them all from the facts; `verify` reports where they differ.
Hours are the UTC hour of the call's first webhook: the hour a window filters on.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String, delete, inspect, literal, select, text
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


# The condition of the partial indexes of `caller_hours` and `caller_days`: the rows a caller's
# one call does not make (few). A query reads them only by saying it too (models/flags.py).
SEVERAL_CALLS = text("calls > 1")


class TopicCaller(db.Model):
    __tablename__ = "topic_callers"

    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_hour: Mapped[datetime | None] = mapped_column(DateTime)


class CallerHour(db.Model):
    __tablename__ = "caller_hours"
    # The hours a caller called more than once (few rows), by hour and holding every column
    # the flags' `burst` rule reads there: any window's are a range of it, read alone.
    __table_args__ = (
        Index(
            "ix_caller_hours_repeats",
            "hour",
            "calls",
            "topic_id",
            "caller_hash",
            sqlite_where=SEVERAL_CALLS,
            postgresql_where=SEVERAL_CALLS,
        ),
        # A caller's hours on a topic: where the writer finds the earliest left when a call
        # stops counting (facts/writer.py `note_callers_gone`).
        Index("ix_caller_hours_caller", "topic_id", "caller_hash", "hour"),
    )

    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class CallerDay(db.Model):
    __tablename__ = "caller_days"
    # The days a caller called about a topic more than once: where the flags' `repeat` rule
    # looks first (models/flags.py). Partial (most rows hold one call), by day, and holding
    # every column the rule reads: any window's are a range of it, read alone.
    __table_args__ = (
        Index(
            "ix_caller_days_repeats",
            "day",
            "calls",
            "topic_id",
            "caller_hash",
            sqlite_where=SEVERAL_CALLS,
            postgresql_where=SEVERAL_CALLS,
        ),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


ALL_TIME = datetime(2000, 1, 1)  # the period start of the all-time rows of zip_counts, caller_voices, voice_counts
ZIP_COUNTED = ("calls", "routed", "comments", "support", "oppose", "other")
STANCE_NAMES = ("support", "oppose", "other")


class CallerPeriod(db.Model):
    __tablename__ = "caller_periods"

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class PeriodCallers(db.Model):
    __tablename__ = "period_callers"

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    callers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ZipCount(db.Model):
    __tablename__ = "zip_counts"

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    zip: Mapped[str] = mapped_column(String(5), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    routed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    comments: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    support: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    oppose: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    other: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CallerVoice(db.Model):
    __tablename__ = "caller_voices"
    # A caller's rows on a topic, for the writer (facts/writer.py `note_voices`).
    __table_args__ = (Index("ix_caller_voices_caller", "caller_hash", "topic_id"),)

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    caller_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    stance: Mapped[str | None] = mapped_column(String(16))  # None only while a batch holds the row
    zip: Mapped[str] = mapped_column(String(5), default="", server_default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    call_sid: Mapped[str | None] = mapped_column(String(64))


class VoiceCount(db.Model):
    __tablename__ = "voice_counts"

    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    zip: Mapped[str] = mapped_column(String(5), primary_key=True)
    support: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    oppose: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    other: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- recomputing from the facts ----------------------------------------------------------------


def _calls_have_is_test(session) -> bool:
    return any(column["name"] == "is_test" for column in inspect(session.connection()).get_columns("calls"))


def call_states(session) -> dict:
    """What each stored call counts for (`facts.rules.CallState`), from the facts."""
    from facts.rules import CallState

    from .calls import Call, CallTopic
    from .recordings import Recording, is_comment

    # A migration older than `calls.is_test` rebuilds the summaries too: then no call is a test.
    is_test = Call.is_test if _calls_have_is_test(session) else literal(False)
    calls = {
        sid: CallState(started_at, caller, zip=entered_zip, is_test=bool(test))
        for sid, started_at, caller, entered_zip, test in session.execute(
            select(Call.call_sid, Call.started_at, Call.caller_hash, Call.entered_zip, is_test)
        )
    }
    for sid, topic_id, stance in session.execute(select(CallTopic.call_sid, CallTopic.topic_id, CallTopic.stance)):
        if sid in calls:
            calls[sid].stances[topic_id] = stance
    rows = session.execute(select(Recording.call_sid, Recording.topic_id, Recording.duration, Recording.status))
    for sid, topic_id, duration, status in rows:
        if sid in calls and is_comment(topic_id, duration, status):
            calls[sid].comments[topic_id] += 1
    return calls


def expected_summaries(session, states: dict | None = None) -> tuple[dict, dict, Counter, Counter]:
    """(hourly counts, topic callers with their first hour, caller hours and caller days with
    their reference counts) as the facts say they should be: what each stored call counts for
    (`facts.rules.CallState`), added up from nothing."""
    return _expected(states if states is not None else call_states(session))[:4]


def stored_caller_periods(session) -> tuple[Counter, Counter]:
    caller_periods = Counter(
        {
            (p, st, t, c): n
            for p, st, t, c, n in session.execute(
                select(
                    CallerPeriod.period,
                    CallerPeriod.period_start,
                    CallerPeriod.topic_id,
                    CallerPeriod.caller_hash,
                    CallerPeriod.calls,
                )
            )
        }
    )
    period_callers = Counter(
        {
            (p, st, t): n
            for p, st, t, n in session.execute(
                select(PeriodCallers.period, PeriodCallers.period_start, PeriodCallers.topic_id, PeriodCallers.callers)
            )
            if n
        }
    )
    return caller_periods, period_callers


def _expected(states: dict) -> tuple:
    from facts.rules import Counts

    counts = Counts()
    for state in states.values():
        counts.add_call_state(state)
    counts.count_callers()
    hourly: dict[tuple[datetime, int], dict[str, int]] = {}
    for key, changes in counts.hourly_rows().items():
        hourly[key] = {name: changes.get(name, 0) for name in COUNTED}
    hourly = {k: v for k, v in hourly.items() if any(v.values())}
    zips = {key: {name: changes.get(name, 0) for name in ZIP_COUNTED} for key, changes in counts.zip_rows().items()}
    periods = (+counts.caller_periods, +counts.period_callers)
    return hourly, counts.first_hours, +counts.caller_hours, +counts.caller_days, zips, periods


def expected_voices(states: dict) -> tuple[dict, dict]:
    """(caller voices, voice counts) as the facts say: each caller's latest position per topic
    and period (`facts.rules.latest_positions`), and how many per stance and ZIP code."""
    from facts.rules import Position, latest_positions, voice_totals, zip_key

    positions = [
        (topic_id, state.caller, Position(state.started_at, sid, stance, zip_key(state.zip)))
        for sid, state in states.items()
        if state.caller and not state.is_test
        for topic_id, stance in state.stances.items()
        if stance
    ]
    latest = latest_positions(positions)
    counts: dict[tuple, dict[str, int]] = {}
    for (period, start, topic_id, zip, stance), n in voice_totals(latest).items():
        counts.setdefault((period, start, topic_id, zip), dict.fromkeys(STANCE_NAMES, 0))[stance] = n
    return latest, counts


def stored_zip_and_voices(session) -> tuple[dict, dict, dict]:
    from facts.rules import Position

    zips = {}
    for row in session.scalars(select(ZipCount)):
        values = {name: getattr(row, name) for name in ZIP_COUNTED}
        if any(values.values()):
            zips[(row.period, row.period_start, row.topic_id, row.zip)] = values
    voices = {
        (v.period, v.period_start, v.topic_id, v.caller_hash): Position(v.started_at, v.call_sid, v.stance, v.zip)
        for v in session.scalars(select(CallerVoice))
        if v.stance is not None
    }
    counts = {}
    for row in session.scalars(select(VoiceCount)):
        values = {name: getattr(row, name) for name in STANCE_NAMES}
        if any(values.values()):
            counts[(row.period, row.period_start, row.topic_id, row.zip)] = values
    return zips, voices, counts


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
    """Every difference between the stored summaries and the facts, described; and every
    figure of past days kept (models/kept_counts.py) that differs from them."""
    states = call_states(session)
    want_hourly, want_callers, want_hours, want_days, want_zips, (want_periods, want_period_callers) = _expected(states)
    have_periods, have_period_callers = stored_caller_periods(session)
    have_hourly, have_callers, have_hours, have_days = stored_summaries(session)
    want_voices, want_voice_counts = expected_voices(states)
    have_zips, have_voices, have_voice_counts = stored_zip_and_voices(session)
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
        ("zip counts", want_zips, have_zips),
        ("caller periods", want_periods, have_periods),
        ("period callers", want_period_callers, have_period_callers),
        ("caller voices", want_voices, have_voices),
        ("voice counts", want_voice_counts, have_voice_counts),
    ):
        extra = len(have.keys() - want.keys())
        missing = len(want.keys() - have.keys())
        differing = sum(1 for key in want.keys() & have.keys() if want[key] != have[key])
        if extra or missing or differing:
            problems.append(f"{name}: {extra} extra, {missing} missing, {differing} differing")
    from .kept_counts import verify_kept

    return problems + verify_kept(session)


def rebuild(session) -> None:
    """Replace every summary row with what the facts say (in the caller's transaction), and
    forget every figure kept of past days (models/kept_counts.py)."""
    from .kept_counts import forget_all

    forget_all(session)
    states = call_states(session)
    hourly, topic_callers, caller_hours, caller_days, zips, (caller_periods, period_callers) = _expected(states)
    voices, voice_counts = expected_voices(states)
    for model in (
        HourlyCount,
        TopicCaller,
        CallerHour,
        CallerDay,
        CallerPeriod,
        PeriodCallers,
        ZipCount,
        CallerVoice,
        VoiceCount,
    ):
        session.execute(delete(model))
    if caller_periods:
        session.execute(
            CallerPeriod.__table__.insert(),
            [
                {"period": p, "period_start": st, "topic_id": t, "caller_hash": c, "calls": n}
                for (p, st, t, c), n in caller_periods.items()
            ],
        )
    if period_callers:
        session.execute(
            PeriodCallers.__table__.insert(),
            [
                {"period": p, "period_start": st, "topic_id": t, "callers": n}
                for (p, st, t), n in period_callers.items()
            ],
        )
    if zips:
        session.execute(
            ZipCount.__table__.insert(),
            [{"period": p, "period_start": st, "topic_id": t, "zip": z, **v} for (p, st, t, z), v in zips.items()],
        )
    if voices:
        session.execute(
            CallerVoice.__table__.insert(),
            [
                {"period": p, "period_start": st, "topic_id": t, "caller_hash": c, "stance": v.stance}
                | {"zip": v.zip, "started_at": v.started_at, "call_sid": v.call_sid}
                for (p, st, t, c), v in voices.items()
            ],
        )
    if voice_counts:
        session.execute(
            VoiceCount.__table__.insert(),
            [
                {"period": p, "period_start": st, "topic_id": t, "zip": z, **v}
                for (p, st, t, z), v in voice_counts.items()
            ],
        )
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


__all__ = [
    "HourlyCount",
    "TopicCaller",
    "CallerHour",
    "CallerDay",
    "CallerPeriod",
    "PeriodCallers",
    "ZipCount",
    "CallerVoice",
    "VoiceCount",
    "hour_of",
    "rebuild",
    "verify",
]
