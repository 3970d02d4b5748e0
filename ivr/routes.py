"""Twilio's webhooks: check, record the fact, answer.

Each route reads Twilio's form, works out the reply from the URL's state (a pure function,
cached), and stores its facts (facts/): journalled for the write-behind writer
(facts/journal.py), or with `WRITE_BEHIND` off written in one transaction before the reply. When
the database cannot take them, the facts go to the durable spool (facts/spool.py), and the
caller hears the next prompt all the same. The `<Record>` action reads back the comment's
reference number: with write-behind, a number this process took in advance (facts/numbers.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, parse_qsl, urlparse

from flask import Blueprint, Flask, Request, Response, abort, current_app, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from facts import Fact, WritePath, write_path
from models import db, utcnow
from models.blocklist import block_list
from models.callbacks import CallbackKeyMissing, seal_number
from models.calls import call_values, is_withheld
from models.jobs import enqueue
from models.line import LineScript, TopicScript, is_zip, line_script, read_script_file, script_from_file
from models.prompts import CODE_DIGITS, PromptCode, code_for_call, line_text, note_take, redeem_code, wrong_codes_since
from models.recordings import reference_for

from . import twiml
from .menu import (
    ANOTHER_TOPIC_KEY,
    END_CALL_KEY,
    HANG_UP,
    MAX_MISSES,
    MAX_ZIP_TRIES,
    REPEAT_KEY,
    RESCUE_STEP,
    STAFF_STARS,
    STANCE_KEYS,
)
from .signature import public_base_url, require_twilio_signature
from .trial import TRIAL_HEADER, trial_script

bp = Blueprint("ivr", __name__, url_prefix="/twilio")


class Webhook:
    """One webhook as its handlers read it, taken from Flask's context once.

    A context-local lookup (`request`, `g`, `current_app`) costs about a microsecond, and the
    handlers made some forty per webhook; they now make a few. The form is a plain dict of
    each field's first value: a `MultiDict` raises (and catches) an exception for each absent
    field asked for. `args` are the values the previous reply put in this URL (on the Fallback
    URL, those of the URL that failed)."""

    __slots__ = ("app", "config", "facts", "form", "args", "call_sid", "base", "trial")

    def __init__(self, app: Flask, request: Request) -> None:
        self.app, self.config = app, app.config
        self.facts: WritePath = write_path(app)
        self.form: dict[str, str] = request.form.to_dict()
        self.args: MultiDict = request.args
        self.call_sid: str | None = self.form.get("CallSid")
        self.base = public_base_url(self.config, request)
        self.trial: str | None = None  # "draft" or "live" on a "Try the line" call (ivr/trial.py)

    def arg(self, name: str) -> str | None:
        return self.args.get(name)

    def state(self, name: str, default: int | None = None) -> int:
        """An integer the previous reply put in this URL (the step, the misses)."""
        value = self.args.get(name)
        if value is None and default is not None:
            return default
        if value is None or not value.isdigit() or len(value) > 6:
            abort(400, description=f"The webhook URL lacks a valid {name!r}.")
        return int(value)

    def pressed(self) -> str:
        return self.form.get("Digits", "").strip()

    def seconds(self, name: str) -> int | None:
        value = self.form.get(name, "").strip()
        return int(value) if value.isdigit() and len(value) < 9 else None

    def clipped(self, name: str, length: int) -> str | None:
        value = self.form.get(name, "").strip()
        return value[:length] or None

    def call(self, now: datetime) -> dict:
        cfg = self.config
        values = call_values(self.form, mode=cfg["CALLER_NUMBERS"], key=cfg["CALLER_HASH_KEY"], seen_at=now)
        if self.trial:
            values["is_test"] = True
        return values

    def script(self) -> LineScript:
        """The live script; the draft for a "Try the line" call on the draft."""
        cache = line_script(self.app)
        return cache.get(db.session, database_ok=self.facts.breaker.closed(), draft=self.trial == "draft")


def new_webhook() -> Webhook:
    """Make this request's `Webhook` and keep it for its handlers."""
    g.webhook = made = Webhook(current_app._get_current_object(), request._get_current_object())
    return made


def webhook() -> Webhook:
    """This request's `Webhook` (made by `before_webhook`; made here if that failed first)."""
    return g.get("webhook") or new_webhook()


