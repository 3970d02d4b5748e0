"""Recorded comments and their transcripts, keyed on `RecordingSid`.

The `<Record>` action, the recording status callback and the transcription callback may come
in any order, and twice: each upserts what it knows and never overwrites what another
already filled in. A comment's reference number is a fixed permutation of its row id: unique
by construction, assigned once, the same for every retry, and not a visible count.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, bindparam, func
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, prepared

RECORDING_STATUSES = ("in-progress", "completed", "absent", "failed")
NOT_A_COMMENT = ("absent", "failed")

# reference = 1,000,000 + (id * _REF_MULTIPLIER mod 9,000,000): seven digits, one per id.
_REF_SPAN = 9_000_000
_REF_MULTIPLIER = 7_368_787  # coprime with the span, so the map is a bijection
_REF_INVERSE = pow(_REF_MULTIPLIER, -1, _REF_SPAN)


def reference_for(recording_id: int) -> str:
    if recording_id < _REF_SPAN:
        return str(1_000_000 + (recording_id * _REF_MULTIPLIER) % _REF_SPAN)
    return str(10_000_000 + recording_id - _REF_SPAN)  # eight digits beyond nine million


def recording_id_for(reference: str) -> int | None:
    """The row id a reference number was made from, or None if it is not one of ours."""
    if not reference.isdigit():
        return None
    number = int(reference)
    if 1_000_000 <= number < 10_000_000:
        return ((number - 1_000_000) * _REF_INVERSE) % _REF_SPAN or None
    if number >= 10_000_000:
        return number - 10_000_000 + _REF_SPAN
    return None


class Recording(db.Model):
    __tablename__ = "recordings"
    __table_args__ = (Index("ix_recordings_topic_id", "topic_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    stance: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(16))
    step: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))  # from the status callback
    finished_by: Mapped[str | None] = mapped_column(String(16))  # the key pressed, or "hangup"
    media_url: Mapped[str | None] = mapped_column(String(512))
    error_code: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(index=True)
    action_at: Mapped[datetime | None]
    status_at: Mapped[datetime | None]
    # Our own copy of the audio (see storage/), once the worker has fetched it.
    storage_key: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    checksum: Mapped[str | None] = mapped_column(String(64))
    stored_at: Mapped[datetime | None]

    @property
    def reference(self) -> str:
        return reference_for(self.id)


class Transcription(db.Model):
    __tablename__ = "transcriptions"
    __table_args__ = (UniqueConstraint("recording_sid", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(32))  # twilio | whisper | staff
    transcription_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    language: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # completed | failed
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def _keep(column, excluded):
    """Keep what is stored; fill it from this request only where it is still empty."""
    return func.coalesce(column, excluded)


def _binds(*names: str) -> dict:
    return {name: bindparam(name) for name in names}


def _recording_action(insert):
    stmt = insert(Recording).values(**_binds(
        "recording_sid", "call_sid", "topic_id", "stance", "language", "step", "duration", "finished_by",
        "media_url", "created_at", "action_at",
    ))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["recording_sid"],
        set_={
            "topic_id": _keep(Recording.topic_id, ex.topic_id),
            "stance": _keep(Recording.stance, ex.stance),
            "language": _keep(Recording.language, ex.language),
            "step": _keep(Recording.step, ex.step),
            "duration": _keep(Recording.duration, ex.duration),
            "finished_by": _keep(Recording.finished_by, ex.finished_by),
            "media_url": _keep(Recording.media_url, ex.media_url),
            "action_at": _keep(Recording.action_at, ex.action_at),
        },
    ).returning(Recording.id)


def note_recording_action(
    session, recording_sid: str, call_sid: str, *, at: datetime, topic_id: int | None,
    stance: str | None, language: str | None, step: int, duration: int | None,
    finished_by: str | None, media_url: str | None,
) -> int:
    """Store the comment when the `<Record>` action arrives; return its row id."""
    return session.execute(prepared(session, _recording_action), {
        "recording_sid": recording_sid, "call_sid": call_sid, "topic_id": topic_id, "stance": stance,
        "language": language, "step": step, "duration": duration, "finished_by": finished_by,
        "media_url": media_url, "created_at": at, "action_at": at,
    }).scalar_one()


def _recording_status(insert):
    stmt = insert(Recording).values(**_binds(
        "recording_sid", "call_sid", "status", "duration", "media_url", "error_code", "created_at", "status_at",
    ))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["recording_sid"],
        set_={
            "status": ex.status,
            "duration": func.coalesce(ex.duration, Recording.duration),
            "media_url": func.coalesce(ex.media_url, Recording.media_url),
            "error_code": ex.error_code,
            "status_at": ex.status_at,
        },
        where=Recording.status.is_(None) | (Recording.status == "in-progress"),
    )


def note_recording_status(
    session, recording_sid: str, call_sid: str, *, at: datetime, status: str,
    duration: int | None, media_url: str | None, error_code: str | None,
) -> None:
    """Keep the recording status callback's word. Its duration is the final one; a status
    already final is not moved back by a late `in-progress`."""
    session.execute(prepared(session, _recording_status), {
        "recording_sid": recording_sid, "call_sid": call_sid, "status": status, "duration": duration,
        "media_url": media_url, "error_code": error_code, "created_at": at, "status_at": at,
    })


def _recording_known(insert):
    stmt = insert(Recording).values(**_binds("recording_sid", "call_sid", "created_at"))
    return stmt.on_conflict_do_nothing(index_elements=["recording_sid"])


def _transcription(insert):
    stmt = insert(Transcription).values(**_binds(
        "recording_sid", "source", "transcription_sid", "language", "status", "text", "created_at", "updated_at",
    ))
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["recording_sid", "source"],
        set_={"status": ex.status, "text": ex.text, "transcription_sid": ex.transcription_sid,
              "updated_at": ex.updated_at},
    )


def note_transcription(
    session, recording_sid: str, call_sid: str, *, at: datetime, source: str,
    transcription_sid: str | None, status: str, text: str | None, language: str | None,
) -> None:
    """Keep a transcript, creating the recording's row if this arrives first."""
    session.execute(prepared(session, _recording_known),
                    {"recording_sid": recording_sid, "call_sid": call_sid, "created_at": at})
    session.execute(prepared(session, _transcription), {
        "recording_sid": recording_sid, "source": source, "transcription_sid": transcription_sid,
        "language": language, "status": status, "text": text, "created_at": at, "updated_at": at,
    })
