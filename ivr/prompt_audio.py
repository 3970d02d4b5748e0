"""Recorded prompts' audio, served to Twilio (`<Play>`): `GET /prompts/<name>.wav`.

Twilio fetches `<Play>` URLs without a session or a signature, so the URL itself is the
credential: `name` is the public name of one file in `prompt_audio` (an HMAC of its SHA-256
under the line's secret key, models/prompts.py). Only names in that table are served, from the
storage key that row holds; nothing else in storage (a caller's recording) has such a name.
A file never changes under its name (it is named for its content), so it is cached for a year
(`Cache-Control: public, immutable`) with its SHA-256 as the ETag, and `If-None-Match` and
`Range` are answered.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request

from models import db
from models.prompts import audio_for_name
from storage import storage_for

from .twiml import PROMPT_PATH

prompt_audio = Blueprint("prompt_audio", __name__, url_prefix=PROMPT_PATH)
CACHE_SECONDS = 365 * 24 * 3600


@prompt_audio.get("/<name>.wav")
def play_prompt(name: str) -> Response:
    """The prompt's WAV (200, 206 or 304); 404 for a name that is not a prompt's."""
    audio = audio_for_name(db.session, name)
    if audio is None:
        abort(404, description="There is no such prompt.")
    store = storage_for(current_app.config)
    if not store.exists(audio.storage_key):
        current_app.logger.error("prompt audio %s is missing from storage (%s)", audio.name, audio.storage_key)
        abort(404, description="There is no such prompt.")
    with store.open(audio.storage_key) as stored:
        data = stored.read()
    response = Response(data, mimetype=audio.content_type)
    response.set_etag(audio.digest)
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(data))
