"""Twilio's webhooks: check, record the fact, answer.

Each route reads Twilio's form, works out the reply from the URL's state (a pure function,
cached), stores the fact with an idempotent upsert, commits, and answers TwiML. A database
failure is logged and the caller still hears the next prompt.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.exceptions import HTTPException
from sqlalchemy.exc import SQLAlchemyError

from models import db, utcnow
from models.calls import STANCES, call_values, note_call, note_call_status, note_choice
from models.line import LineScript, read_script_file, script_from_file
from models.recordings import note_recording_action, note_recording_status, note_transcription, reference_for

from . import twiml
from .signature import public_base_url, require_twilio_signature

bp = Blueprint("ivr", __name__, url_prefix="/twilio")
bp.before_request(require_twilio_signature)
MAX_MISSES = 3  # at a menu, the third miss takes the fall-back
MAX_EMPTY_RECORDINGS = 2


@bp.errorhandler(Exception)
def answer_despite_error(error: Exception):
    """No caller ever hears an application error: anything unexpected in a webhook is logged
    and the caller is asked for a general comment instead. HTTP errors (403, 400, 405, 413)
    keep their status: only a request Twilio would never send gets one."""
    if isinstance(error, HTTPException):
        return Response(f"{error.code} {error.name}: {error.description}\n", error.code, mimetype="text/plain")
    current_app.logger.exception("webhook %s failed for call %s", request.path, request.form.get("CallSid"))
    script = current_app.extensions["line_script"]._script
    if script is None:
        script = script_from_file(read_script_file(current_app.config["LINE_CONFIG"]))
    language = request.args.get("l") or script.languages[0].code
    body = twiml.record_comment(script, public_base_url(), language, script.general(), None, 0, 0, "trouble")
    return Response(body, 200, mimetype="text/xml")


@bp.before_request
def require_call_sid() -> None:
    if not request.form.get("CallSid"):
        abort(400, description="CallSid is required.")


def answer(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def current_script() -> LineScript:
    return current_app.extensions["line_script"].get(db.session)


def state(name: str, default: int | None = None) -> int:
    """An integer the previous reply put in this URL (the step, the misses)."""
    value = request.args.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit() or len(value) > 6:
        abort(400, description=f"The webhook URL lacks a valid {name!r}.")
    return int(value)


def pressed() -> str:
    return request.form.get("Digits", "").strip()


def miss_notice(digits: str) -> str:
    return "invalid" if digits else "no_input"


def this_call(now) -> dict:
    cfg = current_app.config
    return call_values(request.form, mode=cfg["CALLER_NUMBERS"], key=cfg["CALLER_HASH_KEY"], seen_at=now)


def store(write) -> bool:
    """Run `write(connection)` in one transaction and commit; on a database failure roll back,
    log, return False. The caller is answered either way. The facts are Core statements on a
    connection of their own: the ORM session's bookkeeping would only add to every webhook."""
    try:
        with db.engine.begin() as connection:
            write(connection)
        return True
    except SQLAlchemyError:
        current_app.logger.exception("could not store %s for call %s", request.path, request.form.get("CallSid"))
        return False


@bp.post("/voice")
def welcome():
    script = current_script()
    only = script.languages[0].code if len(script.languages) == 1 else None
    values = this_call(utcnow())
    store(lambda s: note_call(s, values, language=only))
    return answer(twiml.welcome(script, public_base_url()))


@bp.post("/language")
def choose_language():
    script, base = current_script(), public_base_url()
    step, misses, digits = state("s"), state("m", 0), pressed()
    if digits == "*":
        return answer(twiml.language_menu(script, base, step, misses))
    lang = script.language_for_digit(digits)
    if lang is None:
        if misses + 1 < MAX_MISSES:
            return answer(twiml.language_menu(script, base, step, misses + 1, miss_notice(digits)))
        lang = script.languages[0]
    now, call = utcnow(), this_call(utcnow())

    def write(session):
        note_call(session, call, language=lang.code)
        note_choice(session, call["call_sid"], step, "language", at=now, language=lang.code)

    store(write)
    return answer(twiml.topic_menu(script, base, lang.code, step + 1, 0))


@bp.post("/topic")
def choose_topic():
    script, base = current_script(), public_base_url()
    step, misses, digits = state("s"), state("m", 0), pressed()
    language = request.args.get("l")
    if digits == "*":
        return answer(twiml.topic_menu(script, base, language, step, misses))
    topic = script.topic_for_digit(digits)
    if topic is None:
        if misses + 1 < MAX_MISSES:
            return answer(twiml.topic_menu(script, base, language, step, misses + 1, miss_notice(digits)))
        topic = script.general()
    now, call = utcnow(), this_call(utcnow())

    def write(session):
        note_call(session, call)
        note_choice(session, call["call_sid"], step, "topic", at=now, topic_id=topic.id)

    store(write)
    if topic.stance:
        return answer(twiml.stance_menu(script, base, language, topic, step + 1, 0))
    return answer(twiml.record_comment(script, base, language, topic, None, step + 1))


