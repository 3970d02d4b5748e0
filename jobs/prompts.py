"""Prompts recorded by phone: the worker fetches each take from Twilio as it fetches callers'
recordings (storage/twilio_media.py, with the account's credentials, only under
TWILIO_API_BASE), checks and converts it as an upload is (storage/prompt_audio.py), keeps it
in the line's storage, and marks the take ready for staff to accept or discard."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from models import db, utcnow
from models.jobs import Claimed
from models.prompts import PromptTake, keep_audio
from storage import storage_for
from storage.prompt_audio import CONTENT_TYPE, PromptAudioError, prepare_prompt, store_prompt_file
from storage.twilio_media import MediaError, fetch_media, media_url

from .runner import GiveUp, RetryLater, job


def take_for(session, sid: str) -> PromptTake:
    take = session.scalar(select(PromptTake).where(PromptTake.recording_sid == sid))
    if take is None:
        raise GiveUp(f"no prompt take {sid}")
    return take


def note_take_failed(app: Flask, claimed: Claimed, reason: str) -> None:
    """The fetch's last try failed: say so on the take, so the console does not wait for it."""
    take = take_for(db.session, claimed.key)
    if take.state == "waiting":
        take.state, take.error = "failed", f"it could not be fetched from Twilio: {reason}"


@job("fetch_prompt", give_up=note_take_failed)
def fetch_prompt(app: Flask, claimed: Claimed) -> None:
    """Fetch a take recorded by phone, check and convert it, and mark it ready (or failed,
    saying why, when it cannot be a prompt: silent, clipped, too short)."""
    cfg, session = app.config, db.session
    take = take_for(session, claimed.key)
    if take.state != "waiting":
        return
    if not take.media_url:
        raise RetryLater("Twilio has not yet said where the recording is")
    try:
        media_url(cfg, take.media_url)
    except MediaError as exc:
        raise GiveUp(str(exc)) from None
    try:
        media = fetch_media(cfg, take.media_url, ".wav", timeout=cfg["MEDIA_TIMEOUT_SECONDS"])
    except MediaError as exc:
        raise RetryLater("not ready yet (404)" if exc.status == 404 else str(exc)) from None
    try:
        prepared = prepare_prompt(
            media.data,
            min_seconds=cfg["PROMPT_MIN_SECONDS"],
            max_seconds=cfg["PROMPT_MAX_SECONDS"],
            max_bytes=cfg["RECORDING_MAX_BYTES"],
        )
    except PromptAudioError as exc:
        take.state, take.error, take.updated_at = "failed", f"{exc}; record it again", utcnow()
        session.commit()
        return
    store_prompt_file(storage_for(cfg), prepared)
    keep_audio(
        session,
        cfg["SECRET_KEY"],
        prepared.digest,
        prepared.storage_key,
        CONTENT_TYPE,
        prepared.seconds,
        len(prepared.data),
    )
    take.digest, take.state, take.error, take.updated_at = prepared.digest, "ready", None, utcnow()
    session.commit()
