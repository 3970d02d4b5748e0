"""Jobs on a recording's audio: take our own copy from Twilio, and (by setting) delete
Twilio's once ours is stored and verified."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select, update

from models import Recording, db, utcnow
from models.audit import audit
from models.holds import holds_covering, refusal
from models.jobs import Claimed
from storage import checksum, storage_for
from storage.twilio_media import MediaError, delete_media, fetch_media, media_url

from .audio import BadMedia, check_media
from .runner import GiveUp, RetryLater, job, queue
from .transcripts import has_transcript, note_no_transcript, plan_transcription


def recording(session, sid: str) -> Recording:
    row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
    if row is None:
        raise GiveUp(f"no recording {sid}")
    return row


def storage_key(row: Recording, fmt: str) -> str:
    """Where a recording's audio is kept: fixed by its sid, so a second run overwrites, never adds."""
    return f"recordings/{row.created_at:%Y/%m}/{row.recording_sid}.{fmt}"


def read_back(store, key: str) -> bytes:
    with store.open(key) as stored:
        return stored.read()


def note_no_audio(app: Flask, claimed: Claimed, reason: str) -> None:
    """The download's last try failed: say so where the transcript would be."""
    session = db.session
    if has_transcript(session, claimed.key):
        return
    row = recording(session, claimed.key)
    note_no_transcript(session, row, row.language, f"the audio could not be fetched from Twilio: {reason}")


@job("download", give_up=note_no_audio)
def download_recording(app: Flask, claimed: Claimed) -> None:
    """Fetch a completed recording from Twilio, check it, store it with its SHA-256, read it back
    to verify, then plan its transcription (and the deletion of Twilio's copy, by setting).
    Option `refetch` fetches again a copy that is stored but failed its check."""
    cfg, session = app.config, db.session
    row = recording(session, claimed.key)
    if row.purged_at is not None:
        return  # deleted under the retention rule: nothing to fetch
    store = storage_for(cfg)
    refetch = claimed.options.get("refetch")
    if refetch or row.stored_at is None or not row.storage_key or not store.exists(row.storage_key):
        if not row.media_url:
            raise RetryLater("Twilio has not yet said where the recording is")
        try:
            media_url(cfg, row.media_url)
        except MediaError as exc:
            raise GiveUp(str(exc)) from None
        fmt = cfg["RECORDING_FORMAT"]
        try:
            media = fetch_media(cfg, row.media_url, "." + fmt, timeout=cfg["MEDIA_TIMEOUT_SECONDS"])
        except MediaError as exc:
            raise RetryLater("not ready yet (404)" if exc.status == 404 else str(exc)) from None
        try:
            audio = check_media(
                media.content_type, media.data, fmt, max_bytes=cfg["RECORDING_MAX_BYTES"], expected_seconds=row.duration
            )
        except BadMedia as exc:
            raise RetryLater(str(exc)) from None
        key, digest = storage_key(row, fmt), checksum(media.data)
        store.put(key, media.data, audio.content_type)
        if checksum(read_back(store, key)) != digest:
            raise RetryLater("the stored copy does not match what Twilio sent")
        session.execute(
            update(Recording)
            .where(Recording.recording_sid == row.recording_sid)
            .values(
                storage_key=key,
                content_type=audio.content_type,
                size_bytes=len(media.data),
                checksum=digest,
                stored_at=utcnow(),
            )
        )
    plan_transcription(session, cfg, row)
    if cfg["DELETE_FROM_TWILIO"]:
        queue(session, cfg, "forget_twilio", row.recording_sid)
    session.commit()


@job("forget_twilio")
def forget_twilio_copy(app: Flask, claimed: Claimed) -> None:
    """Delete Twilio's copy of a recording, only once our copy is stored and its checksum
    verified (or the recording was purged under the retention rule, and no legal hold covers
    it: Twilio's copy is then the last one)."""
    cfg, session = app.config, db.session
    row = recording(session, claimed.key)
    if row.purged_at is not None:
        holds = holds_covering(session, row)
        if holds:  # Twilio's copy is the only one left
            raise GiveUp(refusal(holds, "Twilio's copy is the only one and cannot be deleted"))
    else:
        if not row.storage_key or not row.checksum:
            raise RetryLater("our copy is not stored yet")
        if checksum(read_back(storage_for(cfg), row.storage_key)) != row.checksum:
            raise GiveUp("our copy does not match its checksum: keeping Twilio's")
    if not row.media_url:
        raise GiveUp("no Twilio URL for the recording")
    try:
        deleted = delete_media(cfg, row.media_url, timeout=cfg["MEDIA_TIMEOUT_SECONDS"])
    except MediaError as exc:
        raise RetryLater(str(exc)) from None
    audit(
        session,
        "system:worker",
        "recording.delete_from_twilio",
        row.recording_sid,
        {"deleted": deleted, "checksum": row.checksum},
    )
    session.commit()
