"""Counting, in one place: the API, the CSV, the console and the checks all call `tally()` (the counts page
`line_callers()` too);
nothing else answers a count. What one call counts for, and how its stored facts merge, is
stated once, in facts/rules.py (`CallState`, `call_counts`); the summaries the writer keeps
and `flask counts verify`'s recomputation both follow it, and `tally()` reads them.

- `calls`: calls whose first webhook falls in the window. Calls played from the console's
  "Try the line" (`calls.is_test`) count for nothing, here and in the summaries.
- per topic `calls`: distinct calls that chose it; `callers`: distinct keyed hashes of
  `From` among them (withheld numbers excluded; None when numbers are not kept);
  `comments`: recordings for the topic longer than 0 s whose status is not absent or
  failed; `stance`: per call and topic, the position of the highest step that gave one.
- `unrouted`: calls that chose no topic, but for the blocked ones.
- `blocked`: calls answered with the block list's message (they choose no topic).
- `flagged`, per topic `flagged`: calls with any flag (models/flags.py, computed from the
  facts with the rules' current settings); per topic `callbacks`: calls that asked for a call
  back about it (models/callbacks.py). Both count calls, beside all calls.
- `line_callers()`: distinct callers of the whole line: a caller counts once however many
  calls and topics, whether or not a call chose a topic (the summaries keep the whole line's
  callers as topic 0).

- per topic `district`: its calls and positions split by where the caller said they are
  (the ZIP code entered at the ZIP step): `inside` a district, `outside` it, or `unknown`
  (not asked, skipped, unreadable). None when the line has no district; keyed by district
  name when it has several. Twilio's caller-ID place (`FromZip`) is never used.
- per topic `per_caller`: one voice per caller: each caller who gave a position on the topic
  in the window counts once, with the position of their latest call in the window that gave
  one; "latest" is by the call's start, then its `CallSid` (facts/rules.py `Position`). None
  when numbers are not kept (`CALLER_NUMBERS=none`: callers cannot be told apart).
- `inside=District`: every figure counts only the calls inside that district (a caller's
  voice is inside when the call that gave their latest position is).

Whole hours of a window are read from the hourly summaries (models/summary.py); the parts of
an hour at either end are counted from the facts themselves. Both give the same numbers:
tests/test_order_free.py compares windows of every kind after any order of delivery, and
`flask counts verify` checks the summaries against the facts.

Districts and voices, at a million calls:

- The split by district is read from `zip_counts` (per entered ZIP code) over the window's
  calendar pieces: whole months, then whole UTC days, then whole hours, and the facts for
  the ragged ends (`calendar_pieces`); all time is one row per topic and ZIP code. A
  district is only a set of ZIP codes applied at read time, so editing one changes every
  window at once, with nothing to rebuild.
- One voice per caller over a calendar UTC day, ISO week (Monday to Monday), month or all
  time is read from `voice_counts` (a few rows). Any other window takes, per (topic,
  caller), the latest of the `caller_voices` rows of the window's whole months, then whole
  ISO weeks, then whole UTC days (`voice_pieces`; each row the caller's latest in its
  period) and of the facts of its ragged ends: one ranked query.
- With `inside`, the distinct callers are counted from the facts of the window's calls in
  the district (no summary keeps callers by ZIP code); over a window that is not a
  calendar one (several days, a day in another time zone), distinct callers from the facts
  and one voice per caller from `caller_voices` and the facts; the flags from the facts.
  Each of these, for the part of a window before today (an hour or more), is counted once
  and kept (models/kept_counts.py), exact while no fact about those days changes; today's
  part is counted from the facts and merged (a caller counts once, their latest position
  stands); today's completed hours are kept too, so that a read counts only the current
  hour (the flags: and the hour before it). On SQLite the latest row per caller is taken
  with a bare column beside max(), on PostgreSQL by ranking.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial

from sqlalchemy import and_, case, distinct, exists, false, func, literal, or_, select, union_all
from sqlalchemy.orm import aliased

from .base import utcnow
from .calls import Call, CallTopic
from .flags import FlagCounts, FlagRules, count_blocked, count_callbacks, count_flagged
from .kept_counts import KEPT_FROM, Figures, Stamps, by_topic, kept_or_computed, today, topics_of
from .line import District, Topic, line_script
from .recordings import NOT_A_COMMENT, Recording
from .summary import (
    ALL_TIME,
    WHOLE_LINE,
    ZIP_COUNTED,
    CallerDay,
    CallerHour,
    CallerVoice,
    HourlyCount,
    PeriodCallers,
    VoiceCount,
    ZipCount,
    hour_of,
)

STANCE_NAMES = ("support", "oppose", "other")


@dataclass
class TopicCount:
    slug: str
    digit: str
    name: str
    enabled: bool
    calls: int = 0
    callers: int | None = 0
    comments: int = 0
    stance: dict = field(default_factory=lambda: dict.fromkeys(STANCE_NAMES, 0))
    per_caller: dict | None = None
    district: dict | None = None
    flagged: int = 0
    callbacks: int = 0

    def figures(self) -> list:
        """calls, callers ("" when numbers are not kept), comments, support, oppose, other:
        the columns every table of counts shows."""
        return [
            self.calls,
            "" if self.callers is None else self.callers,
            self.comments,
            *(self.stance[name] for name in STANCE_NAMES),
        ]

    def voice_figures(self) -> list:
        """support, oppose, other once per caller ("" when numbers are not kept)."""
        return [("" if self.per_caller is None else self.per_caller[name]) for name in STANCE_NAMES]

    def district_figures(self, districts: tuple[District, ...]) -> list:
        """calls, support, oppose, other inside, outside and unknown, per district in turn."""
        if self.district is None:
            return []
        splits = [self.district] if len(districts) == 1 else [self.district[d.name] for d in districts]
        return [split[place][name] for split in splits for place in PLACES for name in ("calls", *STANCE_NAMES)]


PLACES = ("inside", "outside", "unknown")


def district_columns(districts: tuple[District, ...]) -> list[str]:
    """The CSV's column names for `TopicCount.district_figures`: inside_calls, inside_support...
    (one district), or mayor_inside_calls... (several)."""
    prefixes = [""] if len(districts) == 1 else [f"{d.name}_" for d in districts]
    return [f"{prefix}{place}_{name}" for prefix in prefixes for place in PLACES for name in ("calls", *STANCE_NAMES)]


@dataclass
class Tally:
    calls: int
    unrouted: int
    topics: list[TopicCount]
    flagged: int = 0
    blocked: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Partial:
    """Counts for one piece of a window, to be added to the others."""

    calls: int = 0
    routed: int = 0
    topics: dict[int, dict[str, int]] = field(default_factory=dict)

    def topic(self, topic_id: int) -> dict[str, int]:
        return self.topics.setdefault(topic_id, {"calls": 0, "comments": 0, **dict.fromkeys(STANCE_NAMES, 0)})

    def add(self, other: Partial) -> None:
        self.calls += other.calls
        self.routed += other.routed
        for topic_id, counts in other.topics.items():
            mine = self.topic(topic_id)
            for name, value in counts.items():
                mine[name] += value


def _between(column, start: datetime | None, end: datetime | None) -> list:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def counted_call():
    """The condition on `calls` for a call that counts: not one played from "Try the line"."""
    return Call.is_test.is_(False)


def from_facts(session, start: datetime | None, end: datetime | None) -> Partial:
    """Count [start, end) straight from the facts (used for the ragged ends of a window)."""
    window = [*_between(Call.started_at, start, end), counted_call()]
    part = Partial()
    part.calls = session.execute(select(func.count()).select_from(Call).where(*window)).scalar_one()
    part.routed = session.execute(
        select(func.count(distinct(CallTopic.call_sid))).join(Call, Call.call_sid == CallTopic.call_sid).where(*window)
    ).scalar_one()
    rows = session.execute(
        select(
            CallTopic.topic_id,
            func.count(),
            *(func.sum(case((CallTopic.stance == name, 1), else_=0)) for name in STANCE_NAMES),
        )
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(*window)
        .group_by(CallTopic.topic_id)
    )
    for topic_id, calls, *stances in rows:
        counts = part.topic(topic_id)
        counts["calls"] = calls
        counts.update({name: int(value or 0) for name, value in zip(STANCE_NAMES, stances, strict=True)})
    comments = session.execute(
        select(Recording.topic_id, func.count())
        .join(Call, Call.call_sid == Recording.call_sid)
        .where(
            *window,
            Recording.topic_id.is_not(None),
            Recording.duration > 0,
            or_(Recording.status.is_(None), Recording.status.not_in(NOT_A_COMMENT)),
        )
        .group_by(Recording.topic_id)
    )
    for topic_id, n in comments:
        part.topic(topic_id)["comments"] = n
    return part


def from_summaries(session, start: datetime | None, end: datetime | None) -> Partial:
    """Count whole hours [start, end) from `hourly_counts`."""
    part = Partial()
    rows = session.execute(
        select(
            HourlyCount.topic_id,
            *(func.sum(getattr(HourlyCount, name)) for name in ("calls", "routed", "comments", *STANCE_NAMES)),
        )
        .where(*_between(HourlyCount.hour, start, end))
        .group_by(HourlyCount.topic_id)
    )
    for topic_id, calls, routed, comments, *stances in rows:
        if topic_id == WHOLE_LINE:
            part.calls, part.routed = int(calls or 0), int(routed or 0)
            continue
        counts = part.topic(topic_id)
        counts.update(calls=int(calls or 0), comments=int(comments or 0))
        counts.update({name: int(value or 0) for name, value in zip(STANCE_NAMES, stances, strict=True)})
    return part


def distinct_callers(session, whole: tuple | None, ends: list[tuple]) -> dict[int, int]:
    """Distinct callers per topic over whole hours `whole` and ragged `ends`."""
    if whole is not None and whole == (None, None) and not ends:
        rows = session.execute(
            select(HourlyCount.topic_id, func.sum(HourlyCount.callers_new)).group_by(HourlyCount.topic_id)
        )
        return {topic_id: int(n or 0) for topic_id, n in rows}
    period = calendar_period(*whole) if whole is not None and not ends and None not in whole else None
    if period is not None and period[0] in ("w", "m"):  # a calendar week or month: one row per topic
        rows = session.execute(
            select(PeriodCallers.topic_id, PeriodCallers.callers).where(
                PeriodCallers.period == period[0], PeriodCallers.period_start == period[1]
            )
        )
        return {topic_id: int(n or 0) for topic_id, n in rows}
    if whole is not None and not ends and all(is_midnight(end) for end in whole):
        if whole[1] - whole[0] > timedelta(days=1):
            return callers_kept(session, whole[0], whole[1], None)
        return callers_on_days(session, whole[0].date(), whole[1].date())
    both = _topic_callers(whole, ends).subquery()
    rows = session.execute(select(both.c.topic_id, func.count(distinct(both.c.caller_hash))).group_by(both.c.topic_id))
    return dict(rows.all())


def _topic_callers(whole: tuple | None, ends: list[tuple]):
    """(topic, caller hash) rows, repeats included: `caller_hours` over whole hours `whole`,
    the facts over ragged `ends`."""
    parts = []
    if whole is not None:
        parts.append(select(CallerHour.topic_id, CallerHour.caller_hash).where(*_between(CallerHour.hour, *whole)))
    for start, end in ends:
        parts.append(
            select(CallTopic.topic_id, Call.caller_hash)
            .join(Call, Call.call_sid == CallTopic.call_sid)
            .where(*_between(Call.started_at, start, end), Call.caller_hash.is_not(None), counted_call())
        )
        parts.append(  # the whole line's callers: every call's, whatever it chose
            select(literal(WHOLE_LINE).label("topic_id"), Call.caller_hash).where(
                *_between(Call.started_at, start, end), Call.caller_hash.is_not(None), counted_call()
            )
        )
    return union_all(*parts)


def line_callers(session, since: datetime | None = None, until: datetime | None = None) -> int:
    """Distinct callers of the whole line among calls first seen in [since, until) (naive UTC;
    None for open ends): each caller once, however many calls and topics, whether or not a
    call chose one. Read as per-topic callers are, from the whole line's rows (topic 0)."""
    whole, ends = window_pieces(since, until)
    return distinct_callers(session, whole, ends).get(WHOLE_LINE, 0)


