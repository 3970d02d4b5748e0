"""Legal holds: records the line must keep, whatever the retention rule or a person asks.

A hold covers comments (recordings) by one of three scopes:

- `window`: every comment recorded in [since, until) (either end may be open);
- `topics`: every comment on these topics, within [since, until) when given;
- `comments`: these comments, named one by one.

While a hold is active (not released, and not past its `expires_at` if it has one) nothing
may destroy what it covers: `flask recordings purge` keeps the audio (and transcripts) and
says which hold kept them, and the console refuses to remove the audio or delete the comment,
naming the hold (`holds_covering`). Deleting Twilio's copy stays allowed while our own copy is
stored, since the record is kept; never when Twilio's is the last one.

Redaction stays possible: staff may remove a held comment's transcript from view. The
transcripts are emptied as for any redaction, so nothing that shows transcripts (the console,
the API, the CSV files, the export) can show them; their original text is first copied to
`held_transcripts`, a table no page, API or export reads. Once no active hold covers the
comment any more (released, or expired), the copy is destroyed, as the redaction asked
(`destroy_released_originals`, run when a hold is released, by the worker's sweep and by
`flask recordings purge`). A transcript that arrives for a comment after its redaction (a
late callback, the worker's transcriber) is stored redacted, as for any redaction; while a
hold covers the comment its text is kept in `held_transcripts` too (facts/writer.py
`keep_held_originals`), once however often it arrives, and destroyed the same way.

Holds are never deleted: releasing one records who and when, and both placing and releasing
are in the audit log.

(Not to be confused with the "holds" of `tests/test_redaction_holds.py`, which means that a
redaction holds whatever order the facts arrive in.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, and_, delete, exists, or_, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .audit import audit
from .base import db, utcnow
from .recordings import Recording, Transcription

SCOPES = ("window", "topics", "comments")
MAX_REASON = 500
MAX_COMMENTS = 1000  # comments named in one hold


class HoldError(ValueError):
    """A hold that cannot be placed or released as asked; `str()` says why, for a person."""


class LegalHold(db.Model):
    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(16))  # window | topics | comments
    since: Mapped[datetime | None]  # naive UTC, included
    until: Mapped[datetime | None]  # naive UTC, excluded
    expires_at: Mapped[datetime | None]  # None: until released
    placed_at: Mapped[datetime]
    placed_by: Mapped[int | None] = mapped_column(Integer)  # users.id when a staff member placed it
    placed_by_label: Mapped[str] = mapped_column(String(254))  # their email, or "cli:<name>"
    released_at: Mapped[datetime | None] = mapped_column(index=True)
    released_by: Mapped[int | None] = mapped_column(Integer)
    released_by_label: Mapped[str | None] = mapped_column(String(254))
    release_note: Mapped[str | None] = mapped_column(Text)

    topics: Mapped[list[LegalHoldTopic]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    comments: Mapped[list[LegalHoldComment]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    def active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.released_at is None and (self.expires_at is None or self.expires_at > now)

    def describe(self) -> str:
        """How messages name the hold: `legal hold #3 ("Smith v. County", placed by ann@x.org)`."""
        return f'legal hold #{self.id} ("{self.reason}", placed by {self.placed_by_label})'


class LegalHoldTopic(db.Model):
    __tablename__ = "legal_hold_topics"

    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_holds.id"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)


class LegalHoldComment(db.Model):
    __tablename__ = "legal_hold_comments"

    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_holds.id"), primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class HeldTranscript(db.Model):
    """The original of a transcript staff redacted while a hold covered its comment: kept out
    of sight (nothing but this module reads it) until no hold covers the comment."""

    __tablename__ = "held_transcripts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(32))
    transcription_sid: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    transcribed_at: Mapped[datetime]  # the transcript's own created_at
    kept_at: Mapped[datetime]
    redaction_reason: Mapped[str | None] = mapped_column(Text)


# --- which holds cover what ------------------------------------------------------------------


def is_active(now: datetime):
    """The condition for a hold in force at `now`."""
    return and_(LegalHold.released_at.is_(None), or_(LegalHold.expires_at.is_(None), LegalHold.expires_at > now))


def covers_recording():
    """The condition for a hold's scope to take in the `Recording` row it is joined with."""
    on_topic = exists().where(LegalHoldTopic.hold_id == LegalHold.id, LegalHoldTopic.topic_id == Recording.topic_id)
    named = exists().where(
        LegalHoldComment.hold_id == LegalHold.id, LegalHoldComment.recording_sid == Recording.recording_sid
    )
    return and_(
        or_(LegalHold.since.is_(None), Recording.created_at >= LegalHold.since),
        or_(LegalHold.until.is_(None), Recording.created_at < LegalHold.until),
        or_(LegalHold.scope != "topics", on_topic),
        or_(LegalHold.scope != "comments", named),
    )


def holds_covering(session, recording: Recording, now: datetime | None = None) -> list[LegalHold]:
    """The active holds that cover this comment, oldest first."""
    query = (
        select(LegalHold)
        .join(Recording, and_(Recording.id == recording.id, covers_recording()))
        .where(is_active(now or utcnow()))
        .order_by(LegalHold.id)
    )
    return list(session.scalars(query))


def refusal(holds: list[LegalHold], what: str) -> str:
    """The message that says which holds stop `what` ("The audio cannot be removed")."""
    named = "; ".join(hold.describe() for hold in holds)
    return f"{what}: this comment is under {named}. Release the hold first."


