"""Call-back requests: a caller who pressed 1 after a comment, on a topic that offers it.

The caller's number is kept for that purpose whatever `CALLER_NUMBERS` says, encrypted at
rest with a key of its own (`CALLBACK_KEY`, Fernet: AES-128-CBC with HMAC-SHA256): the
webhook encrypts it before the fact is journalled, so neither the journal, the spool nor the
database ever holds it in the clear. Only staff with the call-back role see it
(`User.callbacks`), each view is in the audit log, and `purge_numbers` (`flask callbacks
purge`, run by the worker too) erases the number `CALLBACK_KEEP_DAYS` after the request. The
request's row stays, without the number, so the counts of who asked do not change.

One row per (`CallSid`, step): a retried keypress finds it there (facts/writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow


class CallbackRequest(db.Model):
    __tablename__ = "callback_requests"
    __table_args__ = (
        UniqueConstraint("call_sid", "step"),
        Index("ix_callback_requests_requested_at", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[int] = mapped_column(Integer)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    number_sealed: Mapped[str | None] = mapped_column(Text)  # Fernet token; None once erased
    requested_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    done_by_label: Mapped[str | None] = mapped_column(String(254))
    erased_at: Mapped[datetime | None]


class CallbackKeyMissing(RuntimeError):
    """No CALLBACK_KEY: numbers can be neither kept nor read."""


def _fernet(key: str):
    from cryptography.fernet import Fernet

    if not key:
        raise CallbackKeyMissing("CALLBACK_KEY is not set: call-back numbers cannot be kept or read")
    return Fernet(key.encode())


def seal_number(key: str, number: str) -> str:
    """The number encrypted with CALLBACK_KEY (raises CallbackKeyMissing without one)."""
    return _fernet(key).encrypt(number.encode()).decode()


def open_number(key: str, sealed: str | None) -> str | None:
    """The number a request keeps, or None when erased or sealed with another key."""
    if not sealed:
        return None
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


@dataclass
class CallbackRow:
    id: int
    requested_at: datetime
    topic: str | None
    number: str | None
    recording_sid: str | None
    done_at: datetime | None
    done_by: str | None
    erased: bool


def list_requests(session, key: str, *, include_done: bool = False, limit: int = 200) -> list[CallbackRow]:
    """The requests, newest first, their numbers decrypted (the caller audits the view)."""
    from .line import Topic

    query = (
        select(CallbackRequest, Topic.slug)
        .outerjoin(Topic, Topic.id == CallbackRequest.topic_id)
        .order_by(CallbackRequest.requested_at.desc(), CallbackRequest.id.desc())
        .limit(limit)
    )
    if not include_done:
        query = query.where(CallbackRequest.done_at.is_(None))
    return [
        CallbackRow(
            r.id,
            r.requested_at,
            slug,
            open_number(key, r.number_sealed),
            r.recording_sid,
            r.done_at,
            r.done_by_label,
            r.erased_at is not None,
        )
        for r, slug in session.execute(query)
    ]


def mark_done(session, request_id: int, *, by) -> tuple[CallbackRequest | None, bool]:
    """Mark a request done by `by`, once: (the request, True) when this marked it; (the
    request, False) when it was done already, its who and when left as they were; (None,
    False) when there is no such request. The request is read after the change. One UPDATE
    that only an open request matches: of two marks at once, one marks it."""
    marked = session.execute(
        update(CallbackRequest)
        .where(CallbackRequest.id == request_id, CallbackRequest.done_at.is_(None))
        .values(done_at=utcnow(), done_by_label=getattr(by, "label", str(by))[:254])
        .execution_options(synchronize_session=False)
    ).rowcount
    row = session.get(CallbackRequest, request_id, populate_existing=True)
    return row, row is not None and marked == 1


def purge_numbers(session, keep_days: int, now: datetime | None = None) -> int:
    """Erase the numbers of requests older than `keep_days` days (0: keep them); how many."""
    if keep_days <= 0:
        return 0
    now = now or utcnow()
    old = CallbackRequest.requested_at < now - timedelta(days=keep_days)
    return session.execute(
        update(CallbackRequest)
        .where(CallbackRequest.number_sealed.is_not(None), old)
        .values(number_sealed=None, erased_at=now)
    ).rowcount
