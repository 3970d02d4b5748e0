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
from functools import lru_cache

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, false, func, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from .base import db

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
    "+8656696",
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
    # A caller's calls by start: their latest position on a topic (facts/writer.py
    # `note_voices`) and the flags (models/flags.py), which the other indexes serve too.
    __table_args__ = (
        Index("ix_calls_caller_hash_started_at", "caller_hash", "started_at"),
        Index("ix_calls_stir_verstat_started_at", "stir_verstat", "started_at"),
        # Partial: only the few withheld or blocked calls are in them.
        Index(
            "ix_calls_withheld_started_at",
            "started_at",
            sqlite_where=text("caller_withheld = 1"),
            postgresql_where=text("caller_withheld"),
        ),
        Index(
            "ix_calls_blocked_started_at",
            "started_at",
            sqlite_where=text("blocked = 1"),
            postgresql_where=text("blocked"),
        ),
    )

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
    # The ZIP code the caller entered at the ZIP step (None: not asked, skipped or unreadable),
    # and the step it was entered at. Not `from_zip`: that is the carrier's guess about the
    # phone (Twilio's caller ID), never the caller's word.
    entered_zip: Mapped[str | None] = mapped_column(String(5))
    zip_step: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(index=True)  # our first webhook for the call
    ended_at: Mapped[datetime | None]
    duration: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    # Facts for the flags (models/flags.py): Twilio's SHAKEN/STIR verdict on `From`
    # (`StirVerstat`), whether `From` was withheld (None: no request with `From` seen yet), and
    # whether the line answered the call with the block list's message.
    stir_verstat: Mapped[str | None] = mapped_column(String(64))
    caller_withheld: Mapped[bool | None] = mapped_column(Boolean)
    blocked: Mapped[bool | None] = mapped_column(Boolean)
    # Played from the console's "Try the line" page: stored like any call, never counted,
    # shown in the inbox only when asked, never in the JSON API.
    is_test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


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
    digest = None if number.lower() in WITHHELD_NUMBERS else number_hash(key, number)
    return (number or None) if mode == "raw" else None, digest


@lru_cache(maxsize=4096)
def number_hash(key: str, number: str) -> str:
    """The keyed hash of a caller's number (cached: a call's every webhook names it)."""
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()


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
    verstat = (form.get("StirVerstat") or "").strip()
    values["stir_verstat"] = verstat[:64] or None
    values["caller_withheld"] = is_withheld(form["From"]) if "From" in form else None
    values["blocked"] = None
    return values


def is_withheld(from_number: str | None) -> bool:
    """Whether `From` is one of the values Twilio gives a withheld or unknown number."""
    return (from_number or "").strip().lower() in WITHHELD_NUMBERS


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


CALL_COLUMNS = (
    Call.call_sid,
    Call.account_sid,
    Call.from_number,
    Call.caller_hash,
    Call.to_number,
    Call.from_city,
    Call.from_state,
    Call.from_zip,
    Call.from_country,
    Call.caller_name,
    Call.started_at,
    Call.language,
    Call.stir_verstat,
    Call.caller_withheld,
    Call.blocked,
    Call.is_test,
)
CALL_KEYS = tuple(c.key for c in CALL_COLUMNS)


def repair_starts(session) -> tuple[int, int]:
    """Move each call's start back to its earliest stored keypress or `<Record>` action where
    it is later (a call first stored from a callback that came before its first webhook, by
    a writer that kept the first value it saw). Returns (calls repaired, of which without a
    caller): such a call whose caller is missing most likely lost it the same way, and no
    stored fact can give it back."""
    from .recordings import Recording

    repaired = without_caller = 0
    for moment_of in (
        select(func.min(Choice.chosen_at)).where(Choice.call_sid == Call.call_sid).scalar_subquery(),
        select(func.min(Recording.action_at)).where(Recording.call_sid == Call.call_sid).scalar_subquery(),
    ):
        later = Call.started_at > moment_of
        without_caller += session.execute(
            select(func.count()).select_from(Call).where(later, Call.caller_hash.is_(None))
        ).scalar_one()
        repaired += session.execute(update(Call).where(later).values(started_at=moment_of)).rowcount
    return repaired, without_caller