@dataclass
class NewHold:
    """A hold as a person asked for it, checked (see `place_hold`)."""

    reason: str
    since: datetime | None = None
    until: datetime | None = None
    topic_ids: list[int] = field(default_factory=list)
    recording_sids: list[str] = field(default_factory=list)
    expires_at: datetime | None = None

    @property
    def scope(self) -> str:
        if self.recording_sids:
            return "comments"
        return "topics" if self.topic_ids else "window"


def check_new_hold(new: NewHold, now: datetime) -> None:
    """Raise HoldError saying what is wrong with `new`, if anything."""
    if len(new.reason) < 3:
        raise HoldError("Give the hold's reason (for example, the case or the request it answers).")
    if len(new.reason) > MAX_REASON:
        raise HoldError(f"The reason is longer than {MAX_REASON} characters.")
    if new.recording_sids and (new.topic_ids or new.since or new.until):
        raise HoldError("A hold names comments, or covers topics and dates, not both.")
    if not (new.recording_sids or new.topic_ids or new.since or new.until):
        raise HoldError("Say what the hold covers: a date window, topics, or comments by reference number.")
    if len(new.recording_sids) > MAX_COMMENTS:
        raise HoldError(f"A hold names at most {MAX_COMMENTS} comments; place several.")
    if new.since is not None and new.until is not None and new.until <= new.since:
        raise HoldError("The hold's window ends before it starts.")
    if new.expires_at is not None and new.expires_at <= now:
        raise HoldError("The hold's expiry is already past; leave it empty for a hold that lasts until released.")


def place_hold(session, new: NewHold, by, *, ip: str | None = None) -> LegalHold:
    """Add a hold (raising HoldError when `new` cannot be one) and its audit entry. `by` is a
    user, or a label such as "cli:ann" for a person at the command line."""
    now = utcnow()
    check_new_hold(new, now)
    actor_id, label = (None, by) if isinstance(by, str) else (by.id, by.label)
    hold = LegalHold(
        reason=new.reason,
        scope=new.scope,
        since=new.since,
        until=new.until,
        expires_at=new.expires_at,
        placed_at=now,
        placed_by=actor_id,
        placed_by_label=label[:254],
        topics=[LegalHoldTopic(topic_id=t) for t in sorted(set(new.topic_ids))],
        comments=[LegalHoldComment(recording_sid=s) for s in sorted(set(new.recording_sids))],
    )
    session.add(hold)
    session.flush()
    audit(
        session,
        by,
        "hold.place",
        f"hold {hold.id}",
        reason=new.reason,
        scope=hold.scope,
        since=new.since.isoformat() if new.since else None,
        until=new.until.isoformat() if new.until else None,
        topics=sorted(set(new.topic_ids)),
        comments=sorted(set(new.recording_sids)),
        expires_at=new.expires_at.isoformat() if new.expires_at else None,
        ip=ip,
    )
    return hold


def release_hold(session, hold: LegalHold, by, note: str | None = None, *, ip: str | None = None) -> int:
    """Release a hold (HoldError if it already was), audited; then destroy the originals of
    redacted transcripts that no hold keeps any more. Returns how many were destroyed."""
    if hold.released_at is not None:
        raise HoldError(f"Legal hold #{hold.id} was already released on {hold.released_at:%Y-%m-%d %H:%M} UTC.")
    actor_id, label = (None, by) if isinstance(by, str) else (by.id, by.label)
    hold.released_at, hold.released_by, hold.released_by_label = utcnow(), actor_id, label[:254]
    hold.release_note = note or None
    session.flush()
    destroyed = destroy_released_originals(session, by)
    audit(session, by, "hold.release", f"hold {hold.id}", reason=hold.reason, note=note, ip=ip, destroyed=destroyed)
    return destroyed


def list_holds(session, *, include_released: bool = True) -> list[LegalHold]:
    """Holds, the ones in force first, then the rest, newest first within each."""
    now = utcnow()
    query = select(LegalHold).order_by(LegalHold.id.desc())
    if not include_released:
        query = query.where(is_active(now))
    return sorted(session.scalars(query), key=lambda hold: not hold.active(now))


# --- redaction under a hold ------------------------------------------------------------------


def keep_originals(session, recording: Recording, reason: str) -> int:
    """Before a redaction empties this comment's transcripts: copy the text of each to
    `held_transcripts`, out of sight. Returns how many were kept."""
    now = utcnow()
    kept = 0
    for t in session.scalars(select(Transcription).where(Transcription.recording_sid == recording.recording_sid)):
        if not t.text:
            continue
        session.add(
            HeldTranscript(
                recording_sid=t.recording_sid,
                source=t.source,
                transcription_sid=t.transcription_sid,
                language=t.language,
                text=t.text,
                transcribed_at=t.created_at,
                kept_at=now,
                redaction_reason=reason,
            )
        )
        kept += 1
    return kept


def destroy_released_originals(session, by="system:holds") -> int:
    """Delete the kept originals of comments no active hold covers any more (the hold was
    released or has expired): the redaction that hid them then takes full effect. Each comment
    whose originals go is audited. Returns how many originals were destroyed."""
    held = (
        select(Recording.recording_sid)
        .join(LegalHold, covers_recording())
        .where(is_active(utcnow()), Recording.recording_sid == HeldTranscript.recording_sid)
    )
    free = list(session.scalars(select(HeldTranscript.recording_sid).where(~held.exists()).distinct()))
    if not free:
        return 0
    destroyed = 0
    for sid in free:
        gone = session.execute(delete(HeldTranscript).where(HeldTranscript.recording_sid == sid)).rowcount
        audit(session, by, "hold.original_destroyed", sid, transcripts=gone)
        destroyed += gone
    return destroyed
