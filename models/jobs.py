"""The job queue's table: one row per piece of background work, keyed on (kind, key).

A job is `queued` until a worker claims it, `running` while a worker holds its lease, and
then `done`, or `queued` again after a failed try (with `run_after` pushed back), or `failed`
after its last try. A worker that dies leaves its job `running` with a lease that runs out;
any worker then claims it again. The key is what the work is about (a `RecordingSid`), so a
piece of work is queued once however often it is asked for, and a job's body is written to
land its effects once however often it runs.

PostgreSQL hands each job to one worker with `FOR UPDATE SKIP LOCKED`; SQLite has one
writer at a time, so its single `UPDATE … RETURNING` claim is already exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint, and_, case, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, insert_for, utcnow

JOB_STATES = ("queued", "running", "done", "failed")


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
        Index("ix_jobs_state_run_after", "state", "run_after"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True)
class Claimed:
    """A job a worker holds: what to run, and the try this is."""

    id: int
    kind: str
    key: str
    options: dict
    attempt: int
    max_attempts: int

    @property
    def last_try(self) -> bool:
        return self.attempt >= self.max_attempts


def enqueue(
    session,
    kind: str,
    key: str,
    *,
    max_attempts: int,
    run_after: datetime | None = None,
    options: dict | None = None,
    again: bool = False,
) -> None:
    """Queue `kind` work on `key`. Work already queued keeps its place, moved earlier if
    `run_after` is sooner; with `again`, work that is done or failed is queued anew (fresh
    tries, these options). Running work is left alone."""
    now = utcnow()
    when = run_after or now
    stmt = insert_for(session, Job).values(
        kind=kind,
        key=key,
        options=options or {},
        state="queued",
        attempts=0,
        max_attempts=max_attempts,
        run_after=when,
        created_at=now,
        updated_at=now,
    )
    sooner = case((Job.run_after > when, when), else_=Job.run_after)
    requeue = Job.state.in_(("done", "failed"))
    set_ = {
        "run_after": case((requeue, when), else_=sooner) if again else sooner,
        "updated_at": now,
    }
    if again:
        set_.update(
            {
                "state": "queued",
                "attempts": case((requeue, 0), else_=Job.attempts),
                "max_attempts": max_attempts,
                "options": stmt.excluded.options,
                "finished_at": case((requeue, None), else_=Job.finished_at),
            }
        )
        where = Job.state != "running"
    else:
        where = Job.state == "queued"
    session.execute(stmt.on_conflict_do_update(index_elements=["kind", "key"], set_=set_, where=where))


def _due(now: datetime):
    return or_(
        and_(Job.state == "queued", Job.run_after <= now),
        and_(Job.state == "running", Job.lease_until < now),  # its worker died
    )


def has_due(session, kinds: tuple[str, ...] | None = None) -> bool:
    """Whether any job is ready to be claimed (a read, so that an idle worker never writes)."""
    conditions = [_due(utcnow())] + ([Job.kind.in_(kinds)] if kinds else [])
    return session.execute(select(Job.id).where(*conditions).limit(1)).first() is not None


def claim(session, worker: str, lease_seconds: float, kinds: tuple[str, ...] | None = None) -> Claimed | None:
    """Take the next due job for `worker` and start its next try; None when nothing is due."""
    now = utcnow()
    conditions = [_due(now)] + ([Job.kind.in_(kinds)] if kinds else [])
    pick = select(Job.id).where(*conditions).order_by(Job.run_after, Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(Job)
        .where(Job.id == pick.scalar_subquery(), *conditions)
        .values(
            state="running",
            attempts=Job.attempts + 1,
            worker=worker,
            updated_at=now,
            lease_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(Job.id, Job.kind, Job.key, Job.options, Job.attempts, Job.max_attempts)
    )
    row = session.execute(stmt).first()
    return Claimed(row.id, row.kind, row.key, row.options or {}, row.attempts, row.max_attempts) if row else None


def _held(job_id: int, worker: str):
    return and_(Job.id == job_id, Job.worker == worker, Job.state == "running")


def renew_lease(session, job_id: int, worker: str, lease_seconds: float) -> bool:
    """Extend a running job's lease; False if `worker` no longer holds it."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(_held(job_id, worker))
        .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return result.rowcount == 1


def finish(session, job_id: int, worker: str) -> bool:
    """Mark the job done; False if `worker` had lost it meanwhile."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(_held(job_id, worker))
        .values(state="done", lease_until=None, last_error=None, finished_at=now, updated_at=now)
    )
    return result.rowcount == 1


def fail(session, job_id: int, worker: str, error: str, retry_in: float | None) -> bool:
    """Record a failed try: queue the job again in `retry_in` seconds, or, with None, mark it
    failed for good. False if `worker` had lost it meanwhile."""
    now = utcnow()
    values = {"last_error": error[:4000], "lease_until": None, "updated_at": now}
    if retry_in is None:
        values.update(state="failed", finished_at=now)
    else:
        values.update(state="queued", run_after=now + timedelta(seconds=retry_in))
    return session.execute(update(Job).where(_held(job_id, worker)).values(**values)).rowcount == 1


def job_for(session, kind: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.kind == kind, Job.key == key))
