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
- `unrouted`: calls that chose no topic.
- `line_callers()`: distinct callers of the whole line: a caller counts once however many
  calls and topics, whether or not a call chose a topic (the summaries keep the whole line's
  callers as topic 0).

Whole hours of a window are read from the hourly summaries (models/summary.py); the parts of
an hour at either end are counted from the facts themselves. Both give the same numbers:
tests/test_order_free.py compares windows of every kind after any order of delivery, and
`flask counts verify` checks the summaries against the facts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, distinct, func, literal, or_, select, union_all

from .calls import Call, CallTopic
from .line import Topic
from .recordings import NOT_A_COMMENT, Recording
from .summary import WHOLE_LINE, CallerDay, CallerHour, HourlyCount, hour_of

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

    def figures(self) -> list:
        """calls, callers ("" when numbers are not kept), comments, support, oppose, other:
        the columns every table of counts shows."""
        return [
            self.calls,
            "" if self.callers is None else self.callers,
            self.comments,
            *(self.stance[name] for name in STANCE_NAMES),
        ]


@dataclass
class Tally:
    calls: int
    unrouted: int
    topics: list[TopicCount]

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
    if whole is not None and not ends and all(is_midnight(end) for end in whole):
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
    session, since: datetime | None = None, until: datetime | None = None, *, callers_known: bool = True
) -> Tally:
    """Counts for calls first seen in [since, until) (naive UTC; None for open ends)."""
    total = Partial()
    whole, ends = window_pieces(since, until)
    if whole is not None:
        total.add(from_summaries(session, *whole))
    for start, end in ends:
        total.add(from_facts(session, start, end))
    callers = distinct_callers(session, whole, ends) if callers_known else {}

    counts = []
    for topic in session.scalars(select(Topic).order_by(Topic.position, Topic.id)):
        found = total.topics.get(topic.id, {})
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
            )
        )
    return Tally(calls=total.calls, unrouted=total.calls - total.routed, topics=counts)
