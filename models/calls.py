"""The facts of a call, each keyed on Twilio's ids so that a retry cannot add one twice.

- `calls`: one row per `CallSid`, written at the first webhook that names it.
- `choices`: one row per (`CallSid`, step): a keypress that chose a language, topic or stance.
  The step travels in each menu's action URL, so a retried request carries the same key.
- `call_topics`: per call and topic, the last stance pressed. A summary of `choices`, written
  in the same transaction as the choice by an idempotent upsert; `verify_call_topics`
  recomputes it from the choices.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from . import summary
from .base import db, insert_for
from .line import Topic

FINAL_CALL_STATUSES = ("completed", "busy", "failed", "no-answer", "canceled")
STANCES = {"1": "support", "2": "oppose", "3": "other"}
# Values Twilio puts in `From` when the caller's number is withheld or unknown.
WITHHELD_NUMBERS = {
    "",
    "anonymous",
    "unknown",
    "restricted",
    "private",
    "blocked",
    "unavailable",
    "+266696687",
    "+86282452253",
    "+7378742833",
    "+2562533",
}
LOCATION_FIELDS = {
    "FromCity": "from_city",
    "FromState": "from_state",
    "FromZip": "from_zip",
    "FromCountry": "from_country",
    "CallerName": "caller_name",
}


class Call(db.Model):
    __tablename__ = "calls"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(String(64))  # only with CALLER_NUMBERS=raw
    caller_hash: Mapped[str | None] = mapped_column(String(64))  # None: withheld, or not kept
    to_number: Mapped[str | None] = mapped_column(String(64))
    from_city: Mapped[str | None] = mapped_column(String(128))
    from_state: Mapped[str | None] = mapped_column(String(64))
    from_zip: Mapped[str | None] = mapped_column(String(32))
    from_country: Mapped[str | None] = mapped_column(String(8))
    caller_name: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(index=True)  # our first webhook for the call
    ended_at: Mapped[datetime | None]
    duration: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    topics: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # distinct topics chosen


class Choice(db.Model):
    __tablename__ = "choices"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # language | topic | stance
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    language: Mapped[str | None] = mapped_column(String(16))
    stance: Mapped[str | None] = mapped_column(String(16))
    chosen_at: Mapped[datetime]


class CallTopic(db.Model):
    __tablename__ = "call_topics"
    __table_args__ = (Index("ix_call_topics_topic_id", "topic_id"),)

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)
    stance: Mapped[str | None] = mapped_column(String(16))
    stance_step: Mapped[int] = mapped_column(Integer, default=0)


def caller_identity(from_number: str | None, mode: str, key: str) -> tuple[str | None, str | None]:
    """(number to store, keyed hash) for `From` under CALLER_NUMBERS=raw|hash|none.

    Withheld numbers get no hash, so they are never counted as one caller."""
    number = (from_number or "").strip()
    if mode == "none":
        return None, None
    digest = None
    if number.lower() not in WITHHELD_NUMBERS:
        digest = hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()
    return (number or None) if mode == "raw" else None, digest


def call_values(form, *, mode: str, key: str, seen_at: datetime) -> dict:
    """The columns of `calls` that any Twilio request about the call can fill."""
    number, digest = caller_identity(form.get("From"), mode, key)
    values = {
        "call_sid": form["CallSid"],
        "account_sid": form.get("AccountSid"),
        "from_number": number,
        "caller_hash": digest,
        "to_number": form.get("To"),
        "started_at": seen_at,
    }
    for param, column in LOCATION_FIELDS.items():
        value = form.get(param)
        values[column] = value[:128] if value else None
    return values


def note_call(session, values: dict, *, language: str | None = None) -> None:
    """Count the call if it is new; with `language`, set the language it chose."""
    inserted = session.execute(
        insert_for(session, Call)
        .values(**values, language=language)
        .on_conflict_do_nothing(index_elements=["call_sid"])
        .returning(Call.started_at)
    ).first()
    if inserted is not None:
        summary.add(session, summary.hour_of(inserted.started_at), summary.WHOLE_LINE, calls=1)
    elif language:
        session.execute(update(Call).where(Call.call_sid == values["call_sid"]).values(language=language))


def note_call_status(session, values: dict, *, status: str, duration: int | None, ended_at: datetime) -> None:
    """Keep the call's status from the status callback. A final status is never replaced by a
    non-final one that arrives late; duplicates change nothing."""
    note_call(session, values)
    final = status in FINAL_CALL_STATUSES
    stmt = update(Call).where(Call.call_sid == values["call_sid"])
    if not final:
        stmt = stmt.where(Call.status.is_(None) | Call.status.not_in(FINAL_CALL_STATUSES))
    session.execute(stmt.values(status=status, duration=duration, ended_at=ended_at if final else None))


def note_choice(
    session,
    call_sid: str,
    step: int,
    kind: str,
    *,
    at: datetime,
    topic: str | None = None,
    language: str | None = None,
    stance: str | None = None,
) -> None:
    """Store a keypress as a fact keyed on (call, step); when it is new, bring `call_topics`
    and the summaries up to date in the same transaction. `topic` is the topic's slug (facts
    name topics by slug, so that a fact taken while the database was away can be written
    later). The call's row must exist (every webhook's facts start with it)."""
    topic_id = session.execute(select(Topic.id).where(Topic.slug == topic)).scalar() if topic else None
    new = session.execute(
        insert_for(session, Choice)
        .values(
            call_sid=call_sid, step=step, kind=kind, topic_id=topic_id, language=language, stance=stance, chosen_at=at
        )
        .on_conflict_do_nothing(index_elements=["call_sid", "step"])
        .returning(Choice.step)
    ).first()
    if new is None or topic_id is None:
        return  # a retry (everything below was done with the first), or no topic
    call = session.execute(select(Call.started_at, Call.caller_hash).where(Call.call_sid == call_sid)).first()
    hour = summary.hour_of(call.started_at if call else at)
    paired = session.execute(
        insert_for(session, CallTopic)
        .values(call_sid=call_sid, topic_id=topic_id, stance=stance, stance_step=step if stance else 0)
        .on_conflict_do_nothing(index_elements=["call_sid", "topic_id"])
        .returning(CallTopic.call_sid)
    ).first()
    if paired is not None:  # the call's first choice of this topic
        topics = session.execute(
            update(Call).where(Call.call_sid == call_sid).values(topics=Call.topics + 1).returning(Call.topics)
        ).scalar()
        if topics == 1:
            summary.add(session, hour, summary.WHOLE_LINE, routed=1)
        new_caller = bool(call and call.caller_hash) and summary.count_caller(session, hour, topic_id, call.caller_hash)
        summary.add(session, hour, topic_id, calls=1, callers_new=int(new_caller), **({stance: 1} if stance else {}))
        return
    if stance is None:
        return
    before = session.execute(
        select(CallTopic.stance, CallTopic.stance_step)
        .where(CallTopic.call_sid == call_sid, CallTopic.topic_id == topic_id)
        .with_for_update()
    ).first()
    if before.stance_step >= step:
        return  # a later position is already stored
    session.execute(
        update(CallTopic)
        .where(CallTopic.call_sid == call_sid, CallTopic.topic_id == topic_id)
        .values(stance=stance, stance_step=step)
    )
    if before.stance != stance:
        deltas = {stance: 1}
        if before.stance:
            deltas[before.stance] = -1
        summary.add(session, hour, topic_id, **deltas)


def topic_id_of(slug: str | None):
    """The id of the topic with this slug, as a subquery (NULL when there is none)."""
    return select(Topic.id).where(Topic.slug == slug).scalar_subquery()


def expected_call_topics(session) -> dict[tuple[str, int], str | None]:
    """`call_topics` as the choices say it should be: per call and topic, the last stance."""
    expected: dict[tuple[str, int], str | None] = {}
    rows = session.execute(
        select(Choice.call_sid, Choice.topic_id, Choice.stance)
        .where(Choice.topic_id.is_not(None))
        .order_by(Choice.call_sid, Choice.step)
    )
    for call_sid, topic_id, stance in rows:
        if stance is not None:
            expected[(call_sid, topic_id)] = stance
        else:
            expected.setdefault((call_sid, topic_id), None)
    return expected


def verify_call_topics(session) -> list[str]:
    """Recompute `call_topics` from the choices; return each difference found."""
    expected = expected_call_topics(session)
    rows = session.execute(select(CallTopic.call_sid, CallTopic.topic_id, CallTopic.stance))
    stored = {(call_sid, topic_id): stance for call_sid, topic_id, stance in rows}
    problems = []
    for key in sorted(expected.keys() | stored.keys(), key=str):
        if key not in stored:
            problems.append(f"call {key[0]} topic {key[1]}: chosen but not summarised")
        elif key not in expected:
            problems.append(f"call {key[0]} topic {key[1]}: summarised but never chosen")
        elif stored[key] != expected[key]:
            problems.append(f"call {key[0]} topic {key[1]}: stance {stored[key]!r}, choices say {expected[key]!r}")
    return problems
