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

A number has at most one active entry (neither lifted nor expired): `block_number` refuses a
second, so lifting an entry always unblocks its number. Entries are compared by their hash,
never by the text typed.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow
from .calls import is_withheld, number_hash

MAX_REASON = 255


class BlockError(ValueError):
    """The entry cannot be made as asked; the message says why, for staff."""


class AlreadyBlocked(BlockError):
    """The number has an active entry already (`entry`): lift it first to change it."""

    def __init__(self, entry: BlockedNumber) -> None:
        until = f"until {entry.expires_at:%Y-%m-%d %H:%M} UTC" if entry.expires_at else "with no end"
        super().__init__(
            f"The number ending {entry.number_hint} is already blocked, {until}. "
            "To change that entry, lift it first, then block the number again."
        )
        self.entry = entry


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
        """Neither lifted nor expired at `now` (as `is_active` says in SQL)."""
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)


def is_active(now: datetime):
    """The SQL condition for an entry that blocks its number at `now`: not lifted, not expired."""
    return BlockedNumber.lifted_at.is_(None) & or_(BlockedNumber.expires_at.is_(None), BlockedNumber.expires_at > now)


def to_ascii_digits(text: str) -> str:
    """`text` with every decimal digit of any script ("٣", "३", "３") written as its ASCII
    digit ("3"): Twilio's `From` is ASCII, so a number typed in other digits must be hashed in
    these to match its caller. Other characters, digit-like ones such as "²" included, are
    left as they are (and refused by `normalize_number`)."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)


def normalize_number(text: str) -> str:
    """A number as staff type it ("(503) 555-0100", "+1 503 555 0100", or in the digits of
    another script) in E.164 with ASCII digits, as Twilio sends `From`: ten digits are taken as
    a North American number. Raises BlockError when it is not a phone number, or is a value
    Twilio uses for a withheld number."""
    text = to_ascii_digits((text or "").strip())
    if is_withheld(text):
        raise BlockError("A withheld number cannot be blocked: it is not one caller.")
    if not re.fullmatch(r"\+?[0-9\s().\-]{7,25}", text):
        raise BlockError("Enter a phone number, e.g. +15035550100 or (503) 555-0100.")
    digits = re.sub(r"[^0-9]", "", text)
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


def active_entry(session, caller_hash: str, *, other_than: int | None = None) -> BlockedNumber | None:
    """The entry that blocks the number with this hash now (but `other_than`), or None."""
    query = select(BlockedNumber).where(BlockedNumber.caller_hash == caller_hash, is_active(utcnow()))
    if other_than is not None:
        query = query.where(BlockedNumber.id != other_than)
    return session.scalars(query.order_by(BlockedNumber.id).limit(1)).first()


def block_number(
    session, key: str, number: str, reason: str, *, by, expires_at: datetime | None = None
) -> BlockedNumber:
    """Add an entry for `number` (typed by staff) to the session, flushed (it has its id);
    `by` is the staff member. Raises AlreadyBlocked when the number has an active entry
    already, BlockError when the number or the reason cannot be used; the session then holds
    nothing new.

    Two additions for one number at once take turns, so that a double submit cannot leave two
    active entries: the new row is written before the check for another, and a writer holds
    its lock until its transaction ends (SQLite's one write lock; on PostgreSQL a transaction
    advisory lock on the number's hash, taken first). The second thus sees the first once it
    has committed, and is refused."""
    number = normalize_number(number)
    reason = (reason or "").strip()
    if not reason:
        raise BlockError("Say why the number is blocked.")
    if expires_at is not None and expires_at <= utcnow():
        raise BlockError("The expiry must be in the future.")
    caller_hash = number_hash(key, number)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(int(caller_hash[:15], 16))))  # 60 bits: a bigint
    entry = BlockedNumber(
        caller_hash=caller_hash,
        number_hint=number[-4:],
        reason=reason[:MAX_REASON],
        expires_at=expires_at,
        created_by=getattr(by, "id", None),
        created_by_label=getattr(by, "label", str(by))[:254],
    )
    session.add(entry)
    session.flush()
    already = active_entry(session, caller_hash, other_than=entry.id)
    if already is not None:
        session.delete(entry)
        session.flush()
        raise AlreadyBlocked(already)
    return entry


def lift_block(session, entry: BlockedNumber, *, by) -> bool:
    """Lift `entry` if it is active: True when this lifted it; False when it was lifted
    already or had expired, and is left as it was. Either way `entry` is then read afresh
    (who lifted it, when). One UPDATE that only an active entry matches: of two lifts at
    once, one lifts it."""
    lifted = session.execute(
        update(BlockedNumber)
        .where(BlockedNumber.id == entry.id, is_active(utcnow()))
        .values(lifted_at=utcnow(), lifted_by_label=getattr(by, "label", str(by))[:254])
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(entry)
    return lifted == 1


def active_hashes(session, now: datetime | None = None) -> frozenset[str]:
    rows = session.scalars(select(BlockedNumber.caller_hash).where(is_active(now or utcnow())))
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
