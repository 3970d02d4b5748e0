"""The counts read from hourly summaries equal the counts taken straight from the facts, for
windows of every shape: open, whole hours, ragged ends, within one hour."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select, update

from models import Call, CallTopic, Topic, db, summary
from models.tally import from_facts, tally
from tests import load


def facts_only(session, since, until) -> dict:
    part = from_facts(session, since, until)
    window = [
        c
        for c in (Call.started_at >= since if since else None, Call.started_at < until if until else None)
        if c is not None
    ]
    callers = dict(
        session.execute(
            select(CallTopic.topic_id, func.count(distinct(Call.caller_hash)))
            .join(Call, Call.call_sid == CallTopic.call_sid)
            .where(*window)
            .group_by(CallTopic.topic_id)
        ).all()
    )
    return {
        "calls": part.calls,
        "unrouted": part.calls - part.routed,
        "topics": {t: {**c, "callers": callers.get(t, 0)} for t, c in part.topics.items() if c["calls"]},
    }


def from_tally(session, since, until) -> dict:
    result = tally(session, since, until)
    ids = {t.slug: t.id for t in session.scalars(select(Topic))}
    topics = {
        ids[t.slug]: {"calls": t.calls, "comments": t.comments, "callers": t.callers, **t.stance}
        for t in result.topics
        if t.calls
    }
    return {"calls": result.calls, "unrouted": result.unrouted, "topics": topics}


def test_summaries_and_facts_agree_for_any_window(twilio, app):
    planned = load.plans(60, seed=21)
    for plan in planned:
        twilio.play(plan.mind(), plan.phone(), call_sid=plan.sid)
    unrouted = twilio.call()
    unrouted.dial()
    rng = random.Random(5)
    start = datetime(2026, 11, 1, 6, 0)
    with app.app_context():
        # Spread the calls over two days, as if they came in at these times.
        for sid in db.session.scalars(select(Call.call_sid)).all():
            moment = start + timedelta(minutes=rng.randrange(0, 48 * 60), seconds=rng.randrange(60))
            db.session.execute(update(Call).where(Call.call_sid == sid).values(started_at=moment))
        summary.rebuild(db.session)
        db.session.commit()
        windows = [
            (None, None),
            (start, None),
            (None, start + timedelta(hours=30)),
            (start + timedelta(hours=3), start + timedelta(hours=27)),
        ]
        for _ in range(25):
            a = start + timedelta(minutes=rng.randrange(-120, 50 * 60), seconds=rng.randrange(60))
            b = a + timedelta(minutes=rng.choice([1, 30, 59, 61, 90, 600, 1440, 3000]))
            windows.append((a, b))
        windows.append((start + timedelta(hours=5, minutes=10), start + timedelta(hours=5, minutes=50)))
        day = datetime(2026, 11, 1)
        windows += [(day, day + timedelta(days=1)), (day + timedelta(days=1), day + timedelta(days=2))]
        windows += [(day, day + timedelta(days=3)), (day - timedelta(days=2), day)]  # whole days
        for since, until in windows:
            assert from_tally(db.session, since, until) == facts_only(db.session, since, until), (since, until)