@bp.post("/stance")
def choose_stance():
    script, base = current_script(), public_base_url()
    step, misses, digits = state("s"), state("m", 0), pressed()
    language, topic = request.args.get("l"), script.topic(request.args.get("t"))
    if topic is None:  # the topic was removed mid-call: take the comment all the same
        return answer(twiml.record_comment(script, base, language, script.general(), None, step + 1))
    stance = STANCES.get(digits)
    if stance is None:
        if digits == "*":
            return answer(twiml.stance_menu(script, base, language, topic, step, misses))
        if misses + 1 < MAX_MISSES:
            return answer(twiml.stance_menu(script, base, language, topic, step, misses + 1, miss_notice(digits)))
        return answer(twiml.record_comment(script, base, language, topic, None, step + 1))
    now, call = utcnow(), this_call(utcnow())

    def write(session):
        note_call(session, call)
        note_choice(session, call["call_sid"], step, "stance", at=now, topic_id=topic.id, stance=stance)

    store(write)
    return answer(twiml.record_comment(script, base, language, topic, stance, step + 1))


def recording_sid() -> str | None:
    """`RecordingSid`, or the last path segment of `RecordingUrl` when Twilio omits it."""
    sid = request.form.get("RecordingSid", "").strip()
    if not sid:
        url = request.form.get("RecordingUrl", "").rstrip("/")
        sid = url.rsplit("/", 1)[-1] if "/Recordings/" in url else ""
    return sid or None


def seconds(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    return int(value) if value.isdigit() else None


@bp.post("/recorded")
def comment_recorded():
    """The `<Record>` action: store the comment and read back its reference number."""
    script, base = current_script(), public_base_url()
    step, language = state("s"), request.args.get("l")
    topic, stance = script.topic(request.args.get("t")), request.args.get("p") or None
    digits, duration, sid = pressed(), seconds("RecordingDuration"), recording_sid()
    now, call = utcnow(), this_call(utcnow())
    reference = None
    if sid:
        row_id = []

        def write(session):
            note_call(session, call)
            row_id.append(note_recording_action(
                session, sid, call["call_sid"], at=now, topic_id=topic.id if topic else None,
                stance=stance if stance in STANCES.values() else None, language=script.language(language).code,
                step=step, duration=duration, finished_by=(digits or None) and digits[:16],
                media_url=request.form.get("RecordingUrl") or None,
            ))

        if store(write):
            reference = reference_for(row_id[0])
    if digits == "hangup":
        return answer(twiml.nothing())  # Twilio ignores it; the caller has gone
    if not duration:
        return answer(twiml.record_comment(script, base, language, topic, stance, step, 1, "no_comment"))
    return answer(twiml.comment_saved(script, base, language, step + 1, reference))


@bp.post("/no-comment")
def no_comment():
    """Twilio skipped the `<Record>` action: nothing was recorded. Offer it again, once."""
    script, base = current_script(), public_base_url()
    step, misses, language = state("s"), state("m", 0) + 1, request.args.get("l")
    topic, stance = script.topic(request.args.get("t")), request.args.get("p") or None
    if misses < MAX_EMPTY_RECORDINGS:
        return answer(twiml.record_comment(script, base, language, topic, stance, step, misses, "no_comment"))
    return answer(twiml.another_menu(script, base, language, step + 1, 0, "no_comment"))


@bp.post("/next")
def another_topic():
    script, base = current_script(), public_base_url()
    step, misses, digits, language = state("s"), state("m", 0), pressed(), request.args.get("l")
    if digits == "1":
        return answer(twiml.topic_menu(script, base, language, step + 1, 0))
    if digits in ("", "2") or misses + 1 >= MAX_MISSES:
        return answer(twiml.goodbye(script, language))
    return answer(twiml.another_menu(script, base, language, step, misses + 1, "invalid"))


@bp.post("/recording-status")
def recording_status():
    sid = recording_sid()
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now, call = utcnow(), this_call(utcnow())
    status = request.form.get("RecordingStatus", "").strip()[:16] or "completed"

    def write(session):
        note_call(session, call)
        note_recording_status(
            session, sid, call["call_sid"], at=now, status=status, duration=seconds("RecordingDuration"),
            media_url=request.form.get("RecordingUrl") or None,
            error_code=(request.form.get("ErrorCode") or None) and request.form["ErrorCode"][:16],
        )

    store(write)
    return answer(twiml.nothing())


@bp.post("/transcription")
def transcription():
    sid = recording_sid()
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now, call = utcnow(), this_call(utcnow())
    status = "completed" if request.form.get("TranscriptionStatus") == "completed" else "failed"

    def write(session):
        note_call(session, call)
        note_transcription(
            session, sid, call["call_sid"], at=now, source="twilio",
            transcription_sid=request.form.get("TranscriptionSid") or None, status=status,
            text=request.form.get("TranscriptionText") if status == "completed" else None,
            language="en-US",
        )

    store(write)
    return answer(twiml.nothing())


def callback_time(now: datetime) -> datetime:
    """The status callback's `Timestamp` (RFC 2822) as naive UTC, or now."""
    try:
        stamp = parsedate_to_datetime(request.form["Timestamp"])
    except (KeyError, TypeError, ValueError):
        return now
    return stamp if stamp.tzinfo is None else stamp.astimezone(UTC).replace(tzinfo=None)


@bp.post("/status")
def call_status():
    now, call = utcnow(), this_call(utcnow())
    status = request.form.get("CallStatus", "").strip()[:16] or "completed"
    store(lambda s: note_call_status(s, call, status=status, duration=seconds("CallDuration"),
                                     ended_at=callback_time(now)))
    return answer(twiml.nothing())
