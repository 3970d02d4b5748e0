"""Getting every comment a transcript, or a recorded reason why there is none.

Twilio transcribes American English recordings of 2 to 120 seconds, when it does at all. For
those the line waits TWILIO_TRANSCRIPT_GRACE_SECONDS after the recording for Twilio's text;
every other comment (another language, longer, shorter, Twilio failed or never answered) goes
to the offline transcriber that TRANSCRIBERS names for its language.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from facts.writer import note_transcription
from models import Call, Recording, Transcription, db, utcnow
from models.jobs import Claimed, job_for
from storage import storage_for

from .runner import GiveUp, RetryLater, job, queue

TWILIO_LANGUAGES = ("en-US",)
TWILIO_SECONDS = (2, 120)


def has_transcript(session, sid: str) -> bool:
    found = select(Transcription.id).where(Transcription.recording_sid == sid, Transcription.status == "completed")
    return session.execute(found.limit(1)).first() is not None


def twilio_may_transcribe(session, row: Recording) -> bool:
    """Whether Twilio may still send a transcript for this comment."""
    low, high = TWILIO_SECONDS
    if row.language not in TWILIO_LANGUAGES or not row.duration or not low <= row.duration <= high:
        return False
    failed = select(Transcription.id).where(
        Transcription.recording_sid == row.recording_sid,
        Transcription.source == "twilio",
        Transcription.status == "failed",
    )
    return session.execute(failed.limit(1)).first() is None


def plan_transcription(session, config, row: Recording, *, now_please: bool = False) -> None:
    """Queue the offline transcription of a stored comment that has no transcript: at once, or
    after the grace period when Twilio may still send one."""
    if has_transcript(session, row.recording_sid):
        return
    when = utcnow()
    if not now_please and twilio_may_transcribe(session, row):
        when = max(when, row.created_at + timedelta(seconds=config["TWILIO_TRANSCRIPT_GRACE_SECONDS"]))
    queue(session, config, "transcribe", row.recording_sid, run_after=when, again=now_please)


def transcriber_for(config, language: str | None) -> str:
    """The transcriber TRANSCRIBERS names for a language (`*` for the others)."""
    table = config["TRANSCRIBERS"]
    if language and language in table:
        return table[language]
    if language and language.split("-")[0] in table:
        return table[language.split("-")[0]]
    return table.get("*", "none")


def note_no_transcript(session, row: Recording, language: str | None, reason: str, engine: str | None = None) -> None:
    """Record why this comment has no offline transcript, where the transcript would be."""
    note_transcription(
        session,
        row.recording_sid,
        row.call_sid,
        at=utcnow(),
        source="whisper",
        transcription_sid=None,
        status="failed",
        text=None,
        language=language,
        reason=reason,
        engine=engine,
    )


def note_untranscribed(app: Flask, claimed: Claimed, reason: str) -> None:
    """The transcription's last try failed: keep the reason, so the comment is not left pending."""
    session = db.session
    row = session.scalar(select(Recording).where(Recording.recording_sid == claimed.key))
    if row is not None and not has_transcript(session, claimed.key):
        note_no_transcript(session, row, row.language, f"the transcriber failed: {reason}")


@job("transcribe", give_up=note_untranscribed)
def transcribe_recording(app: Flask, claimed: Claimed) -> None:
    """Transcribe a stored comment offline, unless it already has a transcript (option `force`
    re-transcribes; option `language` overrides the comment's)."""
    cfg, session = app.config, db.session
    row = session.scalar(select(Recording).where(Recording.recording_sid == claimed.key))
    if row is None:
        raise GiveUp(f"no recording {claimed.key}")
    if not claimed.options.get("force") and has_transcript(session, row.recording_sid):
        return
    language = (
        claimed.options.get("language")
        or row.language
        or session.scalar(select(Call.language).where(Call.call_sid == row.call_sid))
    )
    if row.purged_at is not None:
        return note_no_transcript(session, row, language, "the audio was deleted under the retention rule")
    if row.stored_at is None or not row.storage_key:
        download = job_for(session, "download", row.recording_sid)
        if download is not None and download.state == "failed":
            return note_no_transcript(session, row, language, f"the audio could not be fetched: {download.last_error}")
        raise RetryLater("the audio is not stored yet")
    name = transcriber_for(cfg, language)
    if name == "none":
        return note_no_transcript(session, row, language, f"no transcriber is set for {language or 'unknown language'}")
    from .whisper import TranscriberUnavailable, transcriber  # only the worker loads the model

    try:
        model = transcriber(cfg)
    except TranscriberUnavailable as exc:
        raise RetryLater(str(exc)) from None
    with (
        storage_for(cfg).open(row.storage_key) as stored,
        tempfile.NamedTemporaryFile(suffix=os.path.splitext(row.storage_key)[1]) as audio,
    ):
        audio.write(stored.read())
        audio.flush()
        heard = model.transcribe(audio.name, language)
    if heard.text:
        note_transcription(
            session,
            row.recording_sid,
            row.call_sid,
            at=utcnow(),
            source="whisper",
            transcription_sid=None,
            status="completed",
            text=heard.text,
            language=language or heard.language,
            engine=model.engine,
        )
    else:
        note_no_transcript(
            session, row, language or heard.language, "no speech was heard in the recording", engine=model.engine
        )
    session.commit()
