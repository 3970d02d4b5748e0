"""Flags: calls that look like a flood rather than people, marked, never dropped.

A flag is computed, when asked, from stored facts (`calls`, `call_topics`, `recordings` and
the `caller_days` summary), never decided in a webhook: change a rule's setting and every
window's flags follow at once, for calls already stored. A call may carry several flags.
The rules (each on by default; `.env.example` has the settings):

- `repeat`: the caller's number called about the same topic more than
  `FLAG_REPEAT_CALLS_PER_DAY` times on the call's UTC day (every one of those calls is
  flagged, the first ones too). 0: off.
- `burst`: the number made more than `FLAG_BURST_CALLS` calls (about anything) whose starts
  lie within `FLAG_BURST_MINUTES` minutes of each other; every call of such a run is
  flagged. 0: off.
- `short`: a recording of the call is silent (Twilio reported it `absent`) or lasted
  `FLAG_SHORT_COMMENT_SECONDS` seconds or less (0 s included). `FLAG_SHORT_COMMENTS=false`:
  off.
- `unverified`: Twilio's SHAKEN/STIR verdict on `From` (`StirVerstat`) says the number
  failed or had no validation (`TN-Validation-Failed`, `-A`, `-B`, `-C`, `No-TN-Validation`),
  or `From` was withheld (`anonymous`, `restricted`, `unknown`, `+266696687` …: see
  `models.calls.WITHHELD_NUMBERS`). `FLAG_UNVERIFIED_CALLERS=false`: off.

`repeat` and `burst` need the number's keyed hash: with `CALLER_NUMBERS=none` no number is
kept and they flag nothing.

Speed at millions of calls: every rule starts from a narrow index, not from the window's
calls. `repeat` reads `caller_days` rows above the limit (few) and then those callers'
calls (`ix_calls_caller_hash_started_at`); `burst` first finds the callers with more calls
than the limit over the window's days, and only then reads their calls' starts; `short`
reads recordings by `ix_recordings_duration` and status; `unverified` reads
`ix_calls_stir_verstat_started_at` and `ix_calls_caller_withheld_started_at`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Date, and_, bindparam, cast, func, literal, or_, select, union_all

from .calls import Call, CallTopic
from .recordings import Recording
from .summary import WHOLE_LINE, CallerDay

FLAG_NAMES = ("repeat", "burst", "short", "unverified")
UNVERIFIED_VERSTATS = (
    "TN-Validation-Failed",
    "TN-Validation-Failed-A",
    "TN-Validation-Failed-B",
    "TN-Validation-Failed-C",
    "No-TN-Validation",
)


@dataclass(frozen=True)
class FlagRules:
    """The rules' settings (see the module's docstring); 0 or False switches a rule off."""

    repeat_calls_per_day: int = 5
    burst_calls: int = 3
    burst_minutes: float = 10
    short_comments: bool = True
    short_comment_seconds: int = 1
    unverified_callers: bool = True

    @classmethod
    def from_config(cls, config) -> FlagRules:
        return cls(
            repeat_calls_per_day=config["FLAG_REPEAT_CALLS_PER_DAY"],
            burst_calls=config["FLAG_BURST_CALLS"],
            burst_minutes=config["FLAG_BURST_MINUTES"],
            short_comments=config["FLAG_SHORT_COMMENTS"],
            short_comment_seconds=config["FLAG_SHORT_COMMENT_SECONDS"],
            unverified_callers=config["FLAG_UNVERIFIED_CALLERS"],
        )


def _between(column, start: datetime | None, end: datetime | None) -> list:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _day_of(session, column):
    """The UTC day of a timestamp column, as `caller_days.day` holds it on this database."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(column, Date)
    return func.date(column)  # SQLite keeps days as 'YYYY-MM-DD'


