"""Recorded comments and their transcripts, keyed on `RecordingSid`.

The `<Record>` action, the recording status callback and the transcription callback may come
in any order, and twice: each upserts what it knows and never overwrites what another
already filled in.

A comment's reference number is a fixed permutation of its `number`: unique by construction
and not a visible count. Numbers come from one counter in the database (`recording_numbers`),
which web processes draw from in blocks (ivr/numbers.py), so that the `<Record>` action can
read one back without a transaction of its own. The number the caller heard is the one kept:
a row made first by a callback gets a number of its own, replaced by the action's. Should the
action be answered twice with two numbers (a retry that reached another process), the first
stored stays the comment's and the other is kept in `recording_aliases`, so that every number
a caller heard finds the comment. Recordings stored before numbers existed have their row id
as their number, so their references did not change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func, select, text
from sqlalchemy.orm import Mapped, aliased, mapped_column

from .base import db

RECORDING_STATUSES = ("in-progress", "completed", "absent", "failed")
NOT_A_COMMENT = ("absent", "failed")

# reference = 1,000,000 + (number * _REF_MULTIPLIER mod 9,000,000): seven digits, one per number.
_REF_SPAN = 9_000_000
_REF_MULTIPLIER = 7_368_787  # coprime with the span, so the map is a bijection
_REF_INVERSE = pow(_REF_MULTIPLIER, -1, _REF_SPAN)
MAX_INTEGER = 2**31 - 1  # the largest an Integer column (ids, numbers) holds on PostgreSQL


def reference_for(number: int) -> str:
    if number < _REF_SPAN:
        return str(1_000_000 + (number * _REF_MULTIPLIER) % _REF_SPAN)
    return str(10_000_000 + number - _REF_SPAN)  # eight digits beyond nine million


def typed_digits(text: str) -> str:
    """A reference number as a person types it ("#836-8787", "836 8787"), digits only."""
    return text.strip().replace(" ", "").replace("-", "").lstrip("#")


def number_for(reference: str) -> int | None:
    """The number a reference was made from, or None if it is not one of ours."""
    reference = typed_digits(reference)
    if not (reference.isascii() and reference.isdigit()) or len(reference) > 12:  # ("²" is a digit to isdigit)
        return None
    number = int(reference)
    if 1_000_000 <= number < 10_000_000:
        return ((number - 1_000_000) * _REF_INVERSE) % _REF_SPAN or None
    if 10_000_000 <= number <= 10_000_000 + MAX_INTEGER - _REF_SPAN:
        return number - 10_000_000 + _REF_SPAN
    return None


class Recording(db.Model):
    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_duration_created_at", "duration", "created_at"),  # short comments (models/flags.py)
        Index(
            "ix_recordings_absent",
            "call_sid",
            sqlite_where=text("status = 'absent'"),
            postgresql_where=text("status = 'absent'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[int | None] = mapped_column(Integer, index=True, unique=True)  # its reference's
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
    created_at: Mapped[datetime]  # indexed with the id, alone and by topic (models/comments.py)
    action_at: Mapped[datetime | None]
    status_at: Mapped[datetime | None]
    # Our own copy of the audio (see storage/), once the worker has fetched it.
    storage_key: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    checksum: Mapped[str | None] = mapped_column(String(64))
    stored_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]  # the audio was deleted under the retention rule

    @property
    def reference(self) -> str:
        return reference_for(self.number if self.number is not None else self.id)


class RecordingNumbers(db.Model):
    """The counter comment numbers come from: one row (`facts.writer.take_numbers`)."""

    __tablename__ = "recording_numbers"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_number: Mapped[int] = mapped_column(Integer)


class RecordingAlias(db.Model):
    """Another number a caller was given for the same recording (its `<Record>` action
    answered twice, by processes that had not yet seen each other's)."""

    __tablename__ = "recording_aliases"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recording_sid: Mapped[str] = mapped_column(String(64), index=True)


def numbered(number: int):
    """The condition for the recording a number was given for, its own or an alias: one
    `RecordingSid`, found first (an `OR` of the two would make PostgreSQL scan every
    recording)."""
    own = aliased(Recording)
    sid = func.coalesce(
        select(own.recording_sid).where(own.number == number).scalar_subquery(),
        select(RecordingAlias.recording_sid).where(RecordingAlias.number == number).scalar_subquery(),
    )
    return Recording.recording_sid == sid


def recording_for_reference(session, reference: str) -> Recording | None:
    """The recording whose reference number this is (a number it was given, or its
    `RecordingSid`), or None."""
    reference = reference.strip()
    if reference.upper().startswith("RE"):
        if not (reference.isascii() and reference.isalnum()) or len(reference) > 64:
            return None  # not a RecordingSid (a NUL would not even reach PostgreSQL)
        return session.scalar(select(Recording).where(Recording.recording_sid == reference))
    number = number_for(reference)
    if number is None:
        return None
    return session.scalar(select(Recording).where(numbered(number)).limit(1))


class Transcription(db.Model):
    __tablename__ = "transcriptions"
    __table_args__ = (UniqueConstraint("recording_sid", "source"),)  # also its index by recording

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # twilio | whisper | staff
    transcription_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    language: Mapped[str | None] = mapped_column(String(16))
    # What made it: "twilio", or the offline transcriber and its model ("faster-whisper:base")
    engine: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # completed | failed
    text: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why there is no text, when it failed
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def is_comment(topic_id: int | None, duration: int | None, status: str | None) -> bool:
    """A recording counts as a comment on its topic when it is longer than 0 s and its status
    is not absent or failed."""
    return topic_id is not None and (duration or 0) > 0 and status not in NOT_A_COMMENT