@bp.before_request
def before_webhook() -> None:
    """Refuse what Twilio did not sign (403), then what names no call (400); name the call for
    every log line the webhook writes; and look for spooled facts to replay. One hook: each
    costs Flask a dispatch on every webhook (ivr/metrics.py measures them, outside Flask)."""
    w = new_webhook()
    g.call_sid = w.call_sid
    require_twilio_signature(w.config, request._get_current_object(), w.base)
    if not w.call_sid:
        abort(400, description="CallSid is required.")
    w.trial = trial_script(w.config["SECRET_KEY"], w.call_sid, request.headers.get(TRIAL_HEADER))
    w.facts.replayer.look()


@bp.errorhandler(Exception)
def answer_despite_error(error: Exception):
    """No caller ever hears an application error: anything unexpected in a webhook is logged
    and the caller is asked for a general comment instead. HTTP errors (403, 400, 405, 413)
    keep their status: only a request Twilio would never send gets one."""
    if isinstance(error, HTTPException):
        return Response(f"{error.code} {error.name}: {error.description}\n", error.code, mimetype="text/plain")
    current_app.logger.exception("webhook %s failed", request.path)
    return rescue(webhook(), step_of(request.url))


def as_step(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) <= 6 else 0


def step_of(url: str | None) -> int:
    """The step an action URL of ours carries (0 for any other URL)."""
    return as_step(parse_qs(urlparse(url or "").query).get("s", [None])[0])


def rescue(w: Webhook, failed_step: int) -> Response:
    """Ask for a general comment, counting the general topic as chosen. Used when a webhook
    failed (here or, via the Fallback URL, as Twilio saw it)."""
    try:
        script = w.script()
    except Exception:  # noqa: BLE001 - the rescue must not depend on what just failed
        w.app.logger.exception("the line's script could not be read; using the file's")
        script = script_from_file(read_script_file(w.config["LINE_CONFIG"]))
    language = script.language(w.arg("l") or language_of(w.form.get("ErrorUrl"))).code
    general, step = script.general(), RESCUE_STEP + failed_step
    now = utcnow()
    call = w.call(now)
    store(
        w,
        [
            Fact("call", {"values": call}),
            Fact(
                "choice",
                {"call_sid": call["call_sid"], "step": step, "kind": "topic", "at": now, "topic": general.slug},
            ),
        ],
    )
    return answer(twiml.record_comment(script, w.base, language, general, None, step + 1, 0, "trouble"))


def language_of(url: str | None) -> str | None:
    return parse_qs(urlparse(url or "").query).get("l", [None])[0]


