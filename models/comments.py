"""Comments as staff work with them: the inbox query, review state, notes and tags, transcript
corrections, and redaction.

Staff state lives in `comment_states`, one row per recording made the first time someone
touches it, so the webhooks' tables stay as Twilio's facts. A correction is a transcript with
source "staff"; the original stays beside it. Redaction empties the audio or the text but
keeps the recording's row, so the call and the comment still count.

The inbox pages with a keyset on (created_at, id), newest first, and filters on staff state
with EXISTS / NOT EXISTS, so that PostgreSQL walks an index backwards and stops after one
page however many comments there are (see the README for timings at a million).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    Text,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, insert_for, utcnow
from .callbacks import CallbackRequest
from .calls import Call
from .line import Topic
from .recordings import (
    MAX_INTEGER,
    NOT_A_COMMENT,
    Recording,
    Transcription,
    number_for,
    numbered,
    recording_for_reference,
    typed_digits,
)

TRANSCRIPT_RANK = {"staff": 0, "whisper": 1, "twilio": 2}
MAX_TAGS = 10
MAX_NOTE = 2000

# Newest first, whatever the filter on time or topic: each page is a short backward index walk.
Index("ix_recordings_created_at_id", Recording.created_at, Recording.id)
Index("ix_recordings_topic_id_created_at_id", Recording.topic_id, Recording.created_at, Recording.id)


class CommentState(db.Model):
    __tablename__ = "comment_states"

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), primary_key=True)
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    audio_removed_at: Mapped[datetime | None]
    transcript_removed_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    removal_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass
class InboxFilter:
    """What the inbox shows; every field comes from the URL. Times are naive UTC."""

    topic_id: int | None = None
    stance: str | None = None
    language: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    has_transcript: bool | None = None
    search: str = ""
    topic_ids: list[int] = field(default_factory=list)  # several topics, for the export
    # Where the caller said they are: "inside" or "outside" `district_zips`, or "unknown" (no
    # ZIP code entered); None: anywhere.
    place: str | None = None
    district_zips: frozenset[str] = frozenset()
    calls: Any = None  # a SELECT of call_sids the comment's call must be among (the flags' filter)
    no_calls: bool = False  # no call can match (a flag filter while every rule is off)
    callback: bool | None = None  # the caller asked for a call back during the call, or not
    # Comments left on test calls ("Try the line"): "hide" (the default), "also" or "only".
    tests: str = "hide"


@dataclass
class CommentRow:
    recording: Recording
    topic_slug: str | None = None
    from_number: str | None = None
    caller_hash: str | None = None
    state: CommentState | None = None
    transcript: Transcription | None = None
    original: Transcription | None = None
    no_text_reason: str | None = None  # why there is no transcript, when a transcriber said
    entered_zip: str | None = None  # the ZIP code the caller entered (not Twilio's caller-ID ZIP)
    is_test: bool = False  # left on a "Try the line" call

    @property
    def reference(self) -> str:
        return self.recording.reference

    @property
    def cursor(self) -> str:
        return encode_cursor(self.recording)

    @property
    def reviewed(self) -> bool:
        return bool(self.state and self.state.reviewed_at)

    @property
    def deleted(self) -> bool:
        return bool(self.state and self.state.deleted_at)

    @property
    def audio_removed(self) -> bool:
        return bool(self.state and self.state.audio_removed_at)

    @property
    def transcript_removed(self) -> bool:
        return bool(self.state and self.state.transcript_removed_at)

    @property
    def audio_purged(self) -> bool:
        """Deleted under the retention rule (see `flask recordings purge`)."""
        return self.recording.purged_at is not None

    @property
    def has_audio(self) -> bool:
        return (
            not self.audio_removed
            and not self.audio_purged
            and bool(self.recording.storage_key or self.recording.media_url)
        )

    @property
    def text(self) -> str | None:
        return None if self.transcript_removed or self.transcript is None else self.transcript.text


# --- paging cursors: "<microseconds since 2000>.<id>" -------------------------------------------

_EPOCH = datetime(2000, 1, 1)


def encode_cursor(recording: Recording) -> str:
    delta = recording.created_at - _EPOCH
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}.{recording.id}"


def decode_cursor(text: str | None) -> tuple[datetime, int] | None:
    """(created_at, id) from a cursor, or None when it is not one."""
    micros, _, row_id = (text or "").partition(".")
    digits = micros.isascii() and micros.isdigit() and row_id.isascii() and row_id.isdigit()
    if not digits or len(micros) > 18 or len(row_id) > 12 or int(row_id) > MAX_INTEGER:
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(row_id)
    except OverflowError:  # past the year 9999
        return None


# --- the filter ----------------------------------------------------------------------------------


def _state_where(*conditions):
    return exists().where(CommentState.recording_id == Recording.id, *conditions)


def _has_text():
    return exists().where(
        Transcription.recording_sid == Recording.recording_sid,
        Transcription.status == "completed",
        Transcription.text.is_not(None),
        Transcription.text != "",
    )


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def _matching_text(words: str, how: str):
    like = func.lower(Transcription.text).like(_like_pattern(words), escape="\\")
    if how == "scan":  # every matching transcript first, once (a CTE the database may not inline)
        matching = select(Transcription.recording_sid).where(like).cte("matching").prefix_with("MATERIALIZED")
        return Recording.recording_sid.in_(select(matching.c.recording_sid))
    probe = select(Transcription.id).where(Transcription.recording_sid == Recording.recording_sid, like)
    if how == "probe":
        probe = probe.offset(0)  # PostgreSQL: kept a per-row probe, not pulled up into a join
    return probe.exists()


def reference_in(search: str) -> int | None:
    """The number when a search is a reference number (seven or eight digits), else None."""
    digits = typed_digits(search)
    return number_for(digits) if digits.isdigit() and len(digits) in (7, 8) else None


def _placed(place: str, zips: frozenset[str]):
    """The comment's call's caller entered a ZIP code inside `zips`, outside them, or none."""
    entered = Call.entered_zip
    where = {
        "inside": entered.in_(sorted(zips)),
        "outside": and_(entered.is_not(None), entered.not_in(sorted(zips))),
        "unknown": entered.is_(None),
    }[place]
    return exists().where(Call.call_sid == Recording.call_sid, where)


def comment_conditions(f: InboxFilter, *, search: str = "either") -> list:
    """The WHERE conditions for a filter; shared by the inbox and the export. How a text
    search runs: "probe" looks up each candidate's transcripts in turn (newest first, so a
    common word fills a page at once); "scan" finds every matching transcript first (a rare
    word); "either" leaves it to the database, which cannot guess how common a word is."""
    conditions = [
        ~_state_where(CommentState.deleted_at.is_not(None)),
        or_(Recording.status.is_(None), Recording.status.not_in(NOT_A_COMMENT)),
        or_(Recording.duration.is_(None), Recording.duration > 0),
    ]
    test_call = exists().where(Call.call_sid == Recording.call_sid, Call.is_test.is_(True))
    if f.tests == "hide":
        conditions.append(~test_call)
    elif f.tests == "only":
        conditions.append(test_call)
    if f.topic_id is not None:
        conditions.append(Recording.topic_id == f.topic_id)
    if f.topic_ids:
        conditions.append(Recording.topic_id.in_(f.topic_ids))
    if f.stance:
        conditions.append(Recording.stance.is_(None) if f.stance == "none" else Recording.stance == f.stance)
    if f.language:
        conditions.append(Recording.language == f.language)
    if f.place:
        conditions.append(_placed(f.place, f.district_zips))
    if f.since is not None:
        conditions.append(Recording.created_at >= f.since)
    if f.until is not None:
        conditions.append(Recording.created_at < f.until)
    if f.reviewed is not None:
        reviewed = _state_where(CommentState.reviewed_at.is_not(None))
        conditions.append(reviewed if f.reviewed else ~reviewed)
    text_removed = _state_where(CommentState.transcript_removed_at.is_not(None))
    if f.has_transcript is not None:
        has = and_(_has_text(), ~text_removed)
        conditions.append(has if f.has_transcript else ~has)
    if f.no_calls:
        conditions.append(false())
    if f.calls is not None:
        conditions.append(Recording.call_sid.in_(f.calls))
    if f.callback is not None:
        asked = exists().where(CallbackRequest.call_sid == Recording.call_sid)
        conditions.append(asked if f.callback else ~asked)
    words = f.search.strip()
    if words:
        number = reference_in(words)
        if number is not None:
            conditions.append(numbered(number))
        else:
            conditions.append(and_(_matching_text(words, search), ~text_removed))
    return conditions


def find_comments(
    session,
    f: InboxFilter,
    *,
    before: str | None = None,
    after: str | None = None,
    limit: int = 50,
    search_window: int | None = None,
) -> tuple[list[CommentRow], bool]:
    """One page of comments, newest first, and whether there are more beyond it.

    Keyset pagination on (created_at, id): `before` (a row's `cursor`) gives the page older
    than that row, `after` the page newer than it (then "more" means newer ones exist). Each
    page costs the same however deep it is."""
    newer_than, older_than = decode_cursor(after), decode_cursor(before)
    recordings = None
    if f.search.strip() and reference_in(f.search) is None:
        window = SEARCH_WINDOW if search_window is None else search_window
        recordings = _page_of_recent_matches(session, f, newer_than, older_than, limit, window)
    if recordings is None:
        recordings = _page(session, comment_conditions(f, search="scan"), newer_than, older_than, limit)
    more = len(recordings) > limit
    recordings = recordings[:limit]
    if newer_than is not None:
        recordings.reverse()
    return comment_rows(session, recordings), more


SEARCH_WINDOW = 2000  # recordings a text search probes one by one before it searches them all


def _in_page_order(query, newer_than, older_than):
    """The query limited to the rows past the cursor, in the page's order: newer than `after`
    oldest first, or older than `before` (or from the newest) newest first."""
    key = tuple_(Recording.created_at, Recording.id)
    if newer_than is not None:
        return query.where(key > tuple_(*newer_than)).order_by(Recording.created_at, Recording.id)
    if older_than is not None:
        query = query.where(key < tuple_(*older_than))
    return query.order_by(Recording.created_at.desc(), Recording.id.desc())


def _page(session, conditions: list, newer_than, older_than, limit: int) -> list[Recording]:
    """Up to `limit` + 1 recordings meeting the conditions, in the page's order."""
    query = _in_page_order(select(Recording).where(*conditions), newer_than, older_than)
    return list(session.scalars(query.limit(limit + 1)))


def _page_of_recent_matches(
    session, f: InboxFilter, newer_than, older_than, limit: int, window: int
) -> list[Recording] | None:
    """A text search's page found among the next `window` recordings in the page's
    order, each probed in turn: a common word fills the page after a few hundred. None when
    the window holds less than a full page of matches and more recordings lie beyond it: the
    whole search must then run (a rare word)."""
    edge = _in_page_order(select(Recording.created_at, Recording.id), newer_than, older_than)
    last = session.execute(edge.offset(window).limit(1)).first()
    conditions = comment_conditions(f, search="probe")
    if last is not None:
        key = tuple_(Recording.created_at, Recording.id)
        conditions.append(key < tuple_(*last) if newer_than is not None else key > tuple_(*last))
    found = _page(session, conditions, newer_than, older_than, limit)
    return found if len(found) > limit or last is None else None


def iter_comments(session, f: InboxFilter, batch: int = 500):
    """Every comment the filter matches, oldest first, in batches (for exports)."""
    key = tuple_(Recording.created_at, Recording.id)
    last = None
    while True:
        query = select(Recording).where(*comment_conditions(f))
        if last is not None:
            query = query.where(key > tuple_(*last))
        recordings = list(session.scalars(query.order_by(Recording.created_at, Recording.id).limit(batch)))
        if not recordings:
            return
        yield from comment_rows(session, recordings)
        last = (recordings[-1].created_at, recordings[-1].id)


def comment_rows(session, recordings: list[Recording]) -> list[CommentRow]:
    """The page's recordings with their topic, caller, staff state and transcripts, in four
    small queries (never a join over the whole table)."""
    if not recordings:
        return []
    slugs = dict(session.execute(select(Topic.id, Topic.slug)).all())
    callers = {
        sid: (number, digest, entered, bool(is_test))
        for sid, number, digest, entered, is_test in session.execute(
            select(Call.call_sid, Call.from_number, Call.caller_hash, Call.entered_zip, Call.is_test).where(
                Call.call_sid.in_({r.call_sid for r in recordings})
            )
        )
    }
    states = {
        s.recording_id: s
        for s in session.scalars(select(CommentState).where(CommentState.recording_id.in_([r.id for r in recordings])))
    }
    rows = []
    for r in recordings:
        number, digest, entered, is_test = callers.get(r.call_sid, (None, None, None, False))
        rows.append(
            CommentRow(r, slugs.get(r.topic_id), number, digest, states.get(r.id), entered_zip=entered, is_test=is_test)
        )
    attach_transcripts(session, rows)
    return rows


def attach_transcripts(session, comments: list[CommentRow]) -> None:
    """Give each comment its best transcript (a staff correction first) and the original."""
    sids = [c.recording.recording_sid for c in comments]
    if not sids:
        return
    by_sid: dict[str, list[Transcription]] = {}
    reasons: dict[str, str] = {}
    for t in session.scalars(select(Transcription).where(Transcription.recording_sid.in_(sids))):
        if t.status == "completed" and t.text:
            by_sid.setdefault(t.recording_sid, []).append(t)
        elif t.reason:
            reasons[t.recording_sid] = t.reason
    for c in comments:
        c.no_text_reason = reasons.get(c.recording.recording_sid)
        found = sorted(by_sid.get(c.recording.recording_sid, []), key=lambda t: TRANSCRIPT_RANK.get(t.source, 9))
        c.transcript = found[0] if found else None
        originals = [t for t in found if t.source != "staff"]
        c.original = originals[0] if originals else None


def get_comment(session, reference: str) -> CommentRow | None:
    """A comment by its reference number (deleted ones included), or None."""
    recording = recording_for_reference(session, reference)
    return comment_rows(session, [recording])[0] if recording is not None else None


def state_for(session, recording_id: int) -> CommentState:
    """The staff state row of a recording, made empty if it has none yet."""
    session.execute(
        insert_for(session, CommentState)
        .values(recording_id=recording_id, tags=[], updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["recording_id"])
    )
    return session.get(CommentState, recording_id, populate_existing=True)


def mark_reviewed(session, recording_ids: list[int], user_id: int, reviewed: bool = True) -> list[int]:
    """Mark comments reviewed (or not) by a user; return the ids whose state changed."""
    changed = []
    now = utcnow()
    for recording_id in recording_ids:
        state = state_for(session, recording_id)
        if bool(state.reviewed_at) == reviewed:
            continue
        state.reviewed_at, state.reviewed_by = (now, user_id) if reviewed else (None, None)
        changed.append(recording_id)
    return changed


def clean_tags(text: str) -> list[str]:
    """Tags as staff type them ("noise, follow up") as a short, sorted, lower-case list."""
    tags = {" ".join(part.split()).lower()[:40] for part in text.replace(";", ",").split(",")}
    return sorted(t for t in tags if t)[:MAX_TAGS]


def set_note(session, recording_id: int, note: str, tags: list[str]) -> dict:
    """Keep a note and tags on a comment; return what they were before."""
    state = state_for(session, recording_id)
    before = {"note": state.note, "tags": list(state.tags or [])}
    state.note = note.strip()[:MAX_NOTE] or None
    state.tags = tags
    return before


def correct_transcript(session, recording_sid: str, text: str, language: str | None) -> str | None:
    """Keep a staff correction of a transcript beside the original; return the previous
    correction's text, if there was one."""
    now = utcnow()
    previous = session.scalar(
        select(Transcription.text).where(Transcription.recording_sid == recording_sid, Transcription.source == "staff")
    )
    stmt = insert_for(session, Transcription).values(
        recording_sid=recording_sid,
        source="staff",
        status="completed",
        text=text,
        language=language,
        created_at=now,
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["recording_sid", "source"],
        set_={"text": stmt.excluded.text, "status": "completed", "updated_at": now},
    )
    session.execute(stmt)
    return previous


def remove_transcripts(session, recording: Recording, reason: str) -> None:
    """Empty every transcript of a comment (originals and corrections)."""
    session.execute(
        update(Transcription)
        .where(Transcription.recording_sid == recording.recording_sid)
        .values(text=None, status="redacted", updated_at=utcnow())
    )
    state = state_for(session, recording.id)
    state.transcript_removed_at = state.transcript_removed_at or utcnow()
    state.removal_reason = reason


def remove_audio(session, recording: Recording, reason: str) -> str | None:
    """Forget where the comment's audio is; return the storage key, which the caller deletes."""
    key = recording.storage_key
    recording.storage_key = recording.content_type = recording.checksum = None
    recording.size_bytes = None
    recording.media_url = None
    state = state_for(session, recording.id)
    state.audio_removed_at = state.audio_removed_at or utcnow()
    state.removal_reason = reason
    return key


def delete_comment(session, recording: Recording, reason: str) -> str | None:
    """Take the whole comment out of the console: audio, transcripts, note. The recording's
    row stays (with its topic and duration), so the call and the comment are still counted."""
    key = remove_audio(session, recording, reason)
    remove_transcripts(session, recording, reason)
    state = state_for(session, recording.id)
    state.note, state.tags = None, []
    state.deleted_at = utcnow()
    return key


def note_stored_audio(session, recording_id: int, *, key: str, content_type: str, size: int, checksum: str) -> bool:
    """Record that the audio is now in our storage, unless someone already did; True if this did."""
    result = session.execute(
        update(Recording)
        .where(Recording.id == recording_id, Recording.storage_key.is_(None))
        .values(storage_key=key, content_type=content_type, size_bytes=size, checksum=checksum, stored_at=utcnow())
    )
    return result.rowcount == 1


def storage_key_for(recording: Recording, extension: str = "wav") -> str:
    """Where a recording's audio is kept: recordings/YYYY/MM/RE….wav."""
    return f"recordings/{recording.created_at:%Y/%m}/{recording.recording_sid}.{extension}"
