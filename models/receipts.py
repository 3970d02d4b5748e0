"""Signed daily receipts of the count (receipts/): one append-only chain.

Each row is one receipt as published: its canonical body (the JSON that was signed), the
body's SHA-256 (`hash`), the Ed25519 signature, and the hash of the receipt before it
(`previous`, "" for the first). `previous` is unique, so the chain cannot fork: two workers
closing a day at once cannot both append after the same receipt. Nothing updates or deletes
a row: the migration adds triggers that refuse both, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from .base import db

RECEIPT_KINDS = ("partial", "final", "amended")


class TallyReceipt(db.Model):
    __tablename__ = "tally_receipts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))  # partial | final | amended
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    made_at: Mapped[datetime]


def chain(session) -> list[TallyReceipt]:
    """Every receipt, in the order they were made."""
    return list(session.scalars(select(TallyReceipt).order_by(TallyReceipt.id)))


def last_receipt(session) -> TallyReceipt | None:
    return session.scalar(select(TallyReceipt).order_by(TallyReceipt.id.desc()).limit(1))


def receipts_of(session, day: date) -> list[TallyReceipt]:
    """The day's receipts in the order they were made (the last one stands)."""
    return list(session.scalars(select(TallyReceipt).where(TallyReceipt.day == day).order_by(TallyReceipt.id)))