def repeat_calls(session, rules: FlagRules, start: datetime | None, end: datetime | None):
    """SELECT (call_sid, flag) of calls in [start, end) that `repeat` flags, or None (off)."""
    if not rules.repeat_calls_per_day:
        return None
    heavy = [CallerDay.calls > rules.repeat_calls_per_day, CallerDay.topic_id != WHOLE_LINE]
    if start is not None:
        heavy.append(CallerDay.day >= start.date())
    if end is not None:
        heavy.append(CallerDay.day <= end.date())
    return (
        select(Call.call_sid, literal("repeat").label("flag"))
        .select_from(CallerDay)
        .join(Call, Call.caller_hash == CallerDay.caller_hash)
        .join(CallTopic, and_(CallTopic.call_sid == Call.call_sid, CallTopic.topic_id == CallerDay.topic_id))
        .where(*heavy, _day_of(session, Call.started_at) == CallerDay.day, *_between(Call.started_at, start, end))
    )


def burst_call_sids(session, rules: FlagRules, start: datetime | None, end: datetime | None) -> set[str] | None:
    """The calls in [start, end) that `burst` flags, or None (off)."""
    limit, span = rules.burst_calls, timedelta(minutes=rules.burst_minutes)
    if not limit or not rules.burst_minutes:
        return None
    # A run of more than `limit` calls within `span` (< a day or not) lies in days whose
    # sum of the caller's calls exceeds `limit`: only those callers can have one.
    days = [CallerDay.topic_id == WHOLE_LINE]
    if start is not None:
        days.append(CallerDay.day >= (start - span).date())
    if end is not None:
        days.append(CallerDay.day <= (end + span).date())
    suspects = (
        select(CallerDay.caller_hash)
        .where(*days)
        .group_by(CallerDay.caller_hash)
        .having(func.sum(CallerDay.calls) > limit)
    )
    wide_start = start - span if start is not None else None
    wide_end = end + span if end is not None else None
    rows = session.execute(
        select(Call.caller_hash, Call.started_at, Call.call_sid)
        .where(Call.caller_hash.in_(suspects), *_between(Call.started_at, wide_start, wide_end))
        .order_by(Call.caller_hash, Call.started_at, Call.call_sid)
    )
    by_caller: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for caller, started, sid in rows:
        by_caller[caller].append((started, sid))
    flagged: set[str] = set()
    for calls in by_caller.values():
        first = 0
        for last in range(len(calls)):  # the run calls[first..last] spans at most `span`
            while calls[last][0] - calls[first][0] > span:
                first += 1
            if last - first + 1 > limit:
                flagged.update(sid for _, sid in calls[first : last + 1])
    return {
        sid
        for calls in by_caller.values()
        for started, sid in calls
        if sid in flagged and (start is None or started >= start) and (end is None or started < end)
    }


def short_comments(rules: FlagRules, start: datetime | None, end: datetime | None):
    if not rules.short_comments:
        return None
    return (
        select(Recording.call_sid, literal("short").label("flag"))
        .join(Call, Call.call_sid == Recording.call_sid)
        .where(
            or_(Recording.duration <= rules.short_comment_seconds, Recording.status == "absent"),
            *_between(Call.started_at, start, end),
        )
    )


def unverified_callers(rules: FlagRules, start: datetime | None, end: datetime | None) -> list:
    if not rules.unverified_callers:
        return []
    window = _between(Call.started_at, start, end)
    return [
        select(Call.call_sid, literal("unverified").label("flag")).where(
            Call.stir_verstat.in_(UNVERIFIED_VERSTATS), *window
        ),
        select(Call.call_sid, literal("unverified").label("flag")).where(Call.caller_withheld.is_(True), *window),
    ]


def flag_rows(session, rules: FlagRules, start: datetime | None, end: datetime | None):
    """A SELECT of (call_sid, flag) for every flag of every call in [start, end) (a call
    appears once per rule that flags it, maybe more), or None when every rule is off."""
    parts = [
        part
        for part in (repeat_calls(session, rules, start, end), short_comments(rules, start, end))
        if part is not None
    ]
    parts += unverified_callers(rules, start, end)
    bursts = burst_call_sids(session, rules, start, end)
    if bursts:
        parts.append(
            select(Call.call_sid, literal("burst").label("flag")).where(
                Call.call_sid.in_(bindparam("burst_sids", sorted(bursts), expanding=True))
            )
        )
    if not parts:
        return None
    return union_all(*parts) if len(parts) > 1 else parts[0]


