"""The block list: numbers whose calls the line answers with a short message and ends.

A blocked call is never dropped: it is stored like any call (with `calls.blocked` set) and
counted as `blocked`, in no topic. Entries are matched on the keyed hash of `From` the line
computes for every call (`models.calls.number_hash`, with `CALLER_HASH_KEY`), so the list
works whatever `CALLER_NUMBERS` says: with `hash` or `none` the number staff type is kept
only as its hash and its last four digits. Entries are lifted, never deleted, and each
change is in the audit log (the console's admin pages write it).

The voice webhook reads the active hashes from `BlockListCache`, refreshed from the database
at most every `BLOCK_LIST_CACHE_SECONDS` (default 5): a number blocked or unblocked in the
console takes effect on each web process within that many seconds.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow
from .calls import is_withheld, number_hash

MAX_REASON = 255


class BlockError(ValueError):
    """The entry cannot be made as asked; the message says why, for staff."""


class BlockedNumber(db.Model):
    __tablename__ = "blocked_numbers"
    __table_args__ = (Index("ix_blocked_numbers_caller_hash", "caller_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    caller_hash: Mapped[str] = mapped_column(String(64))
    number_hint: Mapped[str] = mapped_column(String(16))  # the last four digits, for staff
    reason: Mapped[str] = mapped_column(String(MAX_REASON))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by_label: Mapped[str] = mapped_column(String(254))
    lifted_at: Mapped[datetime | None]
    lifted_by_label: Mapped[str | None] = mapped_column(String(254))

    def active(self, now: datetime) -> bool:
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)


def normalize_number(text: str) -> str:
    """A number as staff type it ("(503) 555-0100", "+1 503 555 0100") in E.164, as Twilio
    sends `From`: ten digits are taken as a North American number. Raises BlockError when it
    is not a phone number, or is a value Twilio uses for a withheld number."""
    text = (text or "").strip()
    if is_withheld(text):
        raise BlockError("A withheld number cannot be blocked: it is not one caller.")
    if not re.fullmatch(r"\+?[\d\s().\-]{7,25}", text):
        raise BlockError("Enter a phone number, e.g. +15035550100 or (503) 555-0100.")
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        number = "+" + digits
    elif len(digits) == 10:
        number = "+1" + digits
    elif len(digits) == 11 and digits.startswith("1"):
        number = "+" + digits
    else:
        number = "+" + digits
    if not 8 <= len(number) <= 16:
        raise BlockError("Enter a phone number, e.g. +15035550100 or (503) 555-0100.")
    return number


def block_number(
    session, key: str, number: str, reason: str, *, by, expires_at: datetime | None = None
) -> BlockedNumber:
    """Add an entry for `number` (typed by staff) to the session; `by` is the staff member.
    Raises BlockError when the number or the reason cannot be used."""
    number = normalize_number(number)
    reason = (reason or "").strip()
    if not reason:
        raise BlockError("Say why the number is blocked.")
    if expires_at is not None and expires_at <= utcnow():
        raise BlockError("The expiry must be in the future.")
    entry = BlockedNumber(
        caller_hash=number_hash(key, number),
        number_hint=number[-4:],
        reason=reason[:MAX_REASON],
        expires_at=expires_at,
        created_by=getattr(by, "id", None),
        created_by_label=getattr(by, "label", str(by))[:254],
    )
    session.add(entry)
    return entry


def lift_block(entry: BlockedNumber, *, by) -> None:
    if entry.lifted_at is None:
        entry.lifted_at = utcnow()
        entry.lifted_by_label = getattr(by, "label", str(by))[:254]


def active_hashes(session, now: datetime | None = None) -> frozenset[str]:
    now = now or utcnow()
    rows = session.scalars(
        select(BlockedNumber.caller_hash).where(
            BlockedNumber.lifted_at.is_(None),
            or_(BlockedNumber.expires_at.is_(None), BlockedNumber.expires_at > now),
        )
    )
    return frozenset(rows)


def list_entries(session) -> list[BlockedNumber]:
    return list(session.scalars(select(BlockedNumber).order_by(BlockedNumber.created_at.desc(), BlockedNumber.id)))


class BlockListCache:
    """The active hashes, read at most every `ttl` seconds per process. While the database
    cannot be read, the last list read stands (empty in a process that never read one), so a
    webhook never waits on it nor fails for it."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._hashes: frozenset[str] = frozenset()
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def get(self, session, database_ok: bool = True) -> frozenset[str]:
        now = time.monotonic()
        if now - self._checked < self.ttl or not database_ok:
            return self._hashes
        try:
            fresh = active_hashes(session)
        except SQLAlchemyError:
            session.rollback()
            fresh = self._hashes
        with self._lock:
            self._hashes, self._checked = fresh, now
        return fresh

    def is_blocked(self, session, key: str, from_number: str | None, database_ok: bool = True) -> bool:
        number = (from_number or "").strip()
        if not number or is_withheld(number):
            return False
        hashes = self.get(session, database_ok)
        return bool(hashes) and number_hash(key, number) in hashes

    def forget(self) -> None:
        with self._lock:
            self._checked = float("-inf")


def block_list(app) -> BlockListCache:
    """The app's cache of the block list (set up by `init_block_list`)."""
    return app.extensions["block_list"]


def init_block_list(app) -> None:
    app.extensions["block_list"] = BlockListCache(app.config["BLOCK_LIST_CACHE_SECONDS"])
