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
kept and they flag nothing. "Try the line" calls count for nothing here either: they are
never flagged, and a number's test calls make none of its real calls part of a repeat or a
burst.

Speed at millions of calls: every rule starts from a narrow index, not from the window's
calls. `repeat` reads the `caller_days` rows above the limit (`ix_caller_days_repeats`, a
partial index of the rows above one call) and then those callers' calls
(`ix_calls_caller_hash_started_at`); `burst` first finds the callers with two calls or more
in one hour (or day) of the window (`ix_caller_hours_repeats`), and only then reads their
calls' starts; `short` reads recordings by `ix_recordings_duration_created_at` and the partial
`ix_recordings_absent`; `unverified` reads `ix_calls_stir_verstat_started_at` and the partial
`ix_calls_withheld_started_at`. A narrow window, with few of all the calls (today's last
hours, an afternoon), is counted from one read of its calls instead, the rules applied to
them in Python (`flagged_among_calls`). And a window's flagged calls are the sum of its
days': each past day's are counted once per setting and kept (`count_flagged`,
models/kept_counts.py), and so are today's completed hours but the last (`flags_today`): a
read counts the current hour and the one before it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from functools import partial

from sqlalchemy import and_, exists, false, func, literal, literal_column, or_, select, true, union_all

from .base import utcnow
from .calls import Call, CallTopic
from .kept_counts import (
    KEPT_FROM,
    Stamps,
    by_topic,
    first_call_start,
    hour_floor,
    kept_or_computed,
    today,
    topics_of,
    whole_past_days,
)
from .recordings import Recording
from .summary import WHOLE_LINE, CallerDay, CallerHour, HourlyCount