def is_midnight(moment: datetime | None) -> bool:
    return moment is not None and moment == datetime.combine(moment.date(), time())


def callers_on_days(session, first: date, end: date) -> dict[int, int]:
    """Distinct callers per topic on the UTC days [first, end): for one day, the sum of its
    hours' `callers_day_new`; for several, a distinct count over one row per caller and day."""
    if end <= first:
        return {}
    if end == first + timedelta(days=1):
        since = datetime.combine(first, time())
        rows = session.execute(
            select(HourlyCount.topic_id, func.sum(HourlyCount.callers_day_new))
            .where(*_between(HourlyCount.hour, since, since + timedelta(days=1)))
            .group_by(HourlyCount.topic_id)
        )
        return {topic_id: int(n or 0) for topic_id, n in rows}
    rows = session.execute(
        select(CallerDay.topic_id, func.count(distinct(CallerDay.caller_hash)))
        .where(CallerDay.day >= first, CallerDay.day < end)
        .group_by(CallerDay.topic_id)
    )
    return dict(rows.all())


def _ceil_hour(moment: datetime) -> datetime:
    floor = hour_of(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def window_pieces(since: datetime | None, until: datetime | None) -> tuple[tuple | None, list[tuple]]:
    """[since, until) as its whole hours (start, end), read from the summaries (None when the
    window holds no whole hour), and its ragged ends, counted from the facts."""
    first_whole = _ceil_hour(since) if since is not None else None
    last_whole = hour_of(until) if until is not None else None
    if first_whole is not None and last_whole is not None and first_whole >= last_whole:
        return None, [(since, until)]  # less than an hour's edge to edge: all from the facts
    ends = []
    if since is not None and since < first_whole:
        ends.append((since, first_whole))
    if until is not None and last_whole < until:
        ends.append((last_whole, until))
    return (first_whole, last_whole), ends


def tally(
    session,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    callers_known: bool = True,
    districts: tuple[District, ...] = (),
    inside: District | None = None,
    voices: bool | None = None,
    flag_rules: FlagRules | None = None,
    flags: bool = True,
) -> Tally:
    """Counts for calls first seen in [since, until) (naive UTC; None for open ends). With
    `districts`, each topic's split by district; with `inside`, only the calls inside it;
    `voices` (default on) adds one voice per caller, None when callers are not known. Flags
    by `flag_rules` (default: each rule's default setting); `flags=False` leaves `flagged` and
    `callbacks` at 0 (the chart's bars and the metrics, which do not show them)."""
    voices = callers_known and voices is not False  # callers must be told apart to count each once
    zips = zip_split(session, since, until) if districts or inside is not None else {}
    if inside is not None:
        zips = {t: {z: c for z, c in by_zip.items() if z in inside.zips} for t, by_zip in zips.items()}
        total = Partial()
        for topic_id, by_zip in zips.items():
            for counts in by_zip.values():
                if topic_id == WHOLE_LINE:
                    total.calls += counts["calls"]
                    total.routed += counts["routed"]
                else:
                    mine = total.topic(topic_id)
                    for name in ("calls", "comments", *STANCE_NAMES):
                        mine[name] += counts[name]
        callers = callers_inside(session, since, until, inside) if callers_known else {}
    else:
        total = Partial()
        whole, ends = window_pieces(since, until)
        if whole is not None:
            total.add(from_summaries(session, *whole))
        for start, end in ends:
            total.add(from_facts(session, start, end))
        if not callers_known:
            callers = {}
        elif calendar_period(since, until) is None:  # any other window: its past part kept
            callers = callers_kept(session, since, until, None)
        else:
            callers = distinct_callers(session, whole, ends)
    per_caller = caller_voices(session, since, until) if voices else {}
    if inside is not None:
        per_caller = {t: {z: c for z, c in by_zip.items() if z in inside.zips} for t, by_zip in per_caller.items()}
    within = inside.zips if inside is not None else None
    rules = flag_rules or FlagRules()
    flagged = count_flagged(session, rules, since, until, within) if flags else FlagCounts(0, {})
    callbacks = count_callbacks(session, since, until, within) if flags else {}
    blocked = count_blocked(session, since, until, within)

    counts = []
    for topic in session.scalars(select(Topic).order_by(Topic.position, Topic.id)):
        found = total.topics.get(topic.id, {})
        voice = dict.fromkeys(STANCE_NAMES, 0)
        for by_stance in per_caller.get(topic.id, {}).values():
            for name in STANCE_NAMES:
                voice[name] += by_stance[name]
        counts.append(
            TopicCount(
                topic.slug,
                topic.digit,
                next(iter(topic.names.values())),
                topic.enabled,
                calls=found.get("calls", 0),
                callers=callers.get(topic.id, 0) if callers_known else None,
                comments=found.get("comments", 0),
                stance={name: found.get(name, 0) for name in STANCE_NAMES},
                per_caller=voice if voices else None,
                district=district_split(zips.get(topic.id, {}), districts) if districts else None,
                flagged=flagged.by_topic.get(topic.id, 0),
                callbacks=callbacks.get(topic.id, 0),
            )
        )
    unrouted = total.calls - total.routed - blocked  # a blocked call is in no topic
    return Tally(calls=total.calls, unrouted=unrouted, topics=counts, flagged=flagged.flagged, blocked=blocked)


def keep_all_time(session, app) -> None:
    """Count all time as the API and the counts page count it (the whole line, then inside
    each of the live script's districts, flags by the app's rules), for the figures it keeps: each past day's
    flags, blocked calls and call-backs, distinct callers inside a district, today's completed
    hours (models/kept_counts.py). The worker's sweep and `flask counts rebuild` call it, so
    that no all-time request pays for counting every past day from the facts after the kept
    figures were forgotten (a rebuild, a migration), nor the day just ended after midnight.
    Where the figures are kept already, it reads them back and counts only what is new.
    Ends the session's read transaction."""
    config = app.config
    callers_known = config["CALLER_NUMBERS"] != "none"
    rules = FlagRules.from_config(config)
    districts = line_script(app).get(session).districts
    for inside in (None, *districts):
        tally(session, callers_known=callers_known, districts=districts, inside=inside, flag_rules=rules)
        session.rollback()  # no snapshot held between counts (PostgreSQL keeps old rows for it)


def district_split(by_zip: dict[str, dict[str, int]], districts: tuple[District, ...]) -> dict:
    """A topic's calls and positions per place (inside, outside, unknown), for one district,
    or keyed by district name for several."""
    splits = {}
    for district in districts:
        split = {place: dict.fromkeys(("calls", *STANCE_NAMES), 0) for place in PLACES}
        for entered, counts in by_zip.items():
            place = split[district.place(entered)]
            for name in place:
                place[name] += counts[name]
        splits[district.name] = split
    return splits[districts[0].name] if len(districts) == 1 else splits


# --- calendar pieces ----------------------------------------------------------------------------


def _ceil_day(moment: datetime) -> datetime:
    floor = datetime(moment.year, moment.month, moment.day)
    return floor if floor == moment else floor + timedelta(days=1)


def _floor_day(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day)


def _floor_month(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1)


def _next_month(moment: datetime) -> datetime:
    """The first moment of the next month; `datetime.max` after the calendar's last month
    (a window there is never a whole month)."""
    if moment.year == datetime.max.year and moment.month == 12:
        return datetime.max
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1)


