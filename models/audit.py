"""The audit log: who did what to which thing, when, and from where. Rows are only added.

Anything that acts on the line writes here through `audit()`: the staff console (sign-ins,
listening, exports, reviews, edits, deletions) and background jobs (e.g. a retention run,
with a label such as "worker" for its actor).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_target_at", "action", "target", "at"),
        Index("ix_audit_log_action_ip_at", "action", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[int | None] = mapped_column(Integer)  # users.id; None for the system or an unknown person
    actor_label: Mapped[str] = mapped_column(String(254))  # the email then, or e.g. "worker", "cli"
    action: Mapped[str] = mapped_column(String(64))  # e.g. sign_in, listen, export, topic.rename
    target: Mapped[str | None] = mapped_column(String(255))  # e.g. "comment 4821937", "user ann@x.org"
    detail: Mapped[dict | None] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))


def audit(
    session,
    actor: Any,
    action: str,
    target: str | None = None,
    detail: dict | None = None,
    *,
    ip: str | None = None,
    **more: Any,
) -> AuditEntry:
    """Add an entry to the session (the caller commits it with the change it records).

    `actor` is a user (anything with `id` and `label`), a label for a non-person such as
    "system:worker", or None. `detail` and any further keywords are merged into the entry's
    JSON detail, so both `audit(s, "system:worker", "recording.purge", sid, {"age_days": 90})`
    and `audit(s, user, "export", "comments", topics=[...])` work."""
    if actor is None or isinstance(actor, str):
        actor_id, label = None, actor or "system"
    else:
        actor_id, label = actor.id, actor.label
    entry = AuditEntry(
        at=utcnow(),
        actor=actor_id,
        actor_label=label[:254],
        action=action,
        target=target[:255] if target else None,
        detail={**(detail or {}), **more},
        ip=ip,
    )
    session.add(entry)
    return entry


def count_recent(
    session, action: str, since: datetime, *, target: str | None = None, ip: str | None = None, actor: int | None = None
) -> int:
    """How many `action` entries since `since`, for a target, an address or an actor."""
    conditions = [AuditEntry.action == action, AuditEntry.at >= since]
    if target is not None:
        conditions.append(AuditEntry.target == target)
    if ip is not None:
        conditions.append(AuditEntry.ip == ip)
    if actor is not None:
        conditions.append(AuditEntry.actor == actor)
    return session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
