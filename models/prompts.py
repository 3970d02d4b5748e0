"""Recorded prompts: a line of wording, in one language, played from an audio file (`<Play>`)
instead of said by a voice (`<Say>`).

A prompt is attached to one wording line, (language, key): a key of `WORDING_KEYS`, or
`topic:<slug>` for a topic's line of the topic menu. Which audio each line plays is part of the
script document (its `prompts`: language -> key -> SHA-256), so a recording goes to the draft
like any other change and is heard by callers once the draft is published, and publishing an
earlier version plays that version's recordings again (models/drafts.py). `prompts` keeps
each recording made for a line (who made it, how, and the text it was made for). Lines whose text has a placeholder
({topic}, {digit}, {reference}) change with each call and cannot be one recording: they are
always said (`recordable_keys`).

Audio is content-addressed: `prompt_audio` holds each distinct file once, by its SHA-256, kept
in the line's storage under `prompts/<sha256>.wav`, and known to Twilio only by its public
name, an HMAC of the digest under the line's secret key (`audio_name`). The public route
(ivr/prompt_audio.py) resolves names through this table alone, so no name leads anywhere else
(a caller's recording, another file in storage), and without the key no name can be made.

Staff can record a prompt by phone: an admin makes a one-time code (`prompt_codes`, kept only
as an HMAC; short-lived; used once), bound to one wording line; the call that enters it records
a take (`prompt_takes`), which the worker fetches as it fetches callers' recordings and which
staff accept (it becomes the prompt) or discard. Wrong codes are counted line-wide
(`prompt_code_failures`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import datetime, timedelta

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow
from .line import TOPIC_LINE, WORDING_KEYS, LineScript

CODE_DIGITS = 8
TAKE_STATES = ("waiting", "ready", "failed", "accepted", "discarded")


class PromptAudio(db.Model):
    """One audio file, as Twilio plays it (8 kHz mono 16-bit PCM WAV), kept once by content."""

    __tablename__ = "prompt_audio"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the file
    name: Mapped[str] = mapped_column(String(64), unique=True)  # its public name (`audio_name`)
    storage_key: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(32))
    seconds: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(db.Model):
    """A recording made for a wording line: one per (language, key, audio). Whether a script
    plays it is the script document's `prompts`."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("language", "key", "digest", name="uq_prompts_language_key_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    language: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(80))
    digest: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # the line's text when it was recorded
    source: Mapped[str] = mapped_column(String(16))  # upload | phone
    created_by: Mapped[int | None] = mapped_column(Integer)  # the staff member's id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptCode(db.Model):
    """A one-time code to record one wording line by phone; only its HMAC is kept."""

    __tablename__ = "prompt_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(80))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    call_sid: Mapped[str | None] = mapped_column(String(64))


class PromptTake(db.Model):
    """A prompt recorded by phone, waiting to be fetched, then to be accepted or discarded."""

    __tablename__ = "prompt_takes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    code_id: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(80))
    media_url: Mapped[str | None] = mapped_column(String(512))
    duration: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    digest: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PromptCodeFailure(db.Model):
    """A wrong code entered on the line: counted line-wide to stop guessing."""

    __tablename__ = "prompt_code_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)


# --- which lines can be recorded --------------------------------------------------------------


def has_placeholder(text: str) -> bool:
    try:
        return any(name is not None for _, name, _, _ in string.Formatter().parse(text))
    except ValueError:
        return True


def recordable_lines(script: LineScript, language: str) -> list[tuple[str, str]]:
    """(key, text) of every line a prompt can be recorded for in `language`, in the order a
    caller meets them: the wording lines with no placeholder, then each topic's menu line."""
    lines = [(key, script.say(language, key)) for key in WORDING_KEYS]
    lines = [(key, text) for key, text in lines if not has_placeholder(text)]
    lines += [(TOPIC_LINE + topic.slug, script.topic_line(language, topic)) for topic in script.menu]
    return lines


def line_text(script: LineScript, language: str, key: str) -> str | None:
    """The text of a recordable line, or None when (language, key) is not one."""
    if language not in {lang.code for lang in script.languages}:
        return None
    return dict(recordable_lines(script, language)).get(key)


# --- the audio, and the prompts that play it ----------------------------------------------------


def audio_name(secret: str, digest: str) -> str:
    """The public name of the audio with this SHA-256: unguessable without the line's key."""
    return hmac.new(secret.encode(), b"prompt-audio:" + digest.encode(), hashlib.sha256).hexdigest()[:40]


def prompt_names(session, prompts: dict | None) -> dict[tuple[str, str], str]:
    """(language, key) -> the public name of the audio each line of a script's `prompts`
    ({language: {key: SHA-256}}) plays: one query, none for a script without prompts. A
    digest with no audio kept is left out (the line is said)."""
    wanted = {(language, key): digest for language, lines in (prompts or {}).items() for key, digest in lines.items()}
    names = {a.digest: a.name for a in audio_by_digest(session, wanted.values()).values()}
    return {line: names[digest] for line, digest in wanted.items() if digest in names}


def audio_for_name(session, name: str) -> PromptAudio | None:
    if len(name) != 40 or not all(c in "0123456789abcdef" for c in name):
        return None
    return session.scalar(select(PromptAudio).where(PromptAudio.name == name))


