"""Try the line: a keypad phone in the console that plays a call through the line's own webhooks.

The page (`/try`, staff signed in) asks this server for each request Twilio would make; the
server builds it as Twilio does (`ivr.caller.SimulatedCall`: exactly Twilio's parameters),
signs it with the account's Auth Token, adds the mark only it can make (ivr/trial.py: the
call is a test call, on the draft or the live script) and hands it to the line's own WSGI app
in this process (Flask's test client, in a fresh app context): the request goes through the
signature check and the real routes, and the page gets the TwiML back to play. The browser
never holds the Auth Token, and can only name URLs of the line's own webhooks.

A test call is stored like any other with `calls.is_test` set: never counted, in the inbox
only when asked, never in the JSON API. Its recording's audio stays in the browser (the
`<Record>` action and the recording status callback are sent with the length recorded; no
download is queued and no transcription callback is sent).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app, g, jsonify, make_response, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ivr.caller import CALLBACK_KINDS, FLOW_KINDS, Phone, Recording, SimulatedCall, TwilioAccount, kind_of, new_sid
from ivr.signature import public_base_url
from ivr.trial import TRIAL_HEADER, TRIAL_SCRIPTS, trial_mark
from models import db

from .console import console
from .errors import CSP

TRIAL_CALLER = Phone("+15005550006")  # Twilio's number for tests: never a resident's
CALL_TOKEN_HOURS = 4
MAX_DIGITS = 32
MAX_SECONDS = 4 * 3600


def call_tokens() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="try-the-line")


def line_base() -> str:
    """The line's base URL as Twilio would reach it (what the webhooks check signatures on)."""
    return public_base_url(current_app.config, request)


def simulated_call(call_sid: str) -> SimulatedCall:
    cfg = current_app.config
    account = TwilioAccount(cfg["TWILIO_ACCOUNT_SID"] or "AC" + "0" * 32, cfg["TWILIO_AUTH_TOKEN"])
    return SimulatedCall(account, line_base(), TRIAL_CALLER, call_sid=call_sid)


def send(call: SimulatedCall, script: str, twilio_request) -> tuple[int, str]:
    """Post a request Twilio would make to the line's own app, signed and marked; its answer."""
    app = current_app._get_current_object()
    base = line_base()
    path = twilio_request.url[len(base) :]
    headers = {**twilio_request.headers(), TRIAL_HEADER: trial_mark(app.config["SECRET_KEY"], script, call.sid)}
    db.session.commit()  # this request holds no transaction while the webhook writes
    with app.app_context():  # the webhook gets its own session and `g`
        response = app.test_client().post(path, data=twilio_request.params, headers=headers, base_url=base)
        return response.status_code, response.get_data(as_text=True)


def bad_request(message: str):
    response = jsonify(error=message)
    response.status_code = 400
    return response


def line_url(value, kinds: tuple[str, ...]) -> str | None:
    """`value` when it is a URL of one of the line's own webhooks of these kinds, else None."""
    if not isinstance(value, str) or len(value) > 2000:
        return None
    base = line_base()
    if not value.startswith(base + "/twilio/") or kind_of(value) not in kinds:
        return None
    parts = urlsplit(value)
    return value if parts.path.startswith(urlsplit(base).path + "/twilio/") and not parts.fragment else None


def answer(call: SimulatedCall, script: str, token: str, twilio_request):
    status, body = send(call, script, twilio_request)
    return jsonify(call=token, call_sid=call.sid, script=script, status=status, twiml=body)


@console.get("/try")
def try_line():
    """The keypad phone."""
    script = request.args.get("script")
    response = make_response(render_template("try.html", script=script if script in TRIAL_SCRIPTS else "draft"))
    # The comment recorded in the browser plays back from a blob: URL.
    response.headers["Content-Security-Policy"] = CSP.replace("media-src 'self'", "media-src 'self' blob:")
    return response


@console.post("/try/calls")
def start_trial_call():
    """Dial the line: JSON `{"script": "draft"|"live"}`; answers the voice webhook's TwiML and
    the call's token, which the page sends back with every later step."""
    payload = request.get_json(silent=True) or {}
    script = payload.get("script") if isinstance(payload, dict) else None
    if script not in TRIAL_SCRIPTS:
        return bad_request("script must be draft or live")
    call = simulated_call(new_sid("CA"))
    token = call_tokens().dumps({"sid": call.sid, "script": script, "user": g.user.id})
    return answer(call, script, token, call.voice())


@console.post("/try/calls/next")
def trial_call_step():
    """The call's next request, as Twilio would make it, from JSON `{"call": token, "kind": ...}`:

    - `gather`: `url` (the `<Gather>` action), `digits` pressed;
    - `redirect`: `url` (a `<Redirect>` Twilio follows);
    - `record`: `url` (the `<Record>` action), `seconds` recorded, `digits` that ended it (`#`,
      or `hangup`), and `status_callback` (the `<Record>`'s recordingStatusCallback), which is
      then sent too;
    - `hangup`: `seconds` the call lasted: the number's status callback, `completed`.

    400 with `error` for anything else (a URL not of the line's webhooks, a stale token)."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return bad_request("send a JSON object")
    try:
        claims = call_tokens().loads(str(payload.get("call", "")), max_age=CALL_TOKEN_HOURS * 3600)
    except BadSignature:
        return bad_request("this is not a call this page started (or it is too old): call again")
    if claims.get("user") != g.user.id:
        abort(403, description="This call was started by someone else.")
    script, call = claims["script"], simulated_call(claims["sid"])
    token, kind = payload["call"], payload.get("kind")
    digits = payload.get("digits", "")
    if not isinstance(digits, str) or len(digits) > MAX_DIGITS or not all(c in "0123456789*#" for c in digits):
        if digits != "hangup":
            return bad_request("digits must be keypad keys")
    seconds = payload.get("seconds", 0)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_SECONDS:
        return bad_request("seconds must be a whole number of seconds")
    if kind == "hangup":
        return answer(call, script, token, call.call_status(seconds))
    url = line_url(payload.get("url"), FLOW_KINDS)
    if url is None:
        return bad_request("url must be one of the line's own webhook URLs from its last answer")
    if kind == "gather":
        return answer(call, script, token, call.gather(url, digits))
    if kind == "redirect":
        return answer(call, script, token, call.redirect(url))
    if kind != "record":
        return bad_request("kind must be gather, redirect, record or hangup")
    recording = Recording(new_sid("RE"), seconds, status="completed" if seconds else "absent")
    status, body = send(call, script, call.record_action(url, recording, digits or "#"))
    callback = line_url(payload.get("status_callback"), CALLBACK_KINDS)
    if callback is not None and status == 200:
        send(call, script, call.recording_status(callback, recording))
    return jsonify(call=token, call_sid=call.sid, script=script, status=status, twiml=body)