def _ceil_month(moment: datetime) -> datetime:
    floor = _floor_month(moment)
    return floor if floor == moment else _next_month(floor)


def calendar_pieces(since: datetime, until: datetime) -> tuple[list[tuple[str, datetime, datetime]], list[tuple]]:
    """[since, until) as ranges of `zip_counts` periods ((period, first start, end)): whole
    months, then whole UTC days, then whole hours; and its ragged ends, for the facts."""
    first_hour, last_hour = _ceil_hour(since), hour_of(until)
    if first_hour >= last_hour:
        return [], [(since, until)] if since < until else []
    ends = [(a, b) for a, b in ((since, first_hour), (last_hour, until)) if a < b]
    first_day, last_day = _ceil_day(first_hour), _floor_day(last_hour)
    if first_day >= last_day:
        return [("h", first_hour, last_hour)], ends
    pieces = [("h", first_hour, first_day), ("h", last_day, last_hour)]
    first_month, last_month = _ceil_month(first_day), _floor_month(last_day)
    if first_month >= last_month:
        pieces.append(("d", first_day, last_day))
    else:
        pieces += [("d", first_day, first_month), ("d", last_month, last_day), ("m", first_month, last_month)]
    return [p for p in pieces if p[1] < p[2]], ends


def call_span(session) -> tuple[datetime | None, datetime | None]:
    """The first call's start and just after the last's: where an open window ends."""
    # Two queries: each an index lookup (SQLite scans the table for min and max in one).
    first = session.execute(select(func.min(Call.started_at))).scalar()
    last = session.execute(select(func.max(Call.started_at))).scalar()
    return first, (last + timedelta(microseconds=1) if last is not None else None)


