"""A day's counted facts, read from the database in their canonical form (receipts/digest.py).

The facts of a window are those of every call first seen in it (the window `tally()` counts
a call in): the call, each keypress it made (a language or topic choice, or a position), and
each recording it left. Only keys and counted fields, never a phone number, a caller's hash,
a time, a transcript or audio, which redaction may remove:

- call: `key`, `topic` (the first topic it chose, or "(none)")
- choice: `key` (call key/step), `call`, `step`, `topic` ("(none)" for a language), `language`
- position: `key`, `call`, `step`, `topic`, `position` (support, oppose, other)
- comment: `key`, `call`, `topic`, `position`, `counted` (whether it counts as a comment)

Keys are the first 32 hex digits of the SHA-256 of Twilio's id (`CallSid`, `RecordingSid`):
stable, and naming no Twilio resource a reader could fetch.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import func, select

from models import Call, Choice, Recording, Topic
from models.recordings import is_comment

from .digest import NO_TOPIC


def key_of(twilio_id: str) -> str:
    return hashlib.sha256(twilio_id.encode()).hexdigest()[:32]


def window_facts(session, since: datetime, until: datetime) -> list[dict]:
    """The canonical facts of the calls first seen in [since, until) (naive UTC), test calls
    ("Try the line", counted nowhere) left out."""
    slugs = dict(session.execute(select(Topic.id, Topic.slug)).all())
    in_window = (Call.started_at >= since, Call.started_at < until, Call.is_test.is_(False))
    calls = {sid: key_of(sid) for sid in session.scalars(select(Call.call_sid).where(*in_window))}
    facts: list[dict] = []
    first_topic: dict[str, tuple[int, str]] = {}
    rows = session.execute(
        select(Choice.call_sid, Choice.step, Choice.kind, Choice.topic_id, Choice.language, Choice.stance)
        .join(Call, Call.call_sid == Choice.call_sid)
        .where(*in_window)
    )
    for sid, step, kind, topic_id, language, stance in rows:
        call = calls[sid]
        topic = slugs.get(topic_id, NO_TOPIC) if topic_id is not None else NO_TOPIC
        fact = {"key": f"{call}/{step:06d}", "call": call, "step": step, "topic": topic}
        if kind == "stance":
            facts.append({**fact, "kind": "position", "position": stance})
        else:
            facts.append({**fact, "kind": "choice", "choice": kind, "language": language})
        if kind == "topic" and topic_id is not None and (sid not in first_topic or step < first_topic[sid][0]):
            first_topic[sid] = (step, topic)
    for sid, call in calls.items():
        facts.append({"kind": "call", "key": call, "topic": first_topic.get(sid, (0, NO_TOPIC))[1]})
    rows = session.execute(
        select(Recording.recording_sid, Recording.call_sid, Recording.topic_id, Recording.stance)
        .add_columns(Recording.duration, Recording.status)
        .join(Call, Call.call_sid == Recording.call_sid)
        .where(*in_window)
    )
    for rsid, sid, topic_id, stance, duration, status in rows:
        facts.append(
            {
                "kind": "comment",
                "key": key_of(rsid),
                "call": calls[sid],
                "topic": slugs.get(topic_id, NO_TOPIC) if topic_id is not None else NO_TOPIC,
                "position": stance,
                "counted": is_comment(topic_id, duration, status),
            }
        )
    return sorted(facts, key=lambda fact: (fact["topic"], fact["kind"], fact["key"]))


def fact_counts(session, since: datetime, until: datetime) -> dict[str, int]:
    """How many calls, keypresses and recordings the calls first seen in [since, until) have:
    three counts, for noticing cheaply that a closed day gained facts (test calls left out)."""
    in_window = (Call.started_at >= since, Call.started_at < until, Call.is_test.is_(False))
    calls = session.execute(select(func.count()).select_from(Call).where(*in_window)).scalar_one()
    choices = session.execute(
        select(func.count()).select_from(Choice).join(Call, Call.call_sid == Choice.call_sid).where(*in_window)
    ).scalar_one()
    recordings = session.execute(
        select(func.count()).select_from(Recording).join(Call, Call.call_sid == Recording.call_sid).where(*in_window)
    ).scalar_one()
    return {"calls": calls, "keypresses": choices, "recordings": recordings}