def keep_audio(
    session, secret: str, digest: str, storage_key: str, content_type: str, seconds: float, size: int
) -> PromptAudio:
    """The `prompt_audio` row for a file already put in storage under `storage_key`."""
    row = session.scalar(select(PromptAudio).where(PromptAudio.digest == digest))
    if row is None:
        row = PromptAudio(
            digest=digest,
            name=audio_name(secret, digest),
            storage_key=storage_key,
            content_type=content_type,
            seconds=seconds,
            size_bytes=size,
        )
        session.add(row)
        session.flush()
    return row


def note_recording(
    session, language: str, key: str, digest: str, text: str, source: str, user_id: int | None
) -> Prompt:
    """Keep who made the recording `digest` for (language, key), how (`upload` or `phone`) and
    for which text; the same file for the same line again is noted as made now."""
    row = session.scalar(select(Prompt).where(Prompt.language == language, Prompt.key == key, Prompt.digest == digest))
    if row is None:
        row = Prompt(language=language, key=key, digest=digest)
        session.add(row)
    row.text, row.source, row.created_by, row.created_at = text, source, user_id, utcnow()
    session.flush()
    return row


def recordings_of(session, prompts: dict | None) -> dict[tuple[str, str], Prompt]:
    """(language, key) -> the record of the recording each line of a script's `prompts`
    plays (a line whose recording has no record is left out)."""
    wanted = {(language, key, digest) for language, lines in (prompts or {}).items() for key, digest in lines.items()}
    if not wanted:
        return {}
    rows = session.scalars(select(Prompt).where(Prompt.digest.in_({digest for _, _, digest in wanted})))
    return {(p.language, p.key): p for p in rows if (p.language, p.key, p.digest) in wanted}


def audio_by_digest(session, digests) -> dict[str, PromptAudio]:
    digests = list(set(digests))
    if not digests:
        return {}
    return {a.digest: a for a in session.scalars(select(PromptAudio).where(PromptAudio.digest.in_(digests)))}


# --- one-time codes to record by phone -----------------------------------------------------------


def code_hash(secret: str, code: str) -> str:
    return hmac.new(secret.encode(), b"prompt-code:" + code.encode(), hashlib.sha256).hexdigest()


def new_code(
    session, secret: str, language: str, key: str, user_id: int | None, minutes: float
) -> tuple[str, PromptCode]:
    """A fresh code of CODE_DIGITS digits for recording (language, key) by phone; only its HMAC
    is stored. Returns the code (shown once) and its row."""
    while True:
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        hashed = code_hash(secret, code)
        if session.scalar(select(PromptCode.id).where(PromptCode.code_hash == hashed)) is None:
            break
    now = utcnow()
    row = PromptCode(
        code_hash=hashed,
        language=language,
        key=key,
        created_by=user_id,
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    session.add(row)
    session.flush()
    return code, row


def wrong_codes_since(session, since: datetime) -> int:
    return session.scalar(select(func.count()).select_from(PromptCodeFailure).where(PromptCodeFailure.at >= since))


def redeem_code(
    session, secret: str, code: str, call_sid: str, now: datetime, *, refuse: bool = False
) -> PromptCode | None:
    """Use a code for this call: the code's row when it is valid (unused, unexpired), which
    it no longer is afterwards; None otherwise, or with `refuse` (the line takes no code just
    now), and the attempt is counted as wrong. One statement marks it used, so two calls
    entering the same code cannot both have it."""
    hashed = code_hash(secret, code)
    used = 0
    if not refuse:
        used = session.execute(
            update(PromptCode)
            .where(PromptCode.code_hash == hashed, PromptCode.used_at.is_(None), PromptCode.expires_at > now)
            .values(used_at=now, call_sid=call_sid)
        ).rowcount
    if used != 1:
        session.execute(delete(PromptCodeFailure).where(PromptCodeFailure.at < now - timedelta(days=1)))
        session.add(PromptCodeFailure(call_sid=call_sid, at=now))
        return None
    return session.scalar(select(PromptCode).where(PromptCode.code_hash == hashed))


def code_for_call(session, code_id: int, call_sid: str) -> PromptCode | None:
    """The code this call redeemed, or None (another call's, or not redeemed)."""
    row = session.get(PromptCode, code_id)
    return row if row is not None and row.call_sid == call_sid else None


# --- takes recorded by phone ---------------------------------------------------------------------


def note_take(
    session, code: PromptCode, recording_sid: str, call_sid: str, media_url: str | None, duration: int | None
) -> PromptTake:
    """The take a recording callback or action reports: made once per RecordingSid."""
    row = session.scalar(select(PromptTake).where(PromptTake.recording_sid == recording_sid))
    if row is None:
        row = PromptTake(
            recording_sid=recording_sid,
            call_sid=call_sid,
            code_id=code.id,
            language=code.language,
            key=code.key,
            state="waiting",
        )
        session.add(row)
    row.media_url = media_url or row.media_url
    row.duration = duration if duration is not None else row.duration
    session.flush()
    return row


def takes_to_fetch(session, quiet_since: datetime) -> list[str]:
    """Takes whose recording status callback never came (their `<Record>` action gave the
    media's URL before `quiet_since`): the worker's sweep fetches them all the same."""
    query = select(PromptTake.recording_sid).where(
        PromptTake.state == "waiting", PromptTake.media_url.is_not(None), PromptTake.created_at < quiet_since
    )
    return list(session.scalars(query.order_by(PromptTake.id)))


def takes_to_review(session) -> list[PromptTake]:
    """Takes recorded by phone that staff have not accepted or discarded, newest first."""
    query = select(PromptTake).where(PromptTake.state.in_(("waiting", "ready", "failed")))
    return list(session.scalars(query.order_by(PromptTake.id.desc())))
