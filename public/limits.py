"""Reference lookups (`/public/check`) limited per address, in the database, so that every web
process of every instance shares one count: PUBLIC_CHECKS_PER_ADDRESS lookups within
PUBLIC_CHECK_WINDOW_MINUTES from one address, then 429 until the window ends.

The count lives in `sign_in_limits` (staff/throttle.py's table: a key, a count, when it
started, when it was last touched), under keys `public-check <address>`, taken atomically as
the throttle takes its counts: one upsert that locks the row, then the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from models import db, insert_for, utcnow
from models.users import SignInLimit

LIMITS = SignInLimit.__table__
KEY_PREFIX = "public-check "
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Verdict:
    """Whether a lookup may go ahead; if not, how many seconds to wait."""

    allowed: bool
    retry_after: int = 0


def admit_lookup(address: str | None, per_window: int, window: timedelta, now: datetime | None = None) -> Verdict:
    """Count one lookup from `address`, unless it already made `per_window` within the
    current window (refused lookups are not counted)."""
    now = now or utcnow()
    key = KEY_PREFIX + (address or "unknown")
    with db.engine.begin() as conn:
        old = select(LIMITS.c.key).where(LIMITS.c.key.startswith(KEY_PREFIX), LIMITS.c.last_at < now - FORGET_AFTER)
        if conn.dialect.name == "postgresql":
            old = old.with_for_update(skip_locked=True)
        conn.execute(delete(LIMITS).where(LIMITS.c.key.in_(old)))
        insert = insert_for(conn, SignInLimit).values(key=key, failures=0, first_at=now, last_at=now)
        upsert = insert.on_conflict_do_update(index_elements=[LIMITS.c.key], set_={"key": insert.excluded.key})
        count, first_at = conn.execute(upsert.returning(LIMITS.c.failures, LIMITS.c.first_at)).one()
        if now - first_at >= window:
            count, first_at = 0, now
        if count >= per_window:
            return Verdict(False, max(1, math.ceil((first_at + window - now).total_seconds())))
        conn.execute(
            update(LIMITS).where(LIMITS.c.key == key).values(failures=count + 1, first_at=first_at, last_at=now)
        )
    return Verdict(True)


def addresses_held_back(session, per_window: int, window: timedelta, now: datetime | None = None) -> int:
    """How many addresses have used up their lookups in the current window (for /metrics: a
    sweep through reference numbers shows here, whichever instance it hit)."""
    now = now or utcnow()
    return session.execute(
        select(func.count())
        .select_from(LIMITS)
        .where(LIMITS.c.key.startswith(KEY_PREFIX), LIMITS.c.failures >= per_window, LIMITS.c.first_at > now - window)
    ).scalar_one()
