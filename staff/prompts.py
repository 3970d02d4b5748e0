"""Admin pages for recorded prompts: every line a prompt can be recorded for, per language;
uploading a file for one (checked and converted, storage/prompt_audio.py), going back to the
voice, a one-time code to record one by phone, and the takes recorded so, to accept or discard.

A prompt uploaded, accepted or removed changes the draft script (models/drafts.py), as an
edit to the wording does: "Try the line" on the draft plays it at once, callers hear it once
an admin publishes the draft, and publishing an earlier version brings back that version's
prompts. Each upload, acceptance and removal is in the audit log; the page shows the draft's
prompts and says which are not live yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from models import db, utcnow
from models.drafts import live_document
from models.line import LineScript, line_script
from models.prompts import (
    Prompt,
    PromptAudio,
    PromptTake,
    audio_by_digest,
    keep_audio,
    line_text,
    new_code,
    note_recording,
    recordable_lines,
    recordings_of,
    takes_to_review,
)
from storage import storage_for
from storage.prompt_audio import CONTENT_TYPE, PromptAudioError, PromptFile, prepare_prompt, store_prompt_file

from .admin import draft, draft_changed
from .auth import admin_required, record
from .console import console
from .params import ROW_ID_IN_PATH, shortened


@dataclass(frozen=True)
class LineState:
    """One line of wording in one language, as the prompts page shows it: the recording the
    draft plays (None: said by the voice), and whether callers hear the same now."""

    key: str
    text: str
    prompt: Prompt | None
    audio: PromptAudio | None
    digest: str | None  # the draft's recording
    live_digest: str | None  # the live script's

    @property
    def stale(self) -> bool:
        """The wording changed after the prompt was recorded: it may say something else."""
        return self.prompt is not None and self.prompt.text != self.text

    @property
    def unpublished(self) -> bool:
        """The draft plays something else here than callers hear now."""
        return self.digest != self.live_digest


def draft_script() -> LineScript:
    """The script staff are editing (the live one while there is no draft)."""
    return line_script(current_app).get(db.session, draft=True)


def line_states(script: LineScript, prompts: dict, live_prompts: dict) -> dict[str, list[LineState]]:
    """For each language of `script`, its recordable lines with the recording each plays in
    `prompts` (the draft's) and in `live_prompts` (the live script's)."""
    records = recordings_of(db.session, prompts)
    audio = audio_by_digest(db.session, [d for lines in prompts.values() for d in lines.values()])
    states = {}
    for lang in script.languages:
        drafted, live = prompts.get(lang.code, {}), live_prompts.get(lang.code, {})
        states[lang.code] = [
            LineState(
                key, text, records.get((lang.code, key)), audio.get(drafted.get(key)), drafted.get(key), live.get(key)
            )
            for key, text in recordable_lines(script, lang.code)
        ]
    return states


def missing_recordings(script: LineScript) -> dict[str, int]:
    """For each language marked `needs_recordings`, how many of its recordable lines are
    still said by the stand-in voice (0 when all are recorded)."""
    recorded = {key for key, _ in script.recorded}
    return {
        lang.code: sum((lang.code, key) not in recorded for key, _ in recordable_lines(script, lang.code))
        for lang in script.languages
        if lang.needs_recordings
    }


def said_lines(script: LineScript, language: str) -> list[str]:
    """The wording keys always said in `language`: their text has a placeholder."""
    recordable = {key for key, _ in recordable_lines(script, language)}
    return [key for key in script.wording.get(language, {}) if key not in recordable]


def prompts_page(status: int = 200, code: dict | None = None):
    script = draft_script()
    prompts = draft()["prompts"]
    return render_template(
        "prompts.html",
        script=script,
        states=line_states(script, prompts, live_document(db.session)["prompts"]),
        missing=missing_recordings(script),
        said={lang.code: said_lines(script, lang.code) for lang in script.languages},
        takes=takes_to_review(db.session),
        code=code,
    ), status


def recordable_or_404(language: str, key: str) -> str:
    """The draft's text of a line a prompt can be recorded for; 404 for any other."""
    text = line_text(draft_script(), language, key)
    if text is None:
        abort(404, description=f"{shortened(language)} {shortened(key)} is not a line a prompt can be recorded for.")
    return text


def keep_prompt_file(prepared: PromptFile) -> PromptAudio:
    """Put a checked file in the line's storage (once: its key is its content's) and its row."""
    cfg = current_app.config
    store_prompt_file(storage_for(cfg), prepared)
    return keep_audio(
        db.session,
        cfg["SECRET_KEY"],
        prepared.digest,
        prepared.storage_key,
        CONTENT_TYPE,
        prepared.seconds,
        len(prepared.data),
    )


@console.get("/admin/prompts")
@admin_required
def prompts():
    return prompts_page()


