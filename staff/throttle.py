"""Throttling failed sign-ins so that guessing stays slow and nobody can lock a person out.

Counted in the database (`sign_in_limits`), so that every gunicorn worker of every instance
on one database shares the count:

- per address and account (the pair): SIGN_IN_FAILURES_PER_PAIR free failures, then each
  further try waits SIGN_IN_BACKOFF_SECONDS, doubling with each failure up to
  SIGN_IN_BACKOFF_MAX_SECONDS: a back-off, never a wall. A success forgets the pair's
  failures; untouched for a day, they are forgotten too.
- per address over all accounts: SIGN_IN_FAILURES_PER_ADDRESS failures within
  SIGN_IN_WINDOW_MINUTES, then that address waits for the window to end.
- per account over all addresses: once an account has SIGN_IN_FAILURES_PER_ACCOUNT failures
  within the window it is under attack, and each pair gets one free failure instead of
  SIGN_IN_FAILURES_PER_PAIR. An address that has not failed on the account is never refused
  for it, so a stranger cannot keep the owner from signing in from another address.

A try is counted as a failure before its password is checked (`admit`), in one transaction
that locks the rows it reads, and refunded when the password was right (`forgive`): however
many tries arrive at once, no more passwords are checked than the limits allow.

Not Flask-Limiter: its storage (the `limits` package) is memory, Redis, Memcached or MongoDB.
In memory each process counts alone; the others are servers this line does not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from models import db, insert_for, utcnow
from models.users import SignInLimit

PAIR_MEMORY = timedelta(days=1)
LIMITS = SignInLimit.__table__


@dataclass(frozen=True)
class Verdict:
    """Whether a sign-in may check its password now; if not, how many seconds to wait."""

    allowed: bool
    retry_after: int = 0


@dataclass(frozen=True)
class Count:
    failures: int
    first_at: datetime
    last_at: datetime


def keys_for(email: str, address: str | None) -> tuple[str, str, str]:
    """(pair, address, account) keys of a sign-in for `email` from `address`."""
    address = address or "unknown"
    return f"pair {address} {email}", f"address {address}", f"account {email}"


def admit(email: str, address: str | None, now: datetime | None = None) -> Verdict:
    """Count a sign-in try for `email` from `address` as a failure, unless a limit refuses it
    first; refused tries are not counted. Call `forgive` when the password was right."""
    now = now or utcnow()
    config = current_app.config
    window = timedelta(minutes=config["SIGN_IN_WINDOW_MINUTES"])
    pair_key, address_key, account_key = keys_for(email, address)
    with db.engine.begin() as conn:
        _forget_old(conn, now - PAIR_MEMORY)
        counts = {key: _lock(conn, key, now) for key in sorted((pair_key, address_key, account_key))}
        pair, by_address, by_account = counts[pair_key], counts[address_key], counts[account_key]
        pair_failures = pair.failures if now - pair.last_at < PAIR_MEMORY else 0
        address_failures = by_address.failures if now - by_address.first_at < window else 0
        account_failures = by_account.failures if now - by_account.first_at < window else 0
        under_attack = account_failures >= config["SIGN_IN_FAILURES_PER_ACCOUNT"]
        free = min(1, config["SIGN_IN_FAILURES_PER_PAIR"]) if under_attack else config["SIGN_IN_FAILURES_PER_PAIR"]
        waits = []
        if address_failures >= config["SIGN_IN_FAILURES_PER_ADDRESS"]:
            waits.append(by_address.first_at + window - now)
        if pair_failures >= free:
            doublings = min(pair_failures - free, 30)
            wait = min(config["SIGN_IN_BACKOFF_SECONDS"] * 2**doublings, config["SIGN_IN_BACKOFF_MAX_SECONDS"])
            waits.append(pair.last_at + timedelta(seconds=wait) - now)
        waits = [w for w in waits if w > timedelta(0)]
        if waits:
            return Verdict(False, max(1, math.ceil(max(waits).total_seconds())))
        _charge(conn, pair_key, pair_failures, pair.first_at, now)
        _charge(conn, address_key, address_failures, by_address.first_at if address_failures else now, now)
        _charge(conn, account_key, account_failures, by_account.first_at if account_failures else now, now)
    return Verdict(True)


def forgive(email: str, address: str | None) -> None:
    """The password was right: forget the pair's failures and take back this try's count
    from the address and the account."""
    pair_key, address_key, account_key = keys_for(email, address)
    with db.engine.begin() as conn:
        conn.execute(delete(LIMITS).where(LIMITS.c.key == pair_key))
        conn.execute(
            update(LIMITS)
            .where(LIMITS.c.key.in_([address_key, account_key]), LIMITS.c.failures > 0)
            .values(failures=LIMITS.c.failures - 1)
        )


def _lock(conn: Connection, key: str, now: datetime) -> Count:
    """The count for `key` (made at zero if there is none), locked until the transaction
    ends: on PostgreSQL the row, on SQLite the database (the statement writes)."""
    insert = insert_for(conn, SignInLimit).values(key=key, failures=0, first_at=now, last_at=now)
    upsert = insert.on_conflict_do_update(index_elements=[LIMITS.c.key], set_={"key": insert.excluded.key})
    failures, first_at, last_at = conn.execute(
        upsert.returning(LIMITS.c.failures, LIMITS.c.first_at, LIMITS.c.last_at)
    ).one()
    return Count(failures, first_at, last_at)


def _charge(conn: Connection, key: str, failures: int, first_at: datetime, now: datetime) -> None:
    conn.execute(
        update(LIMITS).where(LIMITS.c.key == key).values(failures=failures + 1, first_at=first_at, last_at=now)
    )


def _forget_old(conn: Connection, before: datetime) -> None:
    """Delete counts untouched since `before`; on PostgreSQL skipping rows another sign-in has
    locked, so this never waits. (On SQLite this first write also takes the lock.)"""
    old = select(LIMITS.c.key).where(LIMITS.c.last_at < before)
    if conn.dialect.name == "postgresql":
        old = old.with_for_update(skip_locked=True)
    conn.execute(delete(LIMITS).where(LIMITS.c.key.in_(old)))
