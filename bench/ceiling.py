"""The ceiling: the least a webhook server can do for the same calls.

It checks each signature with the line's own `ivr.signature.is_valid_signature`, then answers
exactly the TwiML the line would give for the same URL and keys (built by the line's own
`ivr/twiml.py` builders, cached the same way, from `config/line.yaml`), and stores nothing:
no database, no session. Served by gunicorn with the line's `config/gunicorn.py`:

    gunicorn --config config/gunicorn.py "bench.ceiling:create_app()"

Its reference numbers are made from the RecordingSid (it keeps no row ids), so the reply has
the same shape and length as the line's.
"""

from __future__ import annotations

import os
import zlib

from flask import Flask, Response, abort, request

from config import DEFAULT_LINE_CONFIG
from ivr import twiml
from ivr.menu import (
    ANOTHER_TOPIC_KEY,
    END_CALL_KEY,
    HANG_UP,
    MAX_MISSES,
    MAX_ZIP_TRIES,
    REPEAT_KEY,
    STANCE_KEYS,
)
from ivr.signature import is_valid_signature
from models.line import is_zip, read_script_file, script_from_file
from models.recordings import reference_for


def create_app() -> Flask:
    app = Flask(__name__)
    token = os.environ["TWILIO_AUTH_TOKEN"]
    script = script_from_file(read_script_file(os.environ.get("LINE_CONFIG") or DEFAULT_LINE_CONFIG))

    def base() -> str:
        return request.host_url.rstrip("/")

    def answer(body: str) -> Response:
        return Response(body, mimetype="text/xml")

    def state(name: str, default: int | None = None) -> int:
        value = request.args.get(name)
        if value is None and default is not None:
            return default
        if value is None or not value.isdigit():
            abort(400)
        return int(value)

    @app.before_request
    def check_signature() -> None:
        if not request.path.startswith("/twilio/"):
            return
        query = request.query_string.decode("latin-1")
        url = base() + request.path + (f"?{query}" if query else "")
        if not is_valid_signature(token, url, request.form, request.headers.get("X-Twilio-Signature")):
            abort(403)
        if not request.form.get("CallSid"):
            abort(400)

    @app.get("/livez")
    def livez():
        return {"status": "ok"}

    @app.post("/twilio/voice")
    def welcome():
        return answer(twiml.welcome(script, base()))

    @app.post("/twilio/language")
    def choose_language():
        step, misses, digits = state("s"), state("m", 0), request.form.get("Digits", "").strip()
        if digits == REPEAT_KEY:
            return answer(twiml.language_menu(script, base(), step, misses))
        lang = script.language_for_digit(digits)
        if lang is None:
            if misses + 1 < MAX_MISSES:
                notice = "invalid" if digits else "no_input"
                return answer(twiml.language_menu(script, base(), step, misses + 1, notice))
            lang = script.languages[0]
        if script.zip_step == "after_language":
            return answer(twiml.zip_menu(script, base(), lang.code, step + 1, 0))
        return answer(twiml.topic_menu(script, base(), lang.code, step + 1, 0))

    @app.post("/twilio/topic")
    def choose_topic():
        step, misses, digits = state("s"), state("m", 0), request.form.get("Digits", "").strip()
        language = request.args.get("l")
        if digits == REPEAT_KEY:
            return answer(twiml.topic_menu(script, base(), language, step, misses))
        topic = script.topic_for_digit(digits)
        if topic is None:
            if misses + 1 < MAX_MISSES:
                notice = "invalid" if digits else "no_input"
                return answer(twiml.topic_menu(script, base(), language, step, misses + 1, notice))
            topic = script.general()
        if script.zip_step == "after_topic" and step == script.first_topic_step:
            return answer(twiml.zip_menu(script, base(), language, step + 1, 0, topic.slug))
        return answer(about(language, topic, step + 1))

    def about(language, topic, step: int) -> str:
        if topic.stance:
            return twiml.stance_menu(script, base(), language, topic, step, 0)
        return twiml.record_comment(script, base(), language, topic, None, step)

    @app.post("/twilio/zip")
    def enter_zip():
        step, misses, digits = state("s"), state("m", 0), request.form.get("Digits", "").strip()
        language, slug = request.args.get("l"), request.args.get("t")
        if digits == REPEAT_KEY:
            return answer(twiml.zip_menu(script, base(), language, step, misses, slug))
        if digits and not is_zip(digits) and misses + 1 < MAX_ZIP_TRIES:
            return answer(twiml.zip_menu(script, base(), language, step, misses + 1, slug, "zip_retry"))
        if not slug:
            return answer(twiml.topic_menu(script, base(), language, step + 1, 0))
        return answer(about(language, script.topic(slug) or script.general(), step + 1))

    @app.post("/twilio/stance")
    def choose_stance():
        step, misses, digits = state("s"), state("m", 0), request.form.get("Digits", "").strip()
        language, topic = request.args.get("l"), script.topic(request.args.get("t"))
        stance = STANCE_KEYS.get(digits)
        if stance is None:
            if digits == REPEAT_KEY:
                return answer(twiml.stance_menu(script, base(), language, topic, step, misses))
            if misses + 1 < MAX_MISSES:
                notice = "invalid" if digits else "no_input"
                return answer(twiml.stance_menu(script, base(), language, topic, step, misses + 1, notice))
            return answer(twiml.record_comment(script, base(), language, topic, None, step + 1))
        return answer(twiml.record_comment(script, base(), language, topic, stance, step + 1))

    @app.post("/twilio/recorded")
    def comment_recorded():
        step, language = state("s"), request.args.get("l")
        topic, stance = script.topic(request.args.get("t")), request.args.get("p") or None
        digits = request.form.get("Digits", "").strip()
        duration = request.form.get("RecordingDuration", "").strip()
        reference = reference_for(zlib.crc32(request.form.get("RecordingSid", "").encode()) % 8_999_999 + 1)
        if digits == HANG_UP:
            return answer(twiml.nothing())
        if not duration.isdigit() or int(duration) == 0:
            return answer(twiml.after_empty_recording(script, base(), language, topic, stance, step, state("m", 0) + 1))
        return answer(twiml.comment_saved(script, base(), language, step + 1, reference))

    @app.post("/twilio/no-comment")
    def no_comment():
        step, misses, language = state("s"), state("m", 0) + 1, request.args.get("l")
        topic, stance = script.topic(request.args.get("t")), request.args.get("p") or None
        return answer(twiml.after_empty_recording(script, base(), language, topic, stance, step, misses))

    @app.post("/twilio/next")
    def another_topic():
        step, misses, language = state("s"), state("m", 0), request.args.get("l")
        digits = request.form.get("Digits", "").strip()
        if digits == ANOTHER_TOPIC_KEY:
            return answer(twiml.topic_menu(script, base(), language, step + 1, 0))
        if digits in ("", END_CALL_KEY) or misses + 1 >= MAX_MISSES:
            return answer(twiml.goodbye(script, base(), language))
        return answer(twiml.another_menu(script, base(), language, step, misses + 1, "invalid"))

    @app.post("/twilio/recording-status")
    @app.post("/twilio/transcription")
    @app.post("/twilio/status")
    def callback():
        return answer(twiml.nothing())

    return app