@console.post("/admin/prompts/<language>/<key>/upload")
@admin_required
def upload_prompt(language: str, key: str):
    """Check, convert and keep an uploaded file, and make it the line's prompt in the draft.
    A file that cannot be a prompt gets the page again (400) saying why."""
    text = recordable_or_404(language, key)
    upload = request.files.get("audio")
    if upload is None or not upload.filename:
        flash(f"{language} {key}: choose an audio file to upload.", "error")
        return prompts_page(400)
    cfg = current_app.config
    try:
        prepared = prepare_prompt(
            upload.read(),
            min_seconds=cfg["PROMPT_MIN_SECONDS"],
            max_seconds=cfg["PROMPT_MAX_SECONDS"],
            max_bytes=cfg["PROMPT_MAX_BYTES"],
        )
    except PromptAudioError as exc:
        flash(f"{language} {key}: {upload.filename}: {exc}.", "error")
        return prompts_page(400)
    audio = keep_prompt_file(prepared)
    note_recording(db.session, language, key, audio.digest, text, "upload", g.user.id)
    record(
        "prompt_upload",
        f"prompt {language} {key}",
        file=upload.filename[:200],
        sha256=audio.digest,
        seconds=audio.seconds,
        text=text,
    )
    play_in_draft(language, key, audio.digest, f"{language} {key}: the recording ({audio.seconds:.1f} s) is saved.")
    return redirect(url_for("console.prompts", _anchor=f"{language}-{key}"))


def play_in_draft(language: str, key: str, digest: str | None, message: str) -> None:
    """Make the draft play `digest` for (language, key) (None: say it), and commit."""
    document = draft()
    lines = document["prompts"].setdefault(language, {})
    if digest is None:
        lines.pop(key, None)
    else:
        lines[key] = digest
    draft_changed(document, message)


@console.post("/admin/prompts/<language>/<key>/remove")
@admin_required
def remove_recorded_prompt(language: str, key: str):
    """Go back to the voice for this line, in the draft."""
    recordable_or_404(language, key)
    if key not in draft()["prompts"].get(language, {}):
        flash(f"{language} {key} has no recording in the draft.")
        return redirect(url_for("console.prompts"))
    record("prompt_remove", f"prompt {language} {key}", draft=True)
    play_in_draft(language, key, None, f"{language} {key}: the voice says it again.")
    return redirect(url_for("console.prompts", _anchor=f"{language}-{key}"))


@console.post("/admin/prompts/<language>/<key>/code")
@admin_required
def phone_code(language: str, key: str):
    """A one-time code to record this line by phone: shown once, kept only as an HMAC."""
    text = recordable_or_404(language, key)
    cfg = current_app.config
    code, row = new_code(db.session, cfg["SECRET_KEY"], language, key, g.user.id, cfg["PROMPT_CODE_MINUTES"])
    record("prompt_code", f"prompt {language} {key}", expires_at=row.expires_at.isoformat(timespec="seconds"))
    db.session.commit()
    return prompts_page(
        code={"code": code, "language": language, "key": key, "text": text, "minutes": cfg["PROMPT_CODE_MINUTES"]}
    )


def take_or_404(take_id: int) -> PromptTake:
    """The take, or 404. `take_id` is at most `MAX_ROW_ID`: the routes' converter says so."""
    take = db.session.get(PromptTake, take_id)
    if take is None:
        abort(404, description="There is no such take.")
    return take


@console.post(f"/admin/prompts/takes/<{ROW_ID_IN_PATH}:take_id>/<decision>")
@admin_required
def review_take(take_id: int, decision: str):
    """Accept a take recorded by phone (it becomes the line's prompt in the draft) or discard it."""
    take = take_or_404(take_id)
    if decision not in ("accept", "discard"):
        abort(404)
    if take.state in ("accepted", "discarded"):
        flash(f"That take was already {take.state}.")
        return redirect(url_for("console.prompts"))
    if decision == "discard":
        take.state = "discarded"
        record("prompt_take_discard", f"prompt {take.language} {take.key}", recording_sid=take.recording_sid)
        db.session.commit()
        flash(f"{take.language} {take.key}: the take is discarded. Make a new code to record it again.")
        return redirect(url_for("console.prompts"))
    if take.state != "ready" or not take.digest:
        flash("That take is not ready yet: the worker has not fetched it from Twilio.", "error")
        return prompts_page(409)
    text = line_text(draft_script(), take.language, take.key)
    if text is None:
        flash(f"{take.language} {take.key} is no longer a line a prompt can be recorded for.", "error")
        return prompts_page(409)
    note_recording(db.session, take.language, take.key, take.digest, text, "phone", g.user.id)
    take.state, take.updated_at = "accepted", utcnow()
    record("prompt_take_accept", f"prompt {take.language} {take.key}", recording_sid=take.recording_sid, text=text)
    play_in_draft(
        take.language, take.key, take.digest, f"{take.language} {take.key}: the take recorded by phone is saved."
    )
    return redirect(url_for("console.prompts", _anchor=f"{take.language}-{take.key}"))


@console.get(f"/admin/prompts/takes/<{ROW_ID_IN_PATH}:take_id>.wav")
@admin_required
def take_audio(take_id: int):
    """A take's converted audio, to listen to before accepting it."""
    take = take_or_404(take_id)
    audio = db.session.scalar(select(PromptAudio).where(PromptAudio.digest == take.digest)) if take.digest else None
    if audio is None:
        abort(404, description="That take's audio is not fetched yet.")
    with storage_for(current_app.config).open(audio.storage_key) as stored:
        data = stored.read()
    return Response(data, mimetype=audio.content_type)
