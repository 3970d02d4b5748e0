"""The counting rules, in one place. The API, the CSV, the console and the checks all call
`tally()`; nothing else computes counts.

- `calls`: calls whose first webhook falls in the window.
- per topic `calls`: distinct calls that chose it; `callers`: distinct keyed hashes of
  `From` among them (withheld numbers excluded; None when numbers are not kept);
  `comments`: recordings for the topic longer than 0 s whose status is not absent or
  failed; `stance`: per call and topic, the last position pressed.
- `unrouted`: calls that chose no topic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import case, distinct, func, or_, select

from .calls import Call, CallTopic
from .line import Topic
from .recordings import NOT_A_COMMENT, Recording


@dataclass
class TopicCount:
    slug: str
    digit: str
    name: str
    enabled: bool
    calls: int = 0
    callers: int | None = 0
    comments: int = 0
    stance: dict = field(default_factory=lambda: {"support": 0, "oppose": 0, "other": 0})


@dataclass
class Tally:
    calls: int
    unrouted: int
    topics: list[TopicCount]

    def as_dict(self) -> dict:
        return asdict(self)


def _window(since: datetime | None, until: datetime | None) -> list:
    conditions = []
    if since is not None:
        conditions.append(Call.started_at >= since)
    if until is not None:
        conditions.append(Call.started_at < until)
    return conditions


def tally(
    session, since: datetime | None = None, until: datetime | None = None, *, callers_known: bool = True
) -> Tally:
    """Counts for calls first seen in [since, until) (naive UTC; None for open ends)."""
    window = _window(since, until)
    total = session.execute(select(func.count()).select_from(Call).where(*window)).scalar_one()

    per_topic = session.execute(
        select(
            CallTopic.topic_id,
            func.count(),
            func.count(distinct(Call.caller_hash)),
            func.sum(case((CallTopic.stance == "support", 1), else_=0)),
            func.sum(case((CallTopic.stance == "oppose", 1), else_=0)),
            func.sum(case((CallTopic.stance == "other", 1), else_=0)),
        )
        .join(Call, Call.call_sid == CallTopic.call_sid)
        .where(*window)
        .group_by(CallTopic.topic_id)
    ).all()
    routed = session.execute(
        select(func.count(distinct(CallTopic.call_sid))).join(Call, Call.call_sid == CallTopic.call_sid).where(*window)
    ).scalar_one()
    comments = dict(
        session.execute(
            select(Recording.topic_id, func.count())
            .join(Call, Call.call_sid == Recording.call_sid)
            .where(
                *window,
                Recording.topic_id.is_not(None),
                Recording.duration > 0,
                or_(Recording.status.is_(None), Recording.status.not_in(NOT_A_COMMENT)),
            )
            .group_by(Recording.topic_id)
        ).all()
    )

    topics = list(session.scalars(select(Topic).order_by(Topic.position, Topic.id)))
    by_id = {}
    for topic in topics:
        first_language = next(iter(topic.names))
        by_id[topic.id] = TopicCount(
            topic.slug, topic.digit, topic.names[first_language], topic.enabled, callers=0 if callers_known else None
        )
    for topic_id, calls, callers, support, oppose, other in per_topic:
        count = by_id[topic_id]
        count.calls = calls
        count.callers = callers if callers_known else None
        count.stance = {"support": int(support or 0), "oppose": int(oppose or 0), "other": int(other or 0)}
    for topic_id, n in comments.items():
        by_id[topic_id].comments = n
    return Tally(calls=total, unrouted=total - routed, topics=list(by_id.values()))


__all__ = ["Tally", "TopicCount", "tally"]