def closed_window(session, since: datetime | None, until: datetime | None) -> tuple | None:
    """[since, until) with open ends closed: at the start of the first call's UTC day (no
    call lies before it: a whole day), and just after the last call; None when it holds
    none. A bound given is kept, so that a calendar month or day stays one."""
    first, after_last = call_span(session)
    if first is None:
        return None
    since = _floor_day(first) if since is None else since
    until = after_last if until is None else until
    if since >= min(until, after_last) or until <= first:
        return None
    return since, until


def zip_split(session, since: datetime | None, until: datetime | None) -> dict[int, dict[str, dict[str, int]]]:
    """{topic: {entered ZIP code ("" for none): {calls, routed, comments, support, oppose,
    other}}} for calls first seen in [since, until); topic 0 is the whole line."""
    found: dict[int, dict[str, dict[str, int]]] = {}

    def add(topic_id: int, entered: str, values: dict[str, int]) -> None:
        mine = found.setdefault(topic_id, {}).setdefault(entered or "", dict.fromkeys(ZIP_COUNTED, 0))
        for name, value in values.items():
            mine[name] += int(value or 0)

    if since is None and until is None:
        conditions, ends = [and_(ZipCount.period == "a")], []
    else:
        window = closed_window(session, since, until)
        if window is None:
            return {}
        pieces, ends = calendar_pieces(*window)
        conditions = [
            and_(ZipCount.period == period, ZipCount.period_start >= start, ZipCount.period_start < end)
            for period, start, end in pieces
        ]
    if conditions:
        rows = session.execute(
            select(ZipCount.topic_id, ZipCount.zip, *(func.sum(getattr(ZipCount, n)) for n in ZIP_COUNTED))
            .where(or_(false(), *conditions))
            .group_by(ZipCount.topic_id, ZipCount.zip)
        )
        for topic_id, entered, *values in rows:
            add(topic_id, entered, dict(zip(ZIP_COUNTED, values, strict=True)))
    for start, end in ends:
        zips_from_facts(session, start, end, add)
    return found


