"""Twilio's webhooks: check, record the fact, answer.

Each route reads Twilio's form, works out the reply from the URL's state (a pure function,
cached), and stores its facts (models/facts.py): journalled for the write-behind writer
(ivr/behind.py), or with `WRITE_BEHIND` off written in one transaction before the reply. When
the database cannot take them, the facts go to the durable spool (ivr/spool.py), and the
caller hears the next prompt all the same. The `<Record>` action reads back the comment's
reference number: with write-behind, a number this process took in advance (ivr/numbers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import parse_qs, parse_qsl, urlparse

from flask import Blueprint, Response, abort, current_app, g, request
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from models import db, utcnow
from models.calls import STANCES, call_values
from models.facts import Fact, apply
from models.line import LineScript, read_script_file, script_from_file
from models.recordings import reference_for
from models.writer import take_numbers

from . import twiml
from .signature import public_base_url, require_twilio_signature
from .spool import database_unavailable

T = TypeVar("T")
bp = Blueprint("ivr", __name__, url_prefix="/twilio")
MAX_MISSES = 3  # at a menu, the third miss takes the fall-back
MAX_EMPTY_RECORDINGS = 2
RESCUE_STEP = 1000  # choices made on the rescue paths get steps of their own: 1000 + the failed step


@bp.before_request
def before_webhook() -> None:
    """Refuse what Twilio did not sign (403), then what names no call (400); name the call for
    every log line the webhook writes; and look for spooled facts to replay. One hook: each
    costs Flask a dispatch on every webhook (ivr/metrics.py measures them, outside Flask)."""
    g.call_sid = request.form.get("CallSid")
    require_twilio_signature()
    if not g.call_sid:
        abort(400, description="CallSid is required.")
    current_app.extensions["spool_replayer"].look()


@bp.errorhandler(Exception)
def answer_despite_error(error: Exception):
    """No caller ever hears an application error: anything unexpected in a webhook is logged
    and the caller is asked for a general comment instead. HTTP errors (403, 400, 405, 413)
    keep their status: only a request Twilio would never send gets one."""
    if isinstance(error, HTTPException):
        return Response(f"{error.code} {error.name}: {error.description}\n", error.code, mimetype="text/plain")
    current_app.logger.exception("webhook %s failed", request.path)
    return rescue(step_of(request.url))


def as_step(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) <= 6 else 0


def step_of(url: str | None) -> int:
    """The step an action URL of ours carries (0 for any other URL)."""
    return as_step(parse_qs(urlparse(url or "").query).get("s", [None])[0])


def rescue(failed_step: int) -> Response:
    """Ask for a general comment, counting the general topic as chosen. Used when a webhook
    failed (here or, via the Fallback URL, as Twilio saw it)."""
    try:
        script = current_script()
    except Exception:  # noqa: BLE001 - the rescue must not depend on what just failed
        current_app.logger.exception("the line's script could not be read; using the file's")
        script = script_from_file(read_script_file(current_app.config["LINE_CONFIG"]))
    language = script.language(arg("l") or language_of(request.form.get("ErrorUrl"))).code
    general, step = script.general(), RESCUE_STEP + failed_step
    now, call = utcnow(), this_call(utcnow())
    store(
        [
            Fact("call", {"values": call}),
            Fact(
                "choice",
                {"call_sid": call["call_sid"], "step": step, "kind": "topic", "at": now, "topic": general.slug},
            ),
        ]
    )
    return answer(twiml.record_comment(script, public_base_url(), language, general, None, step + 1, 0, "trouble"))


def language_of(url: str | None) -> str | None:
    return parse_qs(urlparse(url or "").query).get("l", [None])[0]


def answer(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def current_script() -> LineScript:
    breaker = current_app.extensions["db_breaker"]
    return current_app.extensions["line_script"].get(db.session, database_ok=breaker.closed())


def arg(name: str) -> str | None:
    """A value the previous reply put in this webhook's URL (or, on the Fallback URL, in the
    URL that failed)."""
    return g.get("url_args", request.args).get(name)


def state(name: str, default: int | None = None) -> int:
    """An integer the previous reply put in this URL (the step, the misses)."""
    value = arg(name)
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit() or len(value) > 6:
        abort(400, description=f"The webhook URL lacks a valid {name!r}.")
    return int(value)


def pressed() -> str:
    return request.form.get("Digits", "").strip()


def miss_notice(digits: str) -> str:
    return "invalid" if digits else "no_input"


def this_call(now: datetime) -> dict:
    cfg = current_app.config
    # A plain dict: a MultiDict raises (and catches) an exception for each absent field.
    form = request.form.to_dict()
    return call_values(form, mode=cfg["CALLER_NUMBERS"], key=cfg["CALLER_HASH_KEY"], seen_at=now)


def store(facts: list[Fact]) -> dict[str, int] | None:
    """Store one webhook's facts. With write-behind, journal them for the writer thread and
    return None. Otherwise write them in one transaction and return the row id of each
    recording they name; or, when the database cannot take them, put them in the spool (on
    disk before this returns) and return None. The caller is answered either way."""
    ext = current_app.extensions
    if "write_behind" in ext:
        ext["write_behind"].submit(facts)
        return None
    stored = write_now(lambda connection: apply(connection, facts))
    if stored is None:
        ext["spool"].append(facts)
        ext["spool_replayer"].start()
        current_app.logger.info("spooled %d fact(s) from %s", len(facts), request.path)
    return stored


def write_now(work: Callable[[Connection], T]) -> T | None:
    """`work(connection)` in a transaction of its own, before the reply; None when the
    database would not (logged; when it is down, the breaker skips it for a while)."""
    ext = current_app.extensions
    breaker = ext["db_breaker"]
    if not breaker.closed():
        return None
    try:
        # A Core connection of its own: the ORM session's bookkeeping would only add to
        # every webhook (the script's version check keeps using the session).
        with ext["write_lock"], db.engine.begin() as connection:
            return work(connection)
    except SQLAlchemyError as exc:
        if not database_unavailable(exc):
            current_app.logger.exception("the database refused the facts of %s", request.path)
        elif is_lock_timeout(exc):  # busy, not down: this one waits, the next tries as usual
            current_app.logger.warning("database locked too long at %s", request.path)
        else:
            breaker.trip()
            current_app.logger.warning("database unavailable (%s)", getattr(exc, "orig", exc))
    return None


def is_lock_timeout(exc: SQLAlchemyError) -> bool:
    return "database is locked" in str(getattr(exc, "orig", exc))


def work(kind: str, recording_sid: str) -> Fact:
    """Background work for the worker, queued in the same transaction as the fact."""
    return Fact("job", {"kind": kind, "key": recording_sid, "max_attempts": current_app.config["JOB_MAX_ATTEMPTS"]})


def choice(step: int, kind: str, now: datetime, **values) -> Fact:
    return Fact("choice", {"call_sid": g.call_sid, "step": step, "kind": kind, "at": now, **values})


@bp.post("/voice")
def welcome():
    script = current_script()
    only = script.languages[0].code if len(script.languages) == 1 else None
    store([Fact("call", {"values": this_call(utcnow()), "language": only})])
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
    now = utcnow()
    store(
        [
            Fact("call", {"values": this_call(now), "language": lang.code}),
            choice(step, "language", now, language=lang.code),
        ]
    )
    return answer(twiml.topic_menu(script, base, lang.code, step + 1, 0))


@bp.post("/topic")
def choose_topic():
    script, base = current_script(), public_base_url()
    step, misses, digits = state("s"), state("m", 0), pressed()
    language = arg("l")
    if digits == "*":
        return answer(twiml.topic_menu(script, base, language, step, misses))
    topic = script.topic_for_digit(digits)
    if topic is None:
        if misses + 1 < MAX_MISSES:
            return answer(twiml.topic_menu(script, base, language, step, misses + 1, miss_notice(digits)))
        topic = script.general()
    now = utcnow()
    store([Fact("call", {"values": this_call(now)}), choice(step, "topic", now, topic=topic.slug)])
    if topic.stance:
        return answer(twiml.stance_menu(script, base, language, topic, step + 1, 0))
    return answer(twiml.record_comment(script, base, language, topic, None, step + 1))


@bp.post("/stance")
def choose_stance():
    script, base = current_script(), public_base_url()
    step, misses, digits = state("s"), state("m", 0), pressed()
    language, topic = arg("l"), script.topic(arg("t"))
    if topic is None:  # the topic was removed mid-call: take the comment all the same
        return answer(twiml.record_comment(script, base, language, script.general(), None, step + 1))
    stance = STANCES.get(digits)
    if stance is None:
        if digits == "*":
            return answer(twiml.stance_menu(script, base, language, topic, step, misses))
        if misses + 1 < MAX_MISSES:
            return answer(twiml.stance_menu(script, base, language, topic, step, misses + 1, miss_notice(digits)))
        return answer(twiml.record_comment(script, base, language, topic, None, step + 1))
    now = utcnow()
    store([Fact("call", {"values": this_call(now)}), choice(step, "stance", now, topic=topic.slug, stance=stance)])
    return answer(twiml.record_comment(script, base, language, topic, stance, step + 1))


def recording_sid() -> str | None:
    """`RecordingSid`, or the last path segment of `RecordingUrl` when Twilio omits it."""
    sid = request.form.get("RecordingSid", "").strip()
    if not sid:
        url = request.form.get("RecordingUrl", "").rstrip("/")
        sid = url.rsplit("/", 1)[-1] if "/Recordings/" in url else ""
    return sid[:64] or None


def seconds(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) < 9 else None


def clipped(name: str, length: int) -> str | None:
    value = request.form.get(name, "").strip()
    return value[:length] or None


def recording_fact(sid: str, now: datetime, script: LineScript, number: int | None) -> Fact:
    stance = arg("p")
    return Fact(
        "recording_action",
        {
            "recording_sid": sid,
            "number": number,
            "call_sid": g.call_sid,
            "at": now,
            "topic": arg("t") or None,
            "stance": stance if stance in STANCES.values() else None,
            "language": script.language(arg("l")).code,
            "step": as_step(arg("s")),
            "duration": seconds("RecordingDuration"),
            "finished_by": clipped("Digits", 16),
            "media_url": clipped("RecordingUrl", 512),
        },
    )


def store_comment(sid: str, now: datetime, script: LineScript) -> str | None:
    """Store the `<Record>` action's facts; return the comment's reference number (None when
    there is none to give: the database is away). With write-behind the number is one this
    process took in advance, carried by the fact; otherwise the one the row was given."""
    ext = current_app.extensions
    number = None
    if "write_behind" in ext:
        number = ext["comment_numbers"].for_recording(
            sid, lambda count: write_now(lambda connection: take_numbers(connection, count))
        )
    stored = store([Fact("call", {"values": this_call(now)}), recording_fact(sid, now, script, number)])
    if stored is not None:
        number = stored[sid]
    return reference_for(number) if number is not None else None


@bp.post("/recorded")
def comment_recorded():
    """The `<Record>` action: store the comment and read back its reference number (when the
    database is away, the comment is spooled and the caller is thanked without one)."""
    script, base = current_script(), public_base_url()
    step, language = state("s"), arg("l")
    topic, stance = script.topic(arg("t")), arg("p") or None
    digits, duration, sid = pressed(), seconds("RecordingDuration"), recording_sid()
    reference = None
    if sid:
        reference = store_comment(sid, utcnow(), script)
    if digits == "hangup":
        return answer(twiml.nothing())  # Twilio ignores it; the caller has gone
    if not duration:
        return answer(twiml.record_comment(script, base, language, topic, stance, step, 1, "no_comment"))
    return answer(twiml.comment_saved(script, base, language, step + 1, reference))


@bp.post("/no-comment")
def no_comment():
    """Twilio skipped the `<Record>` action: nothing was recorded. Offer it again, once."""
    script, base = current_script(), public_base_url()
    step, misses, language = state("s"), state("m", 0) + 1, arg("l")
    topic, stance = script.topic(arg("t")), arg("p") or None
    if misses < MAX_EMPTY_RECORDINGS:
        return answer(twiml.record_comment(script, base, language, topic, stance, step, misses, "no_comment"))
    return answer(twiml.another_menu(script, base, language, step + 1, 0, "no_comment"))


@bp.post("/next")
def another_topic():
    script, base = current_script(), public_base_url()
    step, misses, digits, language = state("s"), state("m", 0), pressed(), arg("l")
    if digits == "1":
        return answer(twiml.topic_menu(script, base, language, step + 1, 0))
    if digits in ("", "2") or misses + 1 >= MAX_MISSES:
        return answer(twiml.goodbye(script, language))
    return answer(twiml.another_menu(script, base, language, step, misses + 1, "invalid"))


@bp.post("/fallback")
def fallback():
    """The number's Fallback URL: Twilio comes here when a webhook failed (no answer, an error
    status, bad TwiML), with `ErrorCode`, `ErrorUrl` and the failed request's parameters.
    The failed request is answered here as the main path would have answered it: its facts
    are keyed as there (a fact the main path stored before failing is not stored twice), and
    the caller goes on where they were. If that fails too, or the failed URL is not one of
    ours, the caller can leave a general comment."""
    error_url = request.form.get("ErrorUrl") or ""
    current_app.logger.warning("fallback after error %s at %s", request.form.get("ErrorCode"), error_url)
    failed = urlparse(error_url)
    view = RESUMABLE.get(failed.path.rsplit("/twilio/", 1)[-1]) if "/twilio/" in failed.path else None
    if view is not None:
        g.url_args = MultiDict(parse_qsl(failed.query))
        try:
            return view()
        except HTTPException:
            pass
        except Exception:  # noqa: BLE001 - the failed path fails again: take a general comment
            db.session.rollback()
            current_app.logger.exception("the failed webhook %s failed again on the Fallback URL", failed.path)
        g.pop("url_args")
    return rescue(step_of(error_url))


@bp.post("/recording-status")
def recording_status():
    sid = recording_sid()
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now = utcnow()
    status = clipped("RecordingStatus", 16) or "completed"
    store(
        [
            Fact("call", {"values": this_call(now)}),
            Fact(
                "recording_status",
                {
                    "recording_sid": sid,
                    "call_sid": g.call_sid,
                    "at": now,
                    "status": status,
                    "duration": seconds("RecordingDuration"),
                    "media_url": clipped("RecordingUrl", 512),
                    "error_code": clipped("ErrorCode", 16),
                },
            ),
            *([work("download", sid)] if status == "completed" else []),
        ]
    )
    return answer(twiml.nothing())


@bp.post("/transcription")
def transcription():
    sid = recording_sid()
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now = utcnow()
    completed = request.form.get("TranscriptionStatus") == "completed"
    store(
        [
            Fact("call", {"values": this_call(now)}),
            Fact(
                "transcription",
                {
                    "recording_sid": sid,
                    "call_sid": g.call_sid,
                    "at": now,
                    "source": "twilio",
                    "transcription_sid": clipped("TranscriptionSid", 64),
                    "status": "completed" if completed else "failed",
                    "text": request.form.get("TranscriptionText") if completed else None,
                    "language": "en-US",
                },
            ),
            # Twilio could not transcribe it: no need to wait out the grace period for its transcript.
            *([] if completed else [work("transcribe", sid)]),
        ]
    )
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
    now = utcnow()
    store(
        [
            Fact(
                "call_status",
                {
                    "values": this_call(now),
                    "status": clipped("CallStatus", 16) or "completed",
                    "duration": seconds("CallDuration"),
                    "ended_at": callback_time(now),
                },
            )
        ]
    )
    return answer(twiml.nothing())


# The webhooks whose answer the caller hears, by the last part of their path: the Fallback
# URL answers a failed one of these as the main path would have.
RESUMABLE = {
    "voice": welcome,
    "language": choose_language,
    "topic": choose_topic,
    "stance": choose_stance,
    "recorded": comment_recorded,
    "no-comment": no_comment,
    "next": another_topic,
}