def answer(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def miss_notice(digits: str) -> str:
    return "invalid" if digits else "no_input"


def store(w: Webhook, facts: list[Fact]) -> dict[str, int] | None:
    """Hand one webhook's facts to the write path (facts/): the number of each recording they
    name when they were written now, else None. The caller is answered either way."""
    return w.facts.submit(facts)


def work(w: Webhook, kind: str, recording_sid: str) -> Fact:
    """Background work for the worker, queued in the same transaction as the fact."""
    return Fact("job", {"kind": kind, "key": recording_sid, "max_attempts": w.config["JOB_MAX_ATTEMPTS"]})


def choice(w: Webhook, step: int, kind: str, now: datetime, **values) -> Fact:
    return Fact("choice", {"call_sid": w.call_sid, "step": step, "kind": kind, "at": now, **values})


@bp.post("/voice")
def welcome():
    w = webhook()
    script = w.script()
    call = w.call(utcnow())
    if is_blocked(w):  # stored and counted as blocked; the caller hears why the line ends
        call["blocked"] = True
        store(w, [Fact("call", {"values": call})])
        return answer(twiml.blocked(script, w.base))
    only = script.languages[0].code if len(script.languages) == 1 else None
    store(w, [Fact("call", {"values": call, "language": only})])
    return answer(twiml.welcome(script, w.base))


def is_blocked(w: Webhook) -> bool:
    """Whether `From` is on the block list, as this process's cache of it says (refreshed
    every BLOCK_LIST_CACHE_SECONDS; models/blocklist.py)."""
    cache = block_list(w.app)
    return cache.is_blocked(
        db.session, w.config["CALLER_HASH_KEY"], w.form.get("From"), database_ok=w.facts.breaker.closed()
    )


@bp.post("/language")
def choose_language():
    w = webhook()
    script, base = w.script(), w.base
    step, misses, digits = w.state("s"), w.state("m", 0), w.pressed()
    if digits == REPEAT_KEY:
        stars = min(w.state("k", 0) + 1, STAFF_STARS)
        return answer(twiml.language_menu(script, base, step, misses, stars=stars))
    if len(digits) == CODE_DIGITS and w.state("k", 0) >= STAFF_STARS and digits.isdigit():
        code = redeem_staff_code(w, digits)
        if code is not None:  # staff recording a prompt: a test call, never counted
            store(w, [Fact("call", {"values": {**w.call(utcnow()), "is_test": True}})])
            text = line_text(script, code.language, code.key) or code.key
            seconds = int(w.config["PROMPT_MAX_SECONDS"])
            return answer(twiml.record_prompt(script, base, code.language, code.key, text, code.id, step, seconds))
    lang = script.language_for_digit(digits)
    if lang is None:
        if misses + 1 < MAX_MISSES:
            return answer(twiml.language_menu(script, base, step, misses + 1, miss_notice(digits)))
        lang = script.languages[0]
    now = utcnow()
    store(
        w,
        [
            Fact("call", {"values": w.call(now), "language": lang.code}),
            choice(w, step, "language", now, language=lang.code),
        ],
    )
    if script.zip_step == "after_language":
        return answer(twiml.zip_menu(script, base, lang.code, step + 1, 0))
    return answer(twiml.topic_menu(script, base, lang.code, step + 1, 0))


@bp.post("/topic")
def choose_topic():
    w = webhook()
    script, base = w.script(), w.base
    step, misses, digits = w.state("s"), w.state("m", 0), w.pressed()
    language = w.arg("l")
    if digits == REPEAT_KEY:
        return answer(twiml.topic_menu(script, base, language, step, misses))
    topic = script.topic_for_digit(digits)
    if topic is None:
        if misses + 1 < MAX_MISSES:
            return answer(twiml.topic_menu(script, base, language, step, misses + 1, miss_notice(digits)))
        topic = script.general()
    now = utcnow()
    store(w, [Fact("call", {"values": w.call(now)}), choice(w, step, "topic", now, topic=topic.slug)])
    if script.zip_step == "after_topic" and step == script.first_topic_step:  # the call's first topic
        return answer(twiml.zip_menu(script, base, language, step + 1, 0, topic.slug))
    return answer(ask_about(script, base, language, topic, step + 1))


def ask_about(script: LineScript, base: str, language: str | None, topic: TopicScript, step: int) -> str:
    """What follows the choice of `topic`: its position menu, or the recording prompt."""
    if topic.stance:
        return twiml.stance_menu(script, base, language, topic, step, 0)
    return twiml.record_comment(script, base, language, topic, None, step)


@bp.post("/zip")
def enter_zip():
    """The ZIP code step. Five digits (not 00000) are the call's entered ZIP code; a short or
    unreadable entry is asked for once more; star alone repeats the prompt, as on every menu;
    pound alone or silence (Twilio's redirect, with no `Digits`) skips it. Then the call goes
    on as it would have: to the topics, or to the topic chosen just before. Nothing here stops
    a comment."""
    w = webhook()
    script, base = w.script(), w.base
    step, misses, digits, language = w.state("s"), w.state("m", 0), w.pressed(), w.arg("l")
    slug = w.arg("t")
    if digits == REPEAT_KEY:
        return answer(twiml.zip_menu(script, base, language, step, misses, slug))
    if is_zip(digits):
        now = utcnow()
        store(w, [Fact("call", {"values": {**w.call(now), "entered_zip": digits, "zip_step": step}})])
    elif digits and misses + 1 < MAX_ZIP_TRIES:
        return answer(twiml.zip_menu(script, base, language, step, misses + 1, slug, "zip_retry"))
    if not slug:
        return answer(twiml.topic_menu(script, base, language, step + 1, 0))
    topic = script.topic(slug) or script.general()  # a topic removed mid-call: a general comment
    return answer(ask_about(script, base, language, topic, step + 1))


@bp.post("/stance")
def choose_stance():
    w = webhook()
    script, base = w.script(), w.base
    step, misses, digits = w.state("s"), w.state("m", 0), w.pressed()
    language, topic = w.arg("l"), script.topic(w.arg("t"))
    if topic is None:  # the topic was removed mid-call: take the comment all the same
        return answer(twiml.record_comment(script, base, language, script.general(), None, step + 1))
    stance = STANCE_KEYS.get(digits)
    if stance is None:
        if digits == REPEAT_KEY:
            return answer(twiml.stance_menu(script, base, language, topic, step, misses))
        if misses + 1 < MAX_MISSES:
            return answer(twiml.stance_menu(script, base, language, topic, step, misses + 1, miss_notice(digits)))
        return answer(twiml.record_comment(script, base, language, topic, None, step + 1))
    now = utcnow()
    store(
        w,
        [Fact("call", {"values": w.call(now)}), choice(w, step, "stance", now, topic=topic.slug, stance=stance)],
    )
    return answer(twiml.record_comment(script, base, language, topic, stance, step + 1))


def recording_sid(w: Webhook) -> str | None:
    """`RecordingSid`, or the last path segment of `RecordingUrl` when Twilio omits it."""
    sid = w.form.get("RecordingSid", "").strip()
    if not sid:
        url = w.form.get("RecordingUrl", "").rstrip("/")
        sid = url.rsplit("/", 1)[-1] if "/Recordings/" in url else ""
    return sid[:64] or None


def recording_fact(w: Webhook, sid: str, now: datetime, script: LineScript, number: int | None) -> Fact:
    stance = w.arg("p")
    return Fact(
        "recording_action",
        {
            "recording_sid": sid,
            "number": number,
            "call_sid": w.call_sid,
            "at": now,
            "topic": w.arg("t") or None,
            "stance": stance if stance in STANCE_KEYS.values() else None,
            "language": script.language(w.arg("l")).code,
            "step": as_step(w.arg("s")),
            "duration": w.seconds("RecordingDuration"),
            "finished_by": w.clipped("Digits", 16),
            "media_url": w.clipped("RecordingUrl", 512),
        },
    )


def store_comment(w: Webhook, sid: str, now: datetime, script: LineScript) -> str | None:
    """Store the `<Record>` action's facts; return the comment's reference number (None when
    there is none to give: the database is away). With write-behind the number is one this
    process took in advance, carried by the fact; otherwise the one the row was given."""
    number = w.facts.take_number(sid)
    stored = store(w, [Fact("call", {"values": w.call(now)}), recording_fact(w, sid, now, script, number)])
    if stored is not None:
        number = stored[sid]
    return reference_for(number) if number is not None else None


@bp.post("/recorded")
def comment_recorded():
    """The `<Record>` action: store the comment and read back its reference number (when the
    database is away, the comment is spooled and the caller is thanked without one)."""
    w = webhook()
    script, base = w.script(), w.base
    step, language = w.state("s"), w.arg("l")
    topic, stance = script.topic(w.arg("t")), w.arg("p") or None
    digits, duration, sid = w.pressed(), w.seconds("RecordingDuration"), recording_sid(w)
    reference = None
    if sid:
        reference = store_comment(w, sid, utcnow(), script)
    if digits == HANG_UP:
        return answer(twiml.nothing())  # Twilio ignores it; the caller has gone
    if not duration:  # nothing heard: offered once more, as when Twilio skips the action
        return answer(twiml.after_empty_recording(script, base, language, topic, stance, step, w.state("m", 0) + 1))
    if sid and topic is not None and topic.callback and offers_callback(w):
        return answer(twiml.comment_saved_offer_callback(script, base, language, step + 1, reference, topic.slug, sid))
    return answer(twiml.comment_saved(script, base, language, step + 1, reference))


def offers_callback(w: Webhook) -> bool:
    """A call-back can be offered: the caller's number is known, and there is a key to keep it
    with (production without CALLBACK_KEY offers none, and says so in the log)."""
    if is_withheld(w.form.get("From")):
        return False
    if not w.config["CALLBACK_KEY"]:
        w.app.logger.warning("a topic offers call-backs but CALLBACK_KEY is not set: not offered")
        return False
    return True


@bp.post("/callback")
def callback_requested():
    """After a comment on a topic that offers it: 1 asks for a call back. The number is
    sealed here (models/callbacks.py), so no journal or spool holds it in the clear. Any
    other key, or none, goes on to the choice of another topic."""
    w = webhook()
    script, base = w.script(), w.base
    step, language, digits = w.state("s"), w.arg("l"), w.pressed()
    topic = script.topic(w.arg("t"))
    if digits != "1":
        return answer(twiml.another_menu(script, base, language, step + 1, 0))
    now = utcnow()
    try:
        sealed = seal_number(w.config["CALLBACK_KEY"], (w.form.get("From") or "").strip())
    except CallbackKeyMissing:
        sealed = None
    request_fact = Fact(
        "callback",
        {
            "call_sid": w.call_sid,
            "step": step,
            "at": now,
            "topic": topic.slug if topic else None,
            "recording_sid": (w.arg("r") or "")[:64] or None,
            "number_sealed": sealed,
        },
    )
    store(w, [Fact("call", {"values": w.call(now)}), request_fact])
    code = script.language(language).code
    return answer(
        twiml.another_menu(script, base, code, step + 1, 0, lead=(twiml.line(script, code, "callback_taken"),))
    )


@bp.post("/no-comment")
def no_comment():
    """Twilio skipped the `<Record>` action: nothing was recorded. Offer it again, once."""
    w = webhook()
    script, base = w.script(), w.base
    step, misses, language = w.state("s"), w.state("m", 0) + 1, w.arg("l")
    topic, stance = script.topic(w.arg("t")), w.arg("p") or None
    return answer(twiml.after_empty_recording(script, base, language, topic, stance, step, misses))


@bp.post("/next")
def another_topic():
    w = webhook()
    script, base = w.script(), w.base
    step, misses, digits, language = w.state("s"), w.state("m", 0), w.pressed(), w.arg("l")
    if digits == ANOTHER_TOPIC_KEY:
        return answer(twiml.topic_menu(script, base, language, step + 1, 0))
    if digits in ("", END_CALL_KEY) or misses + 1 >= MAX_MISSES:
        return answer(twiml.goodbye(script, base, language))
    return answer(twiml.another_menu(script, base, language, step, misses + 1, "invalid"))


@bp.post("/fallback")
def fallback():
    """The number's Fallback URL: Twilio comes here when a webhook failed (no answer, an error
    status, bad TwiML), with `ErrorCode`, `ErrorUrl` and the failed request's parameters.
    The failed request is answered here as the main path would have answered it: its facts
    are keyed as there (a fact the main path stored before failing is not stored twice), and
    the caller goes on where they were. If that fails too, or the failed URL is not one of
    ours, the caller can leave a general comment."""
    w = webhook()
    error_url = w.form.get("ErrorUrl") or ""
    w.app.logger.warning("fallback after error %s at %s", w.form.get("ErrorCode"), error_url)
    failed = urlparse(error_url)
    view = RESUMABLE.get(failed.path.rsplit("/twilio/", 1)[-1]) if "/twilio/" in failed.path else None
    if view is not None:
        own_args, w.args = w.args, MultiDict(parse_qsl(failed.query))
        try:
            return view()
        except HTTPException:
            pass
        except Exception:  # noqa: BLE001 - the failed path fails again: take a general comment
            db.session.rollback()
            w.app.logger.exception("the failed webhook %s failed again on the Fallback URL", failed.path)
        w.args = own_args
    return rescue(w, step_of(error_url))


@bp.post("/recording-status")
def recording_status():
    w = webhook()
    sid = recording_sid(w)
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now = utcnow()
    status = w.clipped("RecordingStatus", 16) or "completed"
    store(
        w,
        [
            Fact("call", {"values": w.call(now)}),
            Fact(
                "recording_status",
                {
                    "recording_sid": sid,
                    "call_sid": w.call_sid,
                    "at": now,
                    "status": status,
                    "duration": w.seconds("RecordingDuration"),
                    "media_url": w.clipped("RecordingUrl", 512),
                    "error_code": w.clipped("ErrorCode", 16),
                },
            ),
            # A test call's audio stays in the browser that played it: there is none to fetch.
            *([work(w, "download", sid)] if status == "completed" and not w.trial else []),
        ],
    )
    return answer(twiml.nothing())


@bp.post("/transcription")
def transcription():
    w = webhook()
    sid = recording_sid(w)
    if sid is None:
        abort(400, description="RecordingSid is required.")
    now = utcnow()
    completed = w.form.get("TranscriptionStatus") == "completed"
    store(
        w,
        [
            Fact("call", {"values": w.call(now)}),
            Fact(
                "transcription",
                {
                    "recording_sid": sid,
                    "call_sid": w.call_sid,
                    "at": now,
                    "source": "twilio",
                    "transcription_sid": w.clipped("TranscriptionSid", 64),
                    "status": "completed" if completed else "failed",
                    "text": w.form.get("TranscriptionText") if completed else None,
                    "language": "en-US",
                    "engine": "twilio",
                },
            ),
            # Twilio could not transcribe it: no need to wait out the grace period for its transcript.
            *([] if completed or w.trial else [work(w, "transcribe", sid)]),
        ],
    )
    return answer(twiml.nothing())


@bp.post("/status")
def call_status():
    w = webhook()
    now = utcnow()
    store(
        w,
        [
            Fact(
                "call_status",
                {
                    "values": w.call(now),
                    "status": w.clipped("CallStatus", 16) or "completed",
                    "duration": w.seconds("CallDuration"),
                    "ended_at": callback_time(w, now),
                },
            )
        ],
    )
    return answer(twiml.nothing())


def callback_time(w: Webhook, now: datetime) -> datetime:
    """The status callback's `Timestamp` (RFC 2822) as naive UTC, or now."""
    try:
        stamp = parsedate_to_datetime(w.form["Timestamp"])
    except (KeyError, TypeError, ValueError):
        return now
    return stamp if stamp.tzinfo is None else stamp.astimezone(UTC).replace(tzinfo=None)


# --- recording a prompt by phone ------------------------------------------------------------------
#
# Staff press star twice at the language menu, then a one-time code made in the console
# (models/prompts.py). These webhooks read and write the database directly: they are rare, and
# a code must be checked (and used up) before the answer. Twilio's signature on each request
# (and its CallSid, which must be the one that redeemed the code) is what keeps anyone else out.


def redeem_staff_code(w: Webhook, digits: str) -> PromptCode | None:
    """The code typed at the language menu, now used up, or None: it is wrong, expired or
    used, or the line has had PROMPT_WRONG_CODES_PER_HOUR wrong codes in the last hour (then
    every code is refused). A wrong code is counted, and the caller hears a wrong key."""
    now = utcnow()
    session = db.session
    refused = wrong_codes_since(session, now - timedelta(hours=1)) >= w.config["PROMPT_WRONG_CODES_PER_HOUR"]
    code = redeem_code(session, w.config["SECRET_KEY"], digits, w.call_sid, now, refuse=refused)
    session.commit()
    if code is None:
        w.app.logger.warning("a wrong code to record a prompt was entered%s", " (codes refused)" if refused else "")
    else:
        w.app.logger.info("code %s redeemed to record prompt %s %s", code.id, code.language, code.key)
    return code


def prompt_code_of_call(w: Webhook) -> PromptCode:
    """The code this call redeemed (the URL's `c`); 400 when it is not this call's."""
    code = code_for_call(db.session, w.state("c"), w.call_sid)
    if code is None:
        abort(400, description="This call entered no such code.")
    return code


@bp.post("/prompt-recorded")
def prompt_recorded():
    """The prompt's `<Record>` action: keep the take (the status callback fetches it)."""
    w = webhook()
    code = prompt_code_of_call(w)
    sid = recording_sid(w)
    if sid:
        note_take(db.session, code, sid, w.call_sid, w.clipped("RecordingUrl", 512), w.seconds("RecordingDuration"))
        db.session.commit()
    return answer(twiml.prompt_taken(w.script()))


@bp.post("/prompt-recording-status")
def prompt_recording_status():
    """The prompt's recording status callback: a completed take is queued for the worker to
    fetch (jobs/prompts.py), as comments are; an absent or failed one is marked so."""
    w = webhook()
    code = prompt_code_of_call(w)
    sid = recording_sid(w)
    if sid is None:
        abort(400, description="RecordingSid is required.")
    take = note_take(db.session, code, sid, w.call_sid, w.clipped("RecordingUrl", 512), w.seconds("RecordingDuration"))
    status = w.clipped("RecordingStatus", 16) or "completed"
    if status == "completed":
        enqueue(db.session, "fetch_prompt", sid, max_attempts=w.config["JOB_MAX_ATTEMPTS"])
    elif take.state == "waiting":
        take.state, take.error = "failed", f"Twilio says the recording is {status}: record it again"
    db.session.commit()
    return answer(twiml.nothing())


# The webhooks whose answer the caller hears, by the last part of their path: the Fallback
# URL answers a failed one of these as the main path would have.
RESUMABLE = {
    "voice": welcome,
    "language": choose_language,
    "topic": choose_topic,
    "stance": choose_stance,
    "zip": enter_zip,
    "recorded": comment_recorded,
    "no-comment": no_comment,
    "next": another_topic,
    "callback": callback_requested,
}