def zips_from_facts(session, start: datetime, end: datetime, add) -> None:
    """Count [start, end) from the facts by entered ZIP code, into `add(topic, zip, values)`."""
    window = [*_between(Call.started_at, start, end), counted_call()]
    for entered, calls, routed in session.execute(
        select(
            Call.entered_zip,
            func.count(),
            func.sum(case((exists().where(CallTopic.call_sid == Call.call_sid), 1), else_=0)),
        )
        .where(*window)
        .group_by(Call.entered_zip)
    ):
        add(WHOLE_LINE, entered, {"calls": calls, "routed": routed})
    rows = session.execute(
        select(
            CallTopic.topic_id,
            Call.entered_zip,
            func.count(),
            *(func.sum(case((CallTopic.stance == name, 1), else_=0)) for name in STANCE_NAMES),
        )
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(*window)
        .group_by(CallTopic.topic_id, Call.entered_zip)
    )
    for topic_id, entered, calls, *stances in rows:
        add(topic_id, entered, {"calls": calls, **dict(zip(STANCE_NAMES, stances, strict=True))})
    comments = session.execute(
        select(Recording.topic_id, Call.entered_zip, func.count())
        .join(Call, Call.call_sid == Recording.call_sid)
        .where(
            *window,
            Recording.topic_id.is_not(None),
            Recording.duration > 0,
            or_(Recording.status.is_(None), Recording.status.not_in(NOT_A_COMMENT)),
        )
        .group_by(Recording.topic_id, Call.entered_zip)
    )
    for topic_id, entered, n in comments:
        add(topic_id, entered, {"comments": n})


def callers_inside(session, since: datetime | None, until: datetime | None, district: District) -> dict[int, int]:
    """Distinct callers per topic (and topic 0, the whole line) among the calls of [since,
    until) whose caller entered one of the district's ZIP codes."""
    return callers_kept(session, since, until, tuple(sorted(district.zips)))