def flagged_calls(session, rules: FlagRules, start: datetime | None, end: datetime | None, flag: str | None = None):
    """A SELECT of the distinct call_sids in [start, end) with any flag, or with `flag` (None:
    no call can have one, every rule being off)."""
    rows = flag_rows(session, rules, start, end)
    if rows is None:
        return None
    flagged = rows.subquery()
    query = select(flagged.c.call_sid).distinct()
    return query.where(flagged.c.flag == flag) if flag else query


@dataclass
class FlagCounts:
    flagged: int
    by_topic: dict[int, int]


def count_flagged(
    session, rules: FlagRules, start: datetime | None, end: datetime | None, within: frozenset[str] | None = None
) -> FlagCounts:
    """Calls in [start, end) with any flag, in all and per topic chosen; with `within`, only
    the calls whose caller entered one of those ZIP codes."""
    calls = flagged_calls(session, rules, start, end)
    if calls is None:
        return FlagCounts(0, {})
    if within is not None:
        calls = calls.where(calls.selected_columns.call_sid.in_(_entered_in(within)))
    flagged = calls.subquery()
    total = session.execute(select(func.count()).select_from(flagged)).scalar_one()
    rows = session.execute(
        select(CallTopic.topic_id, func.count())
        .join(flagged, flagged.c.call_sid == CallTopic.call_sid)
        .group_by(CallTopic.topic_id)
    )
    return FlagCounts(total, dict(rows.all()))


def flags_of(session, rules: FlagRules, call_sids: list[str]) -> dict[str, set[str]]:
    """Each call's flags, for the calls named (a page of the inbox)."""
    if not call_sids:
        return {}
    starts = session.execute(
        select(func.min(Call.started_at), func.max(Call.started_at)).where(Call.call_sid.in_(call_sids))
    ).one()
    if starts[0] is None:
        return {}
    rows = flag_rows(session, rules, starts[0], starts[1] + timedelta(microseconds=1))
    found: dict[str, set[str]] = {}
    if rows is None:
        return found
    flagged = rows.subquery()
    wanted = set(call_sids)
    for sid, flag in session.execute(
        select(flagged.c.call_sid, flagged.c.flag).where(flagged.c.call_sid.in_(call_sids))
    ):
        if sid in wanted:
            found.setdefault(sid, set()).add(flag)
    return found


def _entered_in(zips: frozenset[str]):
    """The calls whose caller entered one of `zips` at the ZIP step."""
    return select(Call.call_sid).where(Call.entered_zip.in_(sorted(zips)))


def _zip_condition(within: frozenset[str] | None) -> list:
    return [] if within is None else [Call.entered_zip.in_(sorted(within))]


def count_blocked(session, start: datetime | None, end: datetime | None, within: frozenset[str] | None = None) -> int:
    """Calls in [start, end) the line answered with the block list's message (with `within`,
    of callers who entered one of those ZIP codes: none, as a blocked call asks for none)."""
    return session.execute(
        select(func.count())
        .select_from(Call)
        .where(Call.blocked.is_(True), *_between(Call.started_at, start, end), *_zip_condition(within))
    ).scalar_one()


def count_callbacks(
    session, start: datetime | None, end: datetime | None, within: frozenset[str] | None = None
) -> dict[int, int]:
    """Per topic, the calls in [start, end) that asked for a call back about it (with
    `within`, of callers who entered one of those ZIP codes)."""
    from .callbacks import CallbackRequest

    rows = session.execute(
        select(CallbackRequest.topic_id, func.count(func.distinct(CallbackRequest.call_sid)))
        .join(Call, Call.call_sid == CallbackRequest.call_sid)
        .where(CallbackRequest.topic_id.is_not(None), *_between(Call.started_at, start, end), *_zip_condition(within))
        .group_by(CallbackRequest.topic_id)
    )
    return dict(rows.all())