FLAG_NAMES = ("repeat", "burst", "short", "unverified")
NARROW_SHARE = 20  # a window with fewer than 1/20 of all calls is read from its calls, not the rules' indexes
SPANS_PER_SELECT = 200  # (number, times) spans OR-ed in one SELECT of the union
NUMBERS_PER_SELECT = 500  # numbers (or calls) named in one SELECT's IN (...)
# The conditions of the partial indexes the rules read (written as the indexes say them, so
# that SQLite, which matches them by their text, uses the index).
REPEATED = CallerDay.calls > literal_column("1")
# "Try the line" calls count for nothing: they are never flagged, blocked or counted as asking
# for a call back, and make no real call part of a repeat or a burst (the summaries the rules
# start from leave them out too).
COUNTED_CALL = Call.is_test == false()
ABSENT = Recording.status == literal_column("'absent'")
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

    def key(self) -> str:
        """The settings as text (`from_key` reads it back)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_key(cls, key: str) -> FlagRules:
        return cls(**json.loads(key))

    def any_on(self) -> bool:
        """Whether any rule can flag a call."""
        burst = bool(self.burst_calls and self.burst_minutes)
        return bool(self.repeat_calls_per_day or burst or self.short_comments or self.unverified_callers)

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


def _not_by_index(column):
    """The column, in an expression no index holds: so that the planner reads a rule's partial
    index (few rows) rather than the primary key's range of the window (SQLite, which keeps no
    statistics, cannot tell which is smaller)."""
    return func.coalesce(column, column)


def repeat_spans(session, rules: FlagRules, start: datetime | None, end: datetime | None) -> list | None:
    """The (caller, topic, day's start, next day's start) that `repeat` flags, or None (off):
    the `caller_days` rows above the limit, read from the window's range of the partial index
    of rows above one call (`ix_caller_days_repeats`, which holds all that is read). Few: one
    per number and topic that called too often that day."""
    if not rules.repeat_calls_per_day:
        return None
    heavy = [REPEATED, CallerDay.calls > rules.repeat_calls_per_day, CallerDay.topic_id != WHOLE_LINE]
    if start is not None:
        heavy.append(CallerDay.day >= start.date())
    if end is not None:
        heavy.append(CallerDay.day <= end.date())
    rows = session.execute(select(CallerDay.day, CallerDay.topic_id, CallerDay.caller_hash).where(*heavy))
    spans = []
    for d, topic_id, caller in rows:
        first = datetime.combine(_as_date(d), datetime.min.time())
        spans.append((caller, topic_id, first, first + timedelta(days=1)))
    return sorted(spans)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def burst_suspects(session, rules: FlagRules, start: datetime | None, end: datetime | None) -> list[str]:
    """The callers who can have a burst in [start, end): a run of more than `limit` calls
    within `span` lies in two consecutive hours (a span of at most an hour) or days (less
    than a day), one of which then holds at least half of the run. Such hours are few, and
    the partial index `ix_caller_hours_repeats` holds only them, by hour, with all that is
    read (`ix_caller_days_repeats` the days)."""
    limit, span = rules.burst_calls, timedelta(minutes=rules.burst_minutes)
    need = (limit + 2) // 2
    lo = start - span if start is not None else None
    hi = end + span if end is not None else None
    if span <= timedelta(hours=1):
        table = CallerHour
        window = _between(CallerHour.hour, lo.replace(minute=0, second=0, microsecond=0) if lo else None, hi)
    elif span < timedelta(days=1):
        table = CallerDay
        window = _between(CallerDay.day, lo.date() if lo else None, hi.date() + timedelta(days=1) if hi else None)
    else:
        need, table, window = 1, CallerDay, []
    # The topic as no index holds it: `ix_caller_hours_caller` (topic, caller, hour) would
    # otherwise lead SQLite through every row of the whole line's callers.
    conditions = [_not_by_index(table.topic_id) == WHOLE_LINE, table.calls >= need, *window]
    if need > 1:
        conditions.append(table.calls > literal_column("1"))  # as the partial index says it
    return list(session.scalars(select(table.caller_hash).where(*conditions).distinct()))


def burst_runs(session, rules: FlagRules, start: datetime | None, end: datetime | None) -> list | None:
    """The runs `burst` flags, as (caller, first call's start, last call's start), overlapping
    ones merged; None (off). Every call of the caller's between the two is in the run."""
    limit, span = rules.burst_calls, timedelta(minutes=rules.burst_minutes)
    if not limit or not rules.burst_minutes:
        return None
    suspects = burst_suspects(session, rules, start, end)
    wide_start = start - span if start is not None else None
    wide_end = end + span if end is not None else None
    by_caller: dict[str, list[datetime]] = defaultdict(list)
    for chunk in range(0, len(suspects), NUMBERS_PER_SELECT):
        rows = session.execute(
            select(Call.caller_hash, Call.started_at).where(
                Call.caller_hash.in_(suspects[chunk : chunk + NUMBERS_PER_SELECT]),
                *_between(Call.started_at, wide_start, wide_end),
                COUNTED_CALL,
            )
        )
        for caller, started in rows:
            by_caller[caller].append(started)
    return [(caller, lo, hi) for caller, starts in sorted(by_caller.items()) for lo, hi in runs_in(starts, limit, span)]


def runs_in(starts: list[datetime], limit: int, span: timedelta) -> list[tuple[datetime, datetime]]:
    """The runs of more than `limit` of one number's call starts within `span` of each other,
    as (first start, last start), overlapping ones merged, in order. Every start between a
    run's two is in it."""
    starts = sorted(starts)
    runs: list[tuple[datetime, datetime]] = []
    first = 0
    for last in range(len(starts)):  # the run starts[first..last] spans at most `span`
        while starts[last] - starts[first] > span:
            first += 1
        if last - first + 1 > limit:
            lo, hi = starts[first], starts[last]
            if runs and runs[-1][1] >= lo:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((lo, hi))
    return runs


def is_narrow(session, start: datetime | None, end: datetime | None) -> bool:
    """Whether [start, end) holds fewer than 1/NARROW_SHARE of all calls, by the hourly
    summary (whole hours around it): then reading its calls beats reading a rule's index."""
    if start is None or end is None:
        return False
    line = HourlyCount.topic_id == WHOLE_LINE
    hours = _between(HourlyCount.hour, start.replace(minute=0, second=0, microsecond=0), end)
    inside = session.execute(select(func.sum(HourlyCount.calls)).where(line, *hours)).scalar() or 0
    if inside == 0:
        return True
    return inside * NARROW_SHARE < (session.execute(select(func.sum(HourlyCount.calls)).where(line)).scalar() or 0)