def callers_kept(
    session, since: datetime | None, until: datetime | None, zips: tuple[str, ...] | None
) -> dict[int, int]:
    """Distinct callers per topic (topic 0: the whole line) of the calls of [since, until)
    (with `zips`, only those whose caller entered one of them). The part of the window
    before today, when it lasts `KEPT_FROM` or more, is counted once and kept
    (models/kept_counts.py, stamped with its hours' changes); today's callers are added to
    it, each only when they made no call counted earlier in the window (a caller counts
    once): those of today's completed hours (an hour or more) kept too, stamped with the
    changes of every hour before the current one, those of the current hour counted from
    the facts each time. A part before today shorter than `KEPT_FROM` is counted from the
    facts each time."""
    if until is None:  # closed at the last call: a window bounded at both ends is read by its start
        until = call_span(session)[1]
        if until is None:
            return {}
    cut = min(until, today())
    if since is not None and cut - since < KEPT_FROM:
        return callers_from_facts(session, since, until, zips)
    stamp = span_stamp(session, since, cut)
    key = f"{','.join(zips) if zips is not None else '*'}|{since or ''}|{cut}"
    compute = by_topic(partial(callers_from_facts, session, since, cut, zips))
    found = topics_of(kept_or_computed(session, "callers", {key: (stamp, compute)})[key])
    later = {}
    hour = min(until, hour_of(utcnow()))  # today's completed hours
    if hour - cut >= KEPT_FROM:
        later_key = f"{key}|{hour}"
        compute = by_topic(partial(new_callers, session, since, cut, hour, zips))
        later = topics_of(
            kept_or_computed(session, "callers", {later_key: (span_stamp(session, since, hour), compute)})[later_key]
        )
        cut = hour
    if cut < until:
        later = dict(Counter(later) + Counter(new_callers(session, since, cut, until, zips)))
    for topic_id, n in later.items():
        found[topic_id] = found.get(topic_id, 0) + n
    return found


def _calls_of(call, since, until, zips) -> list:
    return [
        *_between(call.started_at, since, until),
        call.caller_hash.is_not(None),
        call.is_test.is_(False),
        *([call.entered_zip.in_(zips)] if zips is not None else []),
    ]


def callers_from_facts(
    session, since: datetime | None, until: datetime | None, zips: tuple[str, ...] | None
) -> dict[int, int]:
    """Distinct callers per topic (topic 0: the whole line) of the calls of [since, until)
    (with `zips`, of those whose caller entered one of them), from the facts."""
    window = _calls_of(Call, since, until, zips)
    rows = session.execute(
        select(CallTopic.topic_id, func.count(distinct(Call.caller_hash)))
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(*window)
        .group_by(CallTopic.topic_id)
    )
    found = dict(rows.all())
    found[WHOLE_LINE] = session.execute(select(func.count(distinct(Call.caller_hash))).where(*window)).scalar_one()
    return {topic_id: n for topic_id, n in found.items() if n}


def new_callers(
    session, since: datetime | None, cut: datetime, until: datetime | None, zips: tuple[str, ...] | None
) -> dict[int, int]:
    """Per topic (topic 0: the whole line), the distinct callers of [cut, until) who made no
    call of [since, cut) (about that topic), as `callers_from_facts` counts calls. Each
    caller is looked for by `ix_calls_caller_hash_started_at`."""
    earlier, earlier_topic = aliased(Call), aliased(CallTopic)
    before = _calls_of(earlier, since, cut, zips)
    rows = session.execute(
        select(CallTopic.topic_id, func.count(distinct(Call.caller_hash)))
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(
            *_calls_of(Call, cut, until, zips),
            ~select(literal(1))
            .select_from(earlier)
            .join(earlier_topic, earlier_topic.call_sid == earlier.call_sid)
            .where(earlier.caller_hash == Call.caller_hash, earlier_topic.topic_id == CallTopic.topic_id, *before)
            .exists(),
        )
        .group_by(CallTopic.topic_id)
    )
    found = dict(rows.all())
    found[WHOLE_LINE] = session.execute(
        select(func.count(distinct(Call.caller_hash))).where(
            *_calls_of(Call, cut, until, zips),
            ~exists().select_from(earlier).where(earlier.caller_hash == Call.caller_hash, *before),
        )
    ).scalar_one()
    return {topic_id: n for topic_id, n in found.items() if n}


# --- one voice per caller -------------------------------------------------------------------------


def calendar_period(since: datetime | None, until: datetime | None) -> tuple[str, datetime] | None:
    """The `voice_counts` period [since, until) is exactly (a UTC day, an ISO week, a month,
    all time), as (period, start); None for any other window."""
    if since is None and until is None:
        return ("a", ALL_TIME)
    if since is None or until is None or since != _floor_day(since):
        return None
    if until - since == timedelta(days=1):
        return ("d", since)
    if since.weekday() == 0 and until - since == timedelta(days=7):
        return ("w", since)
    if since.day == 1 and until == _next_month(since):
        return ("m", since)
    return None


def voice_pieces(first_day: datetime, end_day: datetime) -> list[tuple[str, datetime, datetime]]:
    """The UTC days [first_day, end_day) as ranges of `caller_voices` periods: whole months,
    then whole ISO weeks, then days, so that a long window reads each caller's row once per
    month rather than once per day they called."""

    def weeks_and_days(a: datetime, b: datetime) -> list[tuple[str, datetime, datetime]]:
        to_monday = timedelta(days=(7 - a.weekday()) % 7)
        first_week = a + to_monday if b - a >= to_monday else b  # (no Monday past the calendar's end)
        last_week = b - timedelta(days=b.weekday())
        if first_week >= last_week:
            return [("d", a, b)]
        return [("d", a, first_week), ("w", first_week, last_week), ("d", last_week, b)]

    first_month, last_month = _ceil_month(first_day), _floor_month(end_day)
    if first_month >= last_month:
        pieces = weeks_and_days(first_day, end_day)
    else:
        pieces = [
            *weeks_and_days(first_day, first_month),
            ("m", first_month, last_month),
            *weeks_and_days(last_month, end_day),
        ]
    return [piece for piece in pieces if piece[1] < piece[2]]


