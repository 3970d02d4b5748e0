"""The audit log: who did what to which thing, and when. Written in the same transaction as
the change it records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow


class AuditEntry(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))  # a staff member, or "system:<command>"
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict | None] = mapped_column(JSON)


def audit(session, actor: str, action: str, target: str | None = None, detail: dict | None = None) -> None:
    """Add an entry to the audit log; the caller commits it with the change."""
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, detail=detail))
