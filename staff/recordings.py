"""Recordings for signed-in staff: the audio endpoint (HTTP Range, by werkzeug's conditional
responses), redaction and deletion by admins, and the public-records export.

Audio is served from our storage. A recording the worker has not fetched yet is fetched here
from Twilio's API (under TWILIO_API_BASE, with the account's credentials) and kept, so the
browser never sees Twilio's URL or credentials.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import timedelta

from flask import Response, abort, current_app, flash, g, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import FileWrapper

from models import Recording, db, utcnow
from models.audit import count_recent
from models.comments import (
    CommentRow,
    InboxFilter,
    delete_comment,
    iter_comments,
    note_stored_audio,
    remove_audio,
    remove_transcripts,
    storage_key_for,
)
from models.holds import holds_covering, keep_originals, refusal
from storage import checksum, storage_for
from storage.twilio_media import MediaError, fetch_media

from .auth import admin_required, record
from .console import all_topics, comment_or_404, console, date_presets, date_window, local_time, today_local
from .csvfiles import SafeWriter
from .params import BadParameter

CHUNK = 64 * 1024
LISTEN_LOG_MINUTES = 30
EXTENSIONS = {"audio/mpeg": "mp3", "audio/mp3": "mp3"}
EXPORT_HEADER = ["reference", "time", "topic", "stance", "language", "duration_seconds", "transcript", "audio_file"]


def stored_key(recording: Recording) -> str | None:
    """The storage key of the recording's audio, fetching it from Twilio first if we do not
    have it (or our copy has gone). None when there is no audio to have. Raises MediaError
    when Twilio fails."""
    storage = storage_for(current_app.config)
    if recording.storage_key and storage.exists(recording.storage_key):
        return recording.storage_key
    if not recording.media_url:
        return None
    media = fetch_media(current_app.config, recording.media_url)
    content_type = media.content_type.split(";")[0].strip() or "audio/wav"
    key = recording.storage_key or storage_key_for(recording, EXTENSIONS.get(content_type, "wav"))
    storage.put(key, media.data, content_type)
    if recording.storage_key is None and note_stored_audio(
        db.session,
        recording.id,
        key=key,
        content_type=content_type,
        size=len(media.data),
        checksum=checksum(media.data),
    ):
        db.session.commit()
    db.session.refresh(recording)
    return recording.storage_key or key


def note_listening(comment: CommentRow) -> None:
    """One audit entry per person and comment every LISTEN_LOG_MINUTES, however many
    Range requests the player makes."""
    since = utcnow() - timedelta(minutes=LISTEN_LOG_MINUTES)
    target = f"comment {comment.reference}"
    if count_recent(db.session, "listen", since, target=target, actor=g.user.id) == 0:
        record("listen", target)
        db.session.commit()


@console.get("/audio/<reference>")
def audio(reference: str):
    """The comment's audio. With a `Range` header (one range: `bytes=a-b`, `bytes=a-`,
    `bytes=-n`), 206 and those bytes; 416 when it lies outside the file; 404 when there is no
    audio; 502 when Twilio fails. Listening is audited however the player asks."""
    comment = comment_or_404(reference)
    if comment.audio_removed or comment.deleted:
        abort(404, description="This comment's audio was removed.")
    if comment.audio_purged:
        abort(404, description="This comment's audio was deleted under the retention rule.")
    try:
        key = stored_key(comment.recording)
    except MediaError as exc:
        current_app.logger.warning("audio for comment %s: %s", comment.reference, exc)
        abort(502, description="Twilio did not give us this recording just now. Try again in a minute.")
    if key is None:
        abort(404, description="This comment has no recording.")
    storage = storage_for(current_app.config)
    size = storage.size(key)
    note_listening(comment)
    response = Response(
        FileWrapper(storage.open(key), CHUNK),  # werkzeug's: seekable, so a range starts where it asks
        mimetype=comment.recording.content_type or "audio/wav",
        direct_passthrough=True,
        headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": f'inline; filename="comment-{comment.reference}.{key.rsplit(".", 1)[-1]}"',
        },
    )
    response.content_length = size
    if comment.recording.checksum:
        response.set_etag(comment.recording.checksum)  # lets a player resume with If-Range
    try:
        return response.make_conditional(request, accept_ranges=True, complete_length=size)
    except RequestedRangeNotSatisfiable:
        response.close()
        raise


# --- redaction and deletion -----------------------------------------------------------------

REMOVALS = {"audio": "remove_audio", "transcript": "remove_transcript", "comment": "delete_comment"}
UNDER_HOLD = {"audio": "The audio cannot be removed", "comment": "The comment cannot be deleted"}


@console.post("/comments/<reference>/remove")
@admin_required
def remove(reference: str):
    """Remove a comment's audio, its transcript, or the whole comment, with a reason. The call
    and the comment are still counted. Under a legal hold the audio and the comment cannot be
    removed (the page says which hold); a transcript can, its original kept out of sight until
    the hold ends."""
    comment = comment_or_404(reference)
    what, reason = request.form.get("what", ""), " ".join(request.form.get("reason", "").split())
    if what not in REMOVALS:
        abort(400, description="Say whether to remove the audio, the transcript or the whole comment.")
    if len(reason) < 3:
        flash("Give the reason (for example, the caller asked, or personal data was read out).", "error")
        return redirect(url_for("console.comment", reference=reference))
    recording = comment.recording
    holds = holds_covering(db.session, recording)
    if holds and what in UNDER_HOLD:
        record("hold.refused", f"comment {comment.reference}", what=what, holds=[h.id for h in holds], reason=reason)
        db.session.commit()
        flash(refusal(holds, UNDER_HOLD[what]), "error")
        return redirect(url_for("console.comment", reference=reference))
    key, kept = None, 0
    if what == "audio":
        key = remove_audio(db.session, recording, reason)
    elif what == "transcript":
        kept = keep_originals(db.session, recording, reason) if holds else 0
        remove_transcripts(db.session, recording, reason)
    else:
        key = delete_comment(db.session, recording, reason)
    under = {"held_by": [h.id for h in holds], "originals_kept": kept} if holds else {}
    record(REMOVALS[what], f"comment {comment.reference}", reason=reason, **under)
    db.session.commit()
    if key:
        storage_for(current_app.config).delete(key)
    if holds:
        named = "; ".join(h.describe() for h in holds)
        flash(f"The transcript was removed from view. Its original is kept out of sight under {named} until it ends.")
    else:
        flash(
            {
                "audio": "The audio was removed.",
                "transcript": "The transcript was removed.",
                "comment": f"Comment {comment.reference} was deleted.",
            }[what]
        )
    if what == "comment":
        return redirect(url_for("console.inbox"))
    return redirect(url_for("console.comment", reference=reference))


# --- the public-records export --------------------------------------------------------------


@console.get("/export")
def export_form():
    """The export's form, its window from `from` and `to` when given (else today)."""
    today = today_local()
    try:
        days, status = date_window(request.args), 200
    except BadParameter as exc:
        flash(str(exc), "error")
        days, status = None, 400
    return render_template(
        "export.html",
        topics=all_topics(),
        presets=date_presets(),
        first=(days.first if days and days.first else today).isoformat(),
        last=(days.last if days and days.last else today).isoformat(),
    ), status