def caller_voices(session, since: datetime | None, until: datetime | None) -> dict[int, dict[str, dict[str, int]]]:
    """{topic: {entered ZIP code: {support, oppose, other}}}: each caller once per topic,
    with the position of their latest call in [since, until) that gave one.

    A calendar window is read from `voice_counts`. Any other whose part before today lasts
    `KEPT_FROM` or more: that part is counted once and kept (models/kept_counts.py), then each
    caller who gave a position today replaces their voice in it by their latest of today."""
    if calendar_period(since, until) is None:
        window = closed_window(session, since, until)
        if window is None:
            return {}
        since, until = window
        cut = min(until, today())
        if cut - since >= KEPT_FROM:
            return voices_kept(session, since, cut, until)
    return voices_between(session, since, until)


def voices_kept(session, since: datetime, cut: datetime, until: datetime) -> dict[int, dict[str, dict[str, int]]]:
    """`caller_voices` of [since, until) as those of [since, cut), kept, and the positions
    of [cut, until): a caller's latest there replaces their latest before `cut`. Today's
    completed hours (an hour or more) are kept the same way, stamped with the changes of
    every hour before the current one, so that each read looks up only the current hour's
    callers."""
    hour = min(until, hour_of(utcnow()))  # today's completed hours
    keep_hours = hour - cut >= KEPT_FROM
    # Today's hours' figure is made from the past days' one: its stamp is read first, so that
    # a fact landing between the two reads can only make it counted again needlessly.
    later_stamp = span_stamp(session, since, hour) if keep_hours else None
    key = f"{since}|{cut}"
    compute = partial(voice_figures, session, since, cut)
    figures = kept_or_computed(session, "voices", {key: (span_stamp(session, since, cut), compute)})[key]
    if keep_hours:
        later_key = f"{key}|{hour}"
        compute = partial(voices_moved, session, figures, since, cut, hour)
        figures = kept_or_computed(session, "voices", {later_key: (later_stamp, compute)})[later_key]
        cut = hour
    if cut < until:
        figures = voices_moved(session, figures, since, cut, until)
    found: dict[int, dict[str, dict[str, int]]] = {}
    for (topic_id, part), n in figures.items():
        entered, _, stance = part.rpartition(":")
        by_stance = found.setdefault(topic_id, {}).setdefault(entered, dict.fromkeys(STANCE_NAMES, 0))
        by_stance[stance] += n
    return found


def voices_moved(session, figures: Figures, since: datetime, cut: datetime, until: datetime) -> Figures:
    """`figures`, the voices of [since, cut) as `voice_figures` gives them, made those of
    [since, until): each caller who gave a position on a topic in [cut, until) counts with
    their latest there instead of their latest before `cut`."""
    moved = Counter(figures)
    later = latest_positions_from_facts(session, cut, until)
    earlier = latest_positions_from_facts(session, since, cut, sorted({caller for _, caller in later}))
    for pair, (_, _, stance, entered) in later.items():
        moved[(pair[0], f"{entered}:{stance}")] += 1
        if pair in earlier:
            _, _, stance_before, entered_before = earlier[pair]
            moved[(pair[0], f"{entered_before}:{stance_before}")] -= 1
    return {part: n for part, n in moved.items() if n}


def voice_figures(session, since: datetime, until: datetime) -> dict[tuple[int, str], int]:
    """`voices_between` as kept figures: {(topic, "ZIP code:stance"): callers}."""
    return {
        (topic_id, f"{entered}:{stance}"): n
        for topic_id, by_zip in voices_between(session, since, until).items()
        for entered, by_stance in by_zip.items()
        for stance, n in by_stance.items()
    }


def span_stamp(session, since: datetime | None, cut: datetime) -> int:
    """The changes of the hours of [since, cut) (since None: every hour before `cut`)."""
    first, last = (hour_of(since) if since is not None else None), hour_of(cut - timedelta(microseconds=1))
    return Stamps(session, first, last).stamp(first, last)


def recount_callers(session, key: str) -> tuple[int, dict[tuple[int, str], int]]:
    """(stamp now, figures) from the facts, for a key `callers_kept` kept: the callers of
    [since, cut), or with a last hour, the new callers of [cut, hour)."""
    zips, since, cut, *hour = key.split("|")
    since, cut = (datetime.fromisoformat(since) if since else None), datetime.fromisoformat(cut)
    within = None if zips == "*" else tuple(zips.split(","))
    if hour:
        hour = datetime.fromisoformat(hour[0])
        found = new_callers(session, since, cut, hour, within)
        return span_stamp(session, since, hour), {(topic_id, ""): n for topic_id, n in found.items()}
    found = callers_from_facts(session, since, cut, within)
    return span_stamp(session, since, cut), {(topic_id, ""): n for topic_id, n in found.items()}


