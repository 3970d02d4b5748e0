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

from sqlalchemy import ForeignKey, Index, Integer, String, and_, bindparam, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, prepared

FINAL_CALL_STATUSES = ("completed", "busy", "failed", "no-answer", "canceled")
STANCES = {"1": "support", "2": "oppose", "3": "other"}
# Values Twilio puts in `From` when the caller's number is withheld or unknown.
WITHHELD_NUMBERS = {
    "", "anonymous", "unknown", "restricted", "private", "blocked", "unavailable",
    "+266696687", "+86282452253", "+7378742833", "+2562533",
}
LOCATION_FIELDS = {
    "FromCity": "from_city", "FromState": "from_state", "FromZip": "from_zip",
    "FromCountry": "from_country", "CallerName": "caller_name",
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


CALL_COLUMNS = ("call_sid", "account_sid", "from_number", "caller_hash", "to_number", *LOCATION_FIELDS.values(),
                "started_at")


def _binds(*names: str) -> dict:
    return {name: bindparam(name) for name in names}


def _new_call(insert):
    return insert(Call).values(**_binds(*CALL_COLUMNS, "language")).on_conflict_do_nothing(index_elements=["call_sid"])


def _call_with_language(insert):
    stmt = insert(Call).values(**_binds(*CALL_COLUMNS, "language"))
    return stmt.on_conflict_do_update(index_elements=["call_sid"], set_={"language": stmt.excluded.language})


def _call_ended(insert):
    stmt = insert(Call).values(**_binds(*CALL_COLUMNS, "status", "duration", "ended_at"))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["call_sid"], set_={"status": ex.status, "duration": ex.duration, "ended_at": ex.ended_at}
    )


def _call_in_progress(insert):
    """Like `_call_ended`, but never over a final status."""
    stmt = insert(Call).values(**_binds(*CALL_COLUMNS, "status", "duration", "ended_at"))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["call_sid"],
        set_={"status": ex.status, "duration": ex.duration, "ended_at": ex.ended_at},
        where=or_(Call.status.is_(None), and_(*(Call.status != final for final in FINAL_CALL_STATUSES))),
    )


def _choice(insert):
    columns = ("call_sid", "step", "kind", "topic_id", "language", "stance", "chosen_at")
    return insert(Choice).values(**_binds(*columns)).on_conflict_do_nothing(index_elements=["call_sid", "step"])


def _topic_chosen(insert):
    stmt = insert(CallTopic).values(**_binds("call_sid", "topic_id", "stance", "stance_step"))
    return stmt.on_conflict_do_nothing(index_elements=["call_sid", "topic_id"])


def _stance_chosen(insert):
    stmt = insert(CallTopic).values(**_binds("call_sid", "topic_id", "stance", "stance_step"))
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["call_sid", "topic_id"],
        set_={"stance": excluded.stance, "stance_step": excluded.stance_step},
        where=CallTopic.stance_step < excluded.stance_step,
    )


def note_call(session, values: dict, *, language: str | None = None) -> None:
    """Count the call if it is new; with `language`, set the language it chose."""
    session.execute(prepared(session, _call_with_language if language else _new_call), {**values, "language": language})


def note_call_status(session, values: dict, *, status: str, duration: int | None, ended_at: datetime) -> None:
    """Keep the call's status from the status callback. A final status is never replaced by a
    non-final one that arrives late; duplicates change nothing."""
    final = status in FINAL_CALL_STATUSES
    fields = {"status": status, "duration": duration, "ended_at": ended_at if final else None}
    session.execute(prepared(session, _call_ended if final else _call_in_progress), {**values, **fields})


def note_choice(
    session, call_sid: str, step: int, kind: str, *, at: datetime,
    topic_id: int | None = None, language: str | None = None, stance: str | None = None,
) -> None:
    """Store a keypress as a fact keyed on (call, step), and keep `call_topics` in step."""
    session.execute(prepared(session, _choice), {
        "call_sid": call_sid, "step": step, "kind": kind, "topic_id": topic_id, "language": language,
        "stance": stance, "chosen_at": at,
    })
    if topic_id is None:
        return
    session.execute(prepared(session, _stance_chosen if stance else _topic_chosen), {
        "call_sid": call_sid, "topic_id": topic_id, "stance": stance, "stance_step": step if stance else 0,
    })


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
