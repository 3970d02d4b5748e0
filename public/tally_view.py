"""What the public tally shows, computed from `tally()` and nothing else: per public topic,
calls, distinct callers, comments and the position split, for today, this week and all time
in the line's time zone, and calls per day this week for the chart. No value here is about a
person: no number, hash, transcript or audio.

Which topics are shown is the admins' choice (`topics.public`, on the console's Topics page);
the line-wide figures (all calls, calls that chose no topic, the line's callers) cover every
call, shown topic or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import select

from models import Topic, db
from models.flags import FlagRules
from models.line import line_script
from models.tally import STANCE_NAMES, Tally, line_callers, tally
from staff.counts_page import chart_series
from staff.windows import local_midnight


@dataclass(frozen=True)
class ShownTopic:
    slug: str
    names: dict[str, str]

    def name(self, language: str) -> str:
        return self.names.get(language) or next(iter(self.names.values()), self.slug)


@dataclass(frozen=True)
class Period:
    """One column of time the page shows: its wording key, where it starts (local day), and its
    counts restricted to the shown topics."""

    key: str
    first: date | None
    counts: Tally
    line_callers: int | None

    def rows(self) -> list[tuple[str, list]]:
        """(topic slug, figures) per shown topic, in menu order."""
        return [(t.slug, t.figures()) for t in self.counts.topics]

    def totals(self) -> list:
        """All calls: calls, the line's callers, then comment and position sums of the shown
        topics."""
        callers = "" if self.line_callers is None else self.line_callers
        sums = [sum(t.comments for t in self.counts.topics)]
        sums += [sum(t.stance[name] for t in self.counts.topics) for name in STANCE_NAMES]
        return [self.counts.calls, callers, *sums]


@dataclass(frozen=True)
class PublicTally:
    periods: list[Period]
    topics: list[ShownTopic]
    week: list[date]
    week_calls: list[list[int]] = field(default_factory=list)  # per day, per shown topic
    callers_known: bool = True


def shown_topics(session) -> list[Topic]:
    """The topics the admins show on the public tally, in menu order."""
    return list(session.scalars(select(Topic).where(Topic.public.is_(True)).order_by(Topic.position, Topic.id)))


def only_shown(counts: Tally, slugs: set[str]) -> Tally:
    """`counts` with only the shown topics; the line-wide figures as they are."""
    return Tally(
        calls=counts.calls,
        unrouted=counts.unrouted,
        topics=[t for t in counts.topics if t.slug in slugs],
        flagged=counts.flagged,
        blocked=counts.blocked,
    )


def public_counts(session, since: datetime | None, until: datetime | None, callers_known: bool) -> Tally:
    """`tally()` for [since, until) (naive UTC), shown topics only: the same shape and rules
    as `/api/v1/counts`."""
    slugs = {t.slug for t in shown_topics(session)}
    counts = tally(
        session,
        since,
        until,
        callers_known=callers_known,
        districts=line_script(current_app).get(session).districts,
        flag_rules=FlagRules.from_config(current_app.config),
    )
    return only_shown(counts, slugs)


def week_start(today: date) -> date:
    """The Monday of `today`'s week."""
    return today - timedelta(days=today.weekday())


def public_tally(today: date, zone: str, callers_known: bool) -> PublicTally:
    """Everything the page shows, for the local day `today` in `zone`."""
    session = db.session
    topics = shown_topics(session)
    slugs = {t.slug for t in topics}
    monday = week_start(today)
    periods = []
    for key, first in (("today", today), ("this_week", monday), ("all_time", None)):
        since = local_midnight(first, zone) if first is not None else None
        counts = only_shown(tally(session, since, None, callers_known=callers_known, voices=False, flags=False), slugs)
        callers = line_callers(session, since, None) if callers_known else None
        periods.append(Period(key, first, counts, callers))
    week = [monday + timedelta(days=n) for n in range(7)]
    slots = [
        (day.isoformat(), local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)) for day in week
    ]
    order = list(session.scalars(select(Topic.slug).order_by(Topic.position, Topic.id)))  # tally()'s order
    shown_at = [i for i, slug in enumerate(order) if slug in slugs]
    week_calls = [[values[i] for i in shown_at] for _, values in chart_series(slots)]
    return PublicTally(
        periods=periods,
        topics=[ShownTopic(t.slug, dict(t.names)) for t in topics],
        week=week,
        week_calls=week_calls,
        callers_known=callers_known,
    )