def _short_recording(rules: FlagRules):
    """A recording `short` flags, its duration as no index holds it (so that each is read by
    its call, not by `ix_recordings_duration_created_at`)."""
    return or_(_not_by_index(Recording.duration) <= rules.short_comment_seconds, Recording.status == "absent")


def short_comments(rules: FlagRules, start: datetime | None, end: datetime | None, narrow: bool = False) -> list:
    """Two SELECTs, each driven by its own index on `recordings` (the call's window checked
    per recording: the short and silent ones are few); for a `narrow` window (few calls),
    one SELECT from the window's calls."""
    if not rules.short_comments:
        return []
    if narrow:  # the window's calls first, each call's recordings by their call
        return [
            select(Recording.call_sid, literal("short").label("flag"))
            .join(Call, Call.call_sid == Recording.call_sid)
            .where(_short_recording(rules), *_between(Call.started_at, start, end))
        ]
    in_window = exists().where(Call.call_sid == Recording.call_sid, *_between(Call.started_at, start, end))
    return [
        select(Recording.call_sid, literal("short").label("flag")).where(condition, in_window)
        for condition in (Recording.duration <= rules.short_comment_seconds, ABSENT)
    ]


def unverified_callers(rules: FlagRules, start: datetime | None, end: datetime | None) -> list:
    if not rules.unverified_callers:
        return []
    window = _between(Call.started_at, start, end)
    return [
        select(Call.call_sid, literal("unverified").label("flag")).where(
            Call.stir_verstat.in_(UNVERIFIED_VERSTATS), *window
        ),
        select(Call.call_sid, literal("unverified").label("flag")).where(Call.caller_withheld == true(), *window),
    ]


def flag_rows(
    session,
    rules: FlagRules,
    start: datetime | None,
    end: datetime | None,
    repeats: list | None = None,
    narrow: bool | None = None,
):
    """A SELECT of (call_sid, flag) for every flag of every call in [start, end) (a call
    appears once per rule that flags it, maybe more), or None when every rule is off.
    `narrow`: whether the window has few calls (`is_narrow`, asked when None); then each
    rule reads the window's rows, not its index."""
    if narrow is None:
        narrow = is_narrow(session, start, end)
    parts = [*short_comments(rules, start, end, narrow), *unverified_callers(rules, start, end)]
    window = _between(Call.started_at, start, end)
    spans = (repeat_spans(session, rules, start, end) if repeats is None else repeats) or []
    for chunk in range(0, len(spans), SPANS_PER_SELECT):  # each span by ix_calls_caller_hash_started_at
        parts.append(
            select(Call.call_sid, literal("repeat").label("flag"))
            .join(CallTopic, CallTopic.call_sid == Call.call_sid)
            .where(
                or_(
                    *(
                        and_(
                            Call.caller_hash == caller,
                            CallTopic.topic_id == topic_id,
                            *_between(Call.started_at, lo, hi),
                        )
                        for caller, topic_id, lo, hi in spans[chunk : chunk + SPANS_PER_SELECT]
                    )
                ),
                *window,
                COUNTED_CALL,
            )
        )
    runs = burst_runs(session, rules, start, end) or []
    for chunk in range(0, len(runs), SPANS_PER_SELECT):
        parts.append(
            select(Call.call_sid, literal("burst").label("flag")).where(
                or_(
                    *(
                        and_(Call.caller_hash == caller, Call.started_at >= lo, Call.started_at <= hi)
                        for caller, lo, hi in runs[chunk : chunk + SPANS_PER_SELECT]
                    )
                ),
                *window,
                COUNTED_CALL,
            )
        )
    if not parts:
        return None
    return union_all(*parts) if len(parts) > 1 else parts[0]