def export_row(comment: CommentRow, audio_file: str) -> list:
    r = comment.recording
    text = "[removed]" if comment.transcript_removed else (comment.text or "")
    return [
        comment.reference,
        local_time(r.created_at, "%Y-%m-%d %H:%M:%S"),
        comment.topic_slug or "",
        r.stance or "",
        r.language or "",
        "" if r.duration is None else r.duration,
        text,
        audio_file,
    ]


@console.post("/export")
def export():
    """A zip of comments.csv and audio/<reference>.<ext> for the window and topics chosen."""
    try:
        days = date_window(request.form)
    except BadParameter as exc:
        flash(str(exc), "error")
        return redirect(url_for("console.export_form"))
    chosen = set(request.form.getlist("topic"))
    topics = [t for t in all_topics() if t.slug in chosen]
    if days.since is None or days.until is None or not topics:
        flash("Choose a start date, an end date and at least one topic.", "error")
        return redirect(url_for("console.export_form"))
    f = InboxFilter(since=days.since, until=days.until, topic_ids=[t.id for t in topics])
    storage = storage_for(current_app.config)
    out = tempfile.TemporaryFile()
    count = missing = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        table = io.StringIO()
        writer = SafeWriter(table)
        writer.writerow(EXPORT_HEADER)
        for comment in iter_comments(db.session, f):
            name = ""
            if comment.has_audio:
                try:
                    key = stored_key(comment.recording)
                except MediaError as exc:
                    current_app.logger.warning("export: audio for %s: %s", comment.reference, exc)
                    key = None
                if key:
                    name = f"audio/{comment.reference}.{key.rsplit('.', 1)[-1]}"
                    with storage.open(key) as audio_file:
                        bundle.writestr(zipfile.ZipInfo(name), audio_file.read(), zipfile.ZIP_STORED)
                else:
                    missing += 1
            writer.writerow(export_row(comment, name))
            count += 1
        bundle.writestr("comments.csv", table.getvalue())
    first, last = days.first.isoformat(), days.last.isoformat()
    record("export", f"comments {first}..{last}", topics=sorted(chosen), comments=count, audio_missing=missing)
    db.session.commit()
    out.seek(0)
    return send_file(
        out, mimetype="application/zip", as_attachment=True, download_name=f"comments_{first}_to_{last}.zip"
    )