def recount_voices(session, key: str) -> tuple[int, dict[tuple[int, str], int]]:
    """(stamp now, figures) from the facts, for a key `voices_kept` kept: the voices of
    [since, cut), or with a last hour, of [since, hour)."""
    since, *_, end = (datetime.fromisoformat(moment) for moment in key.split("|"))
    return span_stamp(session, since, end), voice_figures(session, since, end)


def positions_in(since: datetime | None, until: datetime | None, callers):
    """Each position a counted call of [since, until) gave on a topic, of the callers
    `callers` selects: (topic, caller, start, CallSid, stance, entered ZIP code or "")."""
    return (
        select(
            CallTopic.topic_id,
            Call.caller_hash,
            Call.started_at,
            Call.call_sid,
            CallTopic.stance,
            func.coalesce(Call.entered_zip, "").label("zip"),
        )
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(*_between(Call.started_at, since, until), CallTopic.stance.is_not(None), callers, counted_call())
    )


def latest_positions_from_facts(
    session, since: datetime, until: datetime, callers: list[str] | None = None
) -> dict[tuple[int, str], tuple]:
    """{(topic, caller): (start, CallSid, stance, ZIP code)} of each caller's latest call in
    [since, until) that gave a position on the topic (with `callers`, only theirs, each
    read by `ix_calls_caller_hash_started_at`), from the facts."""
    latest: dict[tuple[int, str], tuple] = {}
    chunks = [None] if callers is None else [callers[i : i + 500] for i in range(0, len(callers), 500)]
    for chunk in chunks:
        if chunk == []:
            continue
        rows = session.execute(
            positions_in(since, until, Call.caller_hash.is_not(None) if chunk is None else Call.caller_hash.in_(chunk))
        )
        for topic_id, caller, started, sid, stance, entered in rows:
            position = (started, sid, stance, entered)
            if (topic_id, caller) not in latest or latest[(topic_id, caller)][:2] < position[:2]:
                latest[(topic_id, caller)] = position
    return latest


def voices_between(session, since: datetime | None, until: datetime | None) -> dict[int, dict[str, dict[str, int]]]:
    """`caller_voices` from the summaries and the facts, nothing kept."""
    found: dict[int, dict[str, dict[str, int]]] = {}

    def add(topic_id: int, entered: str, stance: str, n: int) -> None:
        if stance in STANCE_NAMES:
            by_stance = found.setdefault(topic_id, {}).setdefault(entered or "", dict.fromkeys(STANCE_NAMES, 0))
            by_stance[stance] += int(n or 0)

    period = calendar_period(since, until)
    if period is not None:
        rows = session.execute(
            select(VoiceCount.topic_id, VoiceCount.zip, *(getattr(VoiceCount, n) for n in STANCE_NAMES)).where(
                VoiceCount.period == period[0], VoiceCount.period_start == period[1]
            )
        )
        for topic_id, entered, *values in rows:
            for name, n in zip(STANCE_NAMES, values, strict=True):
                add(topic_id, entered, name, n)
        return found
    window = closed_window(session, since, until)
    if window is None:
        return found
    since, until = window
    first_day, last_day = _ceil_day(since), _floor_day(until)
    parts = []
    ends = [(since, until)]
    if first_day < last_day:
        ends = [(a, b) for a, b in ((since, first_day), (last_day, until)) if a < b]
        pieces = [
            and_(CallerVoice.period == period, CallerVoice.period_start >= start, CallerVoice.period_start < end)
            for period, start, end in voice_pieces(first_day, last_day)
        ]
        parts.append(
            select(
                CallerVoice.topic_id,
                CallerVoice.caller_hash,
                CallerVoice.started_at,
                CallerVoice.call_sid,
                CallerVoice.stance,
                CallerVoice.zip,
            ).where(or_(*pieces))
        )
    for start, end in ends:
        parts.append(positions_in(start, end, Call.caller_hash.is_not(None)))
    both = union_all(*parts).subquery()
    if session.get_bind().dialect.name == "sqlite":
        # SQLite takes a bare column's value from the row that holds the group's max(): each
        # (topic, caller)'s latest row, by its start (text, microseconds always) then CallSid.
        # Faster there than ranking every row.
        latest = (
            select(both.c.topic_id, both.c.zip, both.c.stance, func.max(both.c.started_at.op("||")(both.c.call_sid)))
            .group_by(both.c.topic_id, both.c.caller_hash)
            .subquery()
        )
    else:
        rank = (
            func.row_number()
            .over(
                partition_by=(both.c.topic_id, both.c.caller_hash),
                order_by=(both.c.started_at.desc(), both.c.call_sid.desc()),
            )
            .label("rank")
        )
        ranked = select(both.c.topic_id, both.c.zip, both.c.stance, rank).subquery()
        latest = select(ranked.c.topic_id, ranked.c.zip, ranked.c.stance).where(ranked.c.rank == 1).subquery()
    rows = session.execute(
        select(latest.c.topic_id, latest.c.zip, latest.c.stance, func.count()).group_by(
            latest.c.topic_id, latest.c.zip, latest.c.stance
        )
    )
    for topic_id, entered, stance, n in rows:
        add(topic_id, entered, stance, n)
    return found