def flagged_calls(
    session,
    rules: FlagRules,
    start: datetime | None,
    end: datetime | None,
    flag: str | None = None,
    repeats: list | None = None,
    narrow: bool | None = None,
):
    """A SELECT of the distinct call_sids in [start, end) with any flag, or with `flag` (None:
    no call can have one, every rule being off); `narrow` as `flag_rows` takes it."""
    rows = flag_rows(session, rules, start, end, repeats, narrow)
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
    the calls whose caller entered one of those ZIP codes. A call's flags are its own, so a
    window's are the sum of its days' (`summed_by_days`), each kept stamped with the hours of
    the calls that can flag its calls: those of its UTC days and, for `burst`, those within
    `burst_minutes` of it."""
    if not rules.any_on():
        return FlagCounts(0, {})
    found = summed_by_days(
        session,
        "flagged",
        rules.key(),
        start,
        end,
        within,
        partial(_flagged_counts, session, rules),
        partial(flag_hours, rules),
        partial(flags_today, session, rules),
    )
    return FlagCounts(found.pop(WHOLE_LINE, 0), found)


def summed_by_days(
    session,
    kind: str,
    setting: str,
    start: datetime | None,
    end: datetime | None,
    within: frozenset[str] | None,
    count: Callable[[datetime | None, datetime | None, frozenset[str] | None], dict[int, int]],
    hours: Callable[[datetime, datetime], tuple[datetime, datetime]],
    recent: Callable[[], tuple[datetime, Callable, str, Callable]] | None = None,
) -> dict[int, int]:
    """`count(lo, hi, within)` ({topic: calls}, topic 0 all of them) over [start, end), a
    figure that is a sum over calls: each whole past UTC day's, and each part of a past day
    an hour long or longer, counted once and kept (models/kept_counts.py), stamped with the
    changes of the hours `hours(lo, hi)` gives (first, last). Today's part up to the end
    `recent()` gives ((end, hours, key suffix, count): an hour boundary whose stamp hours,
    by its own `hours`, leave out the current hour) is kept the same way when an hour or
    longer, and the rest of today counted by its own `count`; other parts (short ones) are
    counted from the facts each time. By default today's part is kept up to the current
    hour, by `hours` and `count`. `setting` names what
    else the figure depends on."""
    first_call = first_call_start(session)
    if first_call is None:
        return {}
    days, rest = whole_past_days(start, end, first_call)
    total: dict[int, int] = defaultdict(int)

    def add(counts: dict[int, int]) -> None:
        for topic_id, n in counts.items():
            total[topic_id] += n

    kept_parts = [(day, day + timedelta(days=1), hours, "") for day in days]
    midnight, today_rule = today(), None
    after_last = None
    for lo, hi in rest:
        if hi is None:  # closed at the last call, so that a short end is read as one
            after_last = after_last or session.execute(select(func.max(Call.started_at))).scalar() + timedelta(
                microseconds=1
            )
            hi = max(after_last, lo) if lo is not None else after_last
        if lo is None:  # no call lies before the first one's day
            lo = min(datetime.combine(first_call.date(), datetime.min.time()), hi)
        for a, b in [(lo, midnight), (midnight, hi)] if lo < midnight < hi else [(lo, hi)]:
            lo, hi = a, b
            if hi <= midnight:  # a past day's part
                if hi - lo >= KEPT_FROM:
                    kept_parts.append((lo, hi, hours, ""))
                    continue
            else:  # today's: its hours up to the recent end kept, the rest counted
                today_rule = today_rule or (recent() if recent else (hour_floor(utcnow()), hours, "", count))
                cut, today_hours, suffix, count_today = today_rule
                if cut - lo >= KEPT_FROM:
                    kept_parts.append((lo, min(cut, hi), today_hours, suffix))
                    lo = min(cut, hi)
                if lo < hi:
                    add(count_today(lo, hi, within))
                continue
            if lo < hi:
                add(count(lo, hi, within))
    if kept_parts:
        spans = [part_hours(lo, hi) for lo, hi, part_hours, _ in kept_parts]
        stamps = Stamps(session, min(first for first, _ in spans), max(last for _, last in spans))
        zips = ",".join(sorted(within)) if within is not None else "*"
        wanted = {
            f"{setting}|{zips}|{lo}|{hi}" + (f"|{suffix}" if suffix else ""): (
                stamps.stamp(*span),
                by_topic(partial(count, lo, hi, within)),
            )
            for (lo, hi, _, suffix), span in zip(kept_parts, spans, strict=True)
        }
        for figures in kept_or_computed(session, kind, wanted).values():
            add(topics_of(figures))
    return {topic_id: n for topic_id, n in total.items() if n}


def recount_by_days(session, kind: str, key: str) -> tuple[int | None, dict[tuple[int, str], int]]:
    """(stamp now, figures) from the facts, for a key `summed_by_days` kept; the stamp is
    None when the key is no longer the one asked for (today's flags, the repeats changed)."""
    setting, zips, lo, hi, *suffix = key.split("|")
    lo, hi = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
    within = None if zips == "*" else frozenset(zips.split(",")) - {""}
    if kind == "flagged":
        rules = FlagRules.from_key(setting)
        count, hours = partial(_flagged_counts, session, rules), partial(flag_hours, rules)
        if suffix:  # a part of today, kept by `flags_today`
            _, hours, suffix_now, _ = flags_today(session, rules)
            if suffix != [suffix_now]:
                return None, {}
    else:
        count, hours = DAY_SUMS[kind], call_hours
        count = partial(count, session)
    span = hours(lo, hi)
    found = count(lo, hi, within)
    return Stamps(session, *span).stamp(*span), {(topic_id, ""): n for topic_id, n in found.items()}


def call_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first and last hour of the calls of [start, end)."""
    return hour_floor(start), hour_floor(end - timedelta(microseconds=1))


def flag_hours(rules: FlagRules, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first and last hour of the calls that can flag a call of [start, end): those of
    its UTC days (`repeat`) and, for `burst`, those within `burst_minutes` of it."""
    last_moment = end - timedelta(microseconds=1)
    reach = timedelta(minutes=rules.burst_minutes) if rules.burst_calls and rules.burst_minutes else timedelta()
    first_day = datetime.combine(start.date(), datetime.min.time())
    last_hour = datetime.combine(last_moment.date(), datetime.min.time()) + timedelta(hours=23)
    return min(first_day, hour_floor(start - reach)), max(last_hour, hour_floor(last_moment + reach))


def burst_reach(rules: FlagRules) -> timedelta:
    """How far from a call the calls that can make it part of a burst lie."""
    return timedelta(minutes=rules.burst_minutes) if rules.burst_calls and rules.burst_minutes else timedelta()


def near_hours(rules: FlagRules, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first and last hour of the calls of [start, end) and of those within
    `burst_minutes` of them: all that can flag them but `repeat`'s day."""
    reach = burst_reach(rules)
    return hour_floor(start - reach), hour_floor(end - timedelta(microseconds=1) + reach)


def flags_today(session, rules: FlagRules) -> tuple[datetime, Callable, str, Callable]:
    """How today's flags are kept (`summed_by_days`'s `recent`): up to the hour boundary
    whose calls and those within `burst_minutes` of them lie before the current hour,
    stamped by those hours (`near_hours`), the rest of the day standing in the key: which
    (caller, topic) pairs `repeat` flags today, as a SHA-256 digest. A call later today
    changes a kept figure only by making a new pair (or unmaking one), and then the key.
    The rest of today is counted with the repeats read for the digest (`repeat_spans`
    read once)."""
    end, day = hour_floor(hour_floor(utcnow()) - burst_reach(rules)), today()
    spans = repeat_spans(session, rules, day, day)
    pairs = sorted({(caller, topic_id) for caller, topic_id, _, _ in spans or []})
    digest = hashlib.sha256(repr(pairs).encode()).hexdigest()[:40]

    def count_today(start: datetime, until: datetime, within: frozenset[str] | None) -> dict[int, int]:
        """The rest of today counted, with the repeats just read (they are today's)."""
        inside_today = start >= day and until - timedelta(microseconds=1) < day + timedelta(days=1)
        return _flagged_counts(session, rules, start, until, within, spans if inside_today else None)

    return end, partial(near_hours, rules), f"repeats {digest}", count_today


def _flagged_counts(
    session,
    rules: FlagRules,
    start: datetime | None,
    end: datetime | None,
    within: frozenset[str] | None,
    repeats: list | None = None,
) -> dict[int, int]:
    """{topic: flagged calls} with topic 0 for all of them, counted from the facts (with
    `repeats`, `repeat_spans`' answer for the window, already read): a narrow window's
    (`is_narrow`) from its calls (`flagged_among_calls`), any other's from the rules'
    indexes (`flagged_by_rules`)."""
    if not rules.any_on():
        return {}
    if is_narrow(session, start, end):
        return flagged_among_calls(session, rules, start, end, within, repeats)
    return flagged_by_rules(session, rules, start, end, within, repeats)


def flagged_by_rules(
    session,
    rules: FlagRules,
    start: datetime | None,
    end: datetime | None,
    within: frozenset[str] | None,
    repeats: list | None = None,
) -> dict[int, int]:
    """`_flagged_counts` from the rules' indexes (`flag_rows`), for a window of many calls."""
    calls = flagged_calls(session, rules, start, end, repeats=repeats, narrow=False)
    if calls is None:
        return {}
    flagged = calls.subquery()
    rows = session.execute(
        select(flagged.c.call_sid, CallTopic.topic_id)
        .join(Call, and_(Call.call_sid == flagged.c.call_sid, COUNTED_CALL))
        .outerjoin(CallTopic, CallTopic.call_sid == flagged.c.call_sid)
        .where(*_zip_condition(within))
    )
    sids: set[str] = set()
    counts: dict[int, int] = defaultdict(int)
    for sid, topic_id in rows:
        sids.add(sid)
        if topic_id is not None:
            counts[topic_id] += 1
    counts[WHOLE_LINE] = len(sids)
    return dict(counts)


def flagged_among_calls(
    session,
    rules: FlagRules,
    start: datetime | None,
    end: datetime | None,
    within: frozenset[str] | None,
    repeats: list | None = None,
) -> dict[int, int]:
    """`_flagged_counts` for a window of few calls, from one read of its counted calls (by
    `ix_calls_started_at`): those a rule of their own flags (`short`, `unverified`) and those
    of the numbers in the window's `repeat` spans and `burst` runs, then checked here against
    the runs and, by the calls' topics, the spans. The same figures as `flagged_by_rules`
    (a figure of 0 may be left out by either), without a union of the rules' index reads,
    each of which costs as much to plan and start as reading the window's few calls."""
    spans = (repeat_spans(session, rules, start, end) if repeats is None else repeats) or []
    repeated = {(caller, topic_id, first) for caller, topic_id, first, _ in spans}
    runs: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for caller, lo, hi in burst_runs(session, rules, start, end) or []:
        runs[caller].append((lo, hi))
    own = []  # the rules that a call's own facts decide
    if rules.unverified_callers:
        own += [Call.stir_verstat.in_(UNVERIFIED_VERSTATS), Call.caller_withheld == true()]
    if rules.short_comments:
        own.append(exists().where(Recording.call_sid == Call.call_sid, _short_recording(rules)))
    itself = or_(*own) if own else false()
    repeating = {caller for caller, _, _ in repeated}
    suspects = sorted(repeating | set(runs))
    wanted = list(own)
    if suspects:  # a window of few calls has few numbers: past a bound, all its numbered calls
        few = len(suspects) <= NUMBERS_PER_SELECT
        wanted.append(Call.caller_hash.in_(suspects) if few else Call.caller_hash.is_not(None))
    if not wanted:
        return {}
    candidates = session.execute(
        select(Call.call_sid, Call.caller_hash, Call.started_at, itself.label("itself")).where(
            *_between(Call.started_at, start, end), COUNTED_CALL, *_zip_condition(within), or_(*wanted)
        )
    )
    flagged: set[str] = set()
    maybe_repeated: list[tuple[str, str, datetime]] = []  # (call, number, its day): by its topics
    for sid, caller, started, flagged_itself in candidates:
        if flagged_itself or any(lo <= started <= hi for lo, hi in runs.get(caller, ())):
            flagged.add(sid)
        elif caller in repeating:
            maybe_repeated.append((sid, caller, datetime.combine(started.date(), datetime.min.time())))
    topics = _topics_of(session, sorted(flagged | {sid for sid, _, _ in maybe_repeated}))
    for sid, caller, day in maybe_repeated:
        if any((caller, topic_id, day) in repeated for topic_id in topics.get(sid, ())):
            flagged.add(sid)
    counts: dict[int, int] = defaultdict(int)
    for sid in flagged:
        for topic_id in topics.get(sid, ()):
            counts[topic_id] += 1
    counts[WHOLE_LINE] = len(flagged)
    return dict(counts)


def _topics_of(session, call_sids: list[str]) -> dict[str, list[int]]:
    """{call: its topics} for the calls named (each by `pk_call_topics`)."""
    topics: dict[str, list[int]] = defaultdict(list)
    for chunk in range(0, len(call_sids), NUMBERS_PER_SELECT):
        named = call_sids[chunk : chunk + NUMBERS_PER_SELECT]
        rows = select(CallTopic.call_sid, CallTopic.topic_id).where(CallTopic.call_sid.in_(named))
        for sid, topic_id in session.execute(rows):
            topics[sid].append(topic_id)
    return topics


def flags_of(session, rules: FlagRules, call_sids: list[str]) -> dict[str, set[str]]:
    """Each named call's flags (a page of the inbox), as `flag_rows` gives them for those
    calls over any window that holds them; calls with none are left out.

    Read from the calls themselves and, for `repeat` and `burst`, from their numbers'
    `caller_days` rows and their numbers' calls within `burst_minutes` of theirs: a page
    costs the same however many other calls its hours hold. A test call has none."""
    wanted = sorted(set(call_sids))
    if not wanted:
        return {}
    calls = session.execute(
        select(Call.call_sid, Call.caller_hash, Call.started_at, Call.stir_verstat, Call.caller_withheld).where(
            Call.call_sid.in_(wanted), COUNTED_CALL
        )
    ).all()
    found: dict[str, set[str]] = defaultdict(set)
    if rules.unverified_callers:
        for sid, _, _, verstat, withheld in calls:
            if verstat in UNVERIFIED_VERSTATS or withheld:
                found[sid].add("unverified")
    if rules.short_comments:
        short = or_(Recording.duration <= rules.short_comment_seconds, Recording.status == "absent")
        counted = [sid for sid, *_ in calls]
        for sid in session.scalars(select(Recording.call_sid).where(Recording.call_sid.in_(counted), short)):
            found[sid].add("short")
    numbered = [(sid, caller, started) for sid, caller, started, _, _ in calls if caller and started]
    if numbered and rules.repeat_calls_per_day:
        for sid in _repeated(session, rules.repeat_calls_per_day, numbered):
            found[sid].add("repeat")
    if numbered and rules.burst_calls and rules.burst_minutes:
        for sid in _in_bursts(session, rules.burst_calls, timedelta(minutes=rules.burst_minutes), numbered):
            found[sid].add("burst")
    return dict(found)


def _repeated(session, limit: int, numbered: list[tuple[str, str, datetime]]) -> set[str]:
    """Those of the calls (call_sid, caller, start) whose number called about one of their
    topics more than `limit` times on their UTC day (`caller_days`)."""
    topics = _topics_of(session, sorted({sid for sid, _, _ in numbered}))
    keys = sorted(
        {(started.date(), topic_id, caller) for sid, caller, started in numbered for topic_id in topics.get(sid, ())}
    )
    heavy = set()
    for chunk in range(0, len(keys), SPANS_PER_SELECT):  # each row by its primary key
        rows = select(CallerDay.day, CallerDay.topic_id, CallerDay.caller_hash).where(
            or_(
                *(
                    and_(CallerDay.day == day, CallerDay.topic_id == topic_id, CallerDay.caller_hash == caller)
                    for day, topic_id, caller in keys[chunk : chunk + SPANS_PER_SELECT]
                )
            ),
            CallerDay.calls > limit,
        )
        heavy |= {(_as_date(day), topic_id, caller) for day, topic_id, caller in session.execute(rows)}
    return {
        sid
        for sid, caller, started in numbered
        if any((started.date(), topic_id, caller) in heavy for topic_id in topics.get(sid, ()))
    }


def _in_bursts(session, limit: int, span: timedelta, numbered: list[tuple[str, str, datetime]]) -> set[str]:
    """Those of the calls (call_sid, caller, start) in a run of more than `limit` of their
    number's calls within `span`. Every call of a run that holds a start t lies within `span`
    of t, so each number's calls within `span` of the calls named are all it takes."""
    reach: dict[str, tuple[datetime, datetime]] = {}
    for _, caller, started in numbered:
        lo, hi = reach.get(caller, (started, started))
        reach[caller] = (min(lo, started), max(hi, started))
    spans = sorted((caller, lo - span, hi + span) for caller, (lo, hi) in reach.items())
    starts: dict[str, list[datetime]] = defaultdict(list)
    for chunk in range(0, len(spans), SPANS_PER_SELECT):
        near = or_(
            *(
                and_(Call.caller_hash == caller, Call.started_at >= lo, Call.started_at <= hi)
                for caller, lo, hi in spans[chunk : chunk + SPANS_PER_SELECT]
            )
        )
        for caller, started in session.execute(select(Call.caller_hash, Call.started_at).where(near, COUNTED_CALL)):
            starts[caller].append(started)
    runs = {caller: runs_in(found, limit, span) for caller, found in starts.items()}
    return {sid for sid, caller, started in numbered if any(lo <= started <= hi for lo, hi in runs.get(caller, ()))}


def _zip_condition(within: frozenset[str] | None) -> list:
    return [] if within is None else [Call.entered_zip.in_(sorted(within))]


def count_blocked(session, start: datetime | None, end: datetime | None, within: frozenset[str] | None = None) -> int:
    """Calls in [start, end) the line answered with the block list's message (with `within`,
    of callers who entered one of those ZIP codes: none, as a blocked call asks for none).
    Summed over days as the flags are (`summed_by_days`)."""
    found = summed_by_days(session, "blocked", "", start, end, within, partial(_blocked, session), call_hours)
    return found.get(WHOLE_LINE, 0)


def _blocked(session, start: datetime | None, end: datetime | None, within: frozenset[str] | None) -> dict[int, int]:
    n = session.execute(
        select(func.count())
        .select_from(Call)
        .where(
            Call.blocked == true(),
            COUNTED_CALL,
            *_between(Call.started_at, start, end),
            *_zip_condition(within),
        )
    ).scalar_one()
    return {WHOLE_LINE: n}


def count_callbacks(
    session, start: datetime | None, end: datetime | None, within: frozenset[str] | None = None
) -> dict[int, int]:
    """Per topic, the calls in [start, end) that asked for a call back about it (with
    `within`, of callers who entered one of those ZIP codes). Summed over days as the flags
    are (`summed_by_days`)."""
    found = summed_by_days(session, "callbacks", "", start, end, within, partial(_callbacks, session), call_hours)
    found.pop(WHOLE_LINE, None)
    return found


def _callbacks(session, start: datetime | None, end: datetime | None, within: frozenset[str] | None) -> dict[int, int]:
    """Read from the requests (few), each call found by its key: the window is checked per
    request, not scanned; a narrow window (`is_narrow`) from its calls."""
    from .callbacks import CallbackRequest

    narrow = is_narrow(session, start, end)  # then the window's calls first, by their start
    rows = session.execute(
        select(CallbackRequest.topic_id, func.count(func.distinct(CallbackRequest.call_sid)))
        .join(Call, Call.call_sid == CallbackRequest.call_sid)
        .where(
            CallbackRequest.topic_id.is_not(None),
            COUNTED_CALL,
            *_between(Call.started_at if narrow else _not_by_index(Call.started_at), start, end),
            *_zip_condition(within),
        )
        .group_by(CallbackRequest.topic_id)
    )
    return dict(rows.all())


DAY_SUMS = {"blocked": _blocked, "callbacks": _callbacks}
