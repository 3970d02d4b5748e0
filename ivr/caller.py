"""The simulated caller: a call played the way Twilio plays it, for the tests, the benchmark,
`flask line call` and the console's "Try the line" (staff/trial.py, which sends each request
its phone page asks for).

Nothing here does I/O. Three layers:

- `SimulatedCall` makes each request Twilio makes for one call, with exactly the parameters
  Twilio sends for it and signed as Twilio signs it (`X-Twilio-Signature`): the voice webhook
  and the `<Gather>` actions (the call's parameters and `Digits`), the `<Record>` action
  (`RecordingUrl`, `RecordingDuration`, `RecordingSid`, `Digits`), the recording status and
  transcription callbacks (which name the call only by its `CallSid`: no `From`), the call
  status callback and the Fallback URL request. The tests that take a call step by step use it
  directly.
- `CallPlayer` plays a whole call: a state machine that says which request to send next
  (`next_request()`) and reads the TwiML reply (`answer()`). A `Mind` decides what the caller
  and Twilio do at each point (keys, silence, hang-ups, comments, callbacks early, late or
  never, retries, a webhook Twilio saw fail). From the line's script (`LineFacts`) and the menu
  rules (ivr/menu.py) the player predicts which menu every reply must be, raising
  `UnexpectedReply` when it is another, and keeps its own record of what was played
  (`PlayedCall`): choices, positions, comments, references heard. ivr/oracle.py turns such
  records into the counts the API must show.
- `play()` and `play_async()` drive a player over any transport: the Flask test client,
  `requests` to a served line, or the benchmark's aiohttp session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from config import TWILIO_API
from models.line import LineScript, is_zip, read_script_file, script_from_file

from .menu import (
    ANOTHER_TOPIC_KEY,
    END_CALL_KEY,
    FINISH_KEY,
    HANG_UP,
    MAX_EMPTY_RECORDINGS,
    MAX_MISSES,
    MAX_ZIP_TRIES,
    NO_KEY,
    REPEAT_KEY,
    STANCE_KEYS,
    ZIP_FINISH_KEY,
    ZIP_KEYS,
)

API_VERSION = "2010-04-01"
# What each kind of request is, by the last part of the line's path (`status` is the call
# status callback; `fallback` the number's Fallback URL).
FLOW_KINDS = ("voice", "language", "topic", "stance", "zip", "recorded", "no-comment", "next", "callback")
CALLBACK_KINDS = ("recording-status", "transcription", "status")
KINDS = (*FLOW_KINDS, *CALLBACK_KINDS, "fallback")
# Languages Twilio's own transcription takes (`<Record transcribe>`).
TWILIO_TRANSCRIBES = ("en-US",)
# Twilio's `ErrorCode` on a Fallback URL request: an HTTP error answer, or no answer at all.
HTTP_RETRIEVAL_FAILURE = "11200"
HTTP_CONNECTION_FAILURE = "11205"
# `ErrorCode` on a recording status callback: too short to keep (absent), or failed.
RECORDING_ERRORS = {"absent": "16101", "failed": "16103"}
# The values a call from a withheld number gets in `From` (the ones this caller uses).
WITHHELD = ("anonymous", "unknown", "restricted", "+266696687")
# Twilio's SHAKEN/STIR verdicts (`StirVerstat` on the voice requests): a caller whose number
# failed validation, or had none, sends `Phone(..., verstat=UNVERIFIED)`.
VERIFIED, UNVERIFIED, NO_VALIDATION = "TN-Validation-Passed-A", "TN-Validation-Failed-B", "No-TN-Validation"
# At the call-back offer after a comment: the key that asks for a call back.
CALLBACK_KEY = "1"
# A reference number as the line reads it back: digit by digit.
REFERENCE = re.compile(r"\d(?:, \d){6,7}")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped id: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def sign(token: str | bytes, url: str, params: dict[str, str]) -> str:
    """`X-Twilio-Signature` as Twilio computes it: HMAC-SHA1 with the Auth Token over the URL
    followed by each POST parameter's name and value, sorted by name; base64."""
    key = token.encode() if isinstance(token, str) else token
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(key, data.encode(), hashlib.sha1).digest()).decode()


def twilio_time() -> str:
    """Now, as Twilio writes a time in callbacks (`Timestamp`, `RecordingStartTime`): RFC 2822."""
    return formatdate(usegmt=False).replace("-0000", "+0000")


@dataclass(frozen=True)
class TwilioAccount:
    """Twilio's side of the line: the account that signs the webhooks, and where its REST API
    (and so each recording's media) is."""

    account_sid: str
    auth_token: str
    api_base: str = TWILIO_API

    @property
    def account_url(self) -> str:
        return f"{self.api_base.rstrip('/')}/{API_VERSION}/Accounts/{self.account_sid}"

    def recording_url(self, recording_sid: str) -> str:
        return f"{self.account_url}/Recordings/{recording_sid}"

    def transcription_url(self, transcription_sid: str) -> str:
        return f"{self.account_url}/Transcriptions/{transcription_sid}"


@dataclass(frozen=True)
class Phone:
    """One end of a call as Twilio describes it: the number, and where it is when known."""

    number: str
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    name: str | None = None  # Twilio's CNAM lookup, when the number has it enabled
    verstat: str | None = None  # Twilio's `StirVerstat` for this number (SHAKEN/STIR), when sent

    @property
    def withheld(self) -> bool:
        return self.number.strip().lower() in WITHHELD

    def place(self, prefix: str) -> dict[str, str]:
        """`{prefix}City`, `{prefix}State`, `{prefix}Zip`, `{prefix}Country`, the ones known."""
        known = (("City", self.city), ("State", self.state), ("Zip", self.zip), ("Country", self.country))
        return {prefix + name: value for name, value in known if value}


THE_LINE = Phone("+15035550199", "PORTLAND", "OR", "97201", "US")


@dataclass(frozen=True)
class Request:
    """One request Twilio makes: a POST of `params` to `url`, signed with the account's token.
    `kind` names the webhook (see KINDS); `note` is what the player learns when it is answered."""

    kind: str
    url: str
    params: dict[str, str]
    account: TwilioAccount
    note: object = None
    failed: Request | None = None  # on a Fallback URL request: the request that failed

    @property
    def is_callback(self) -> bool:
        return self.kind in CALLBACK_KINDS

    @property
    def signature(self) -> str:
        return sign(self.account.auth_token, self.url, self.params)

    def headers(self) -> dict[str, str]:
        return {"X-Twilio-Signature": self.signature}

    def moved_to(self, base: str) -> Request:
        """The same request to another instance of the line (`base` is its scheme and host)."""
        parts = urlsplit(self.url)
        url = base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        return replace(self, url=url)


@dataclass(frozen=True)
class Response:
    """What the transport got: the status and body, or no answer (`status` None; `reached`
    False when the connection was refused, so that the line never saw the request)."""

    status: int | None
    body: str = ""
    reached: bool = True

    @classmethod
    def refused(cls) -> Response:
        return cls(None, "", reached=False)

    @classmethod
    def dropped(cls) -> Response:
        return cls(None, "", reached=True)


class UnexpectedReply(Exception):
    """The line answered something a caller following its script could not have heard."""


class Reply:
    """A TwiML reply, parsed: what a caller hears and what Twilio does next."""

    def __init__(self, body: str) -> None:
        self.body = body
        try:
            self.root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise UnexpectedReply(f"not XML ({exc}): {body[:200]!r}") from None
        if self.root.tag != "Response":
            raise UnexpectedReply(f"TwiML's root is {self.root.tag!r}, not Response: {body[:200]!r}")

    @property
    def said(self) -> str:
        return " ".join(el.text or "" for el in self.root.iter("Say"))

    def says(self) -> list[ET.Element]:
        return list(self.root.iter("Say"))

    def plays(self) -> list[str]:
        """The audio URLs of the `<Play>`s, in order (recorded prompts)."""
        return [el.text or "" for el in self.root.iter("Play")]

    @property
    def gather(self) -> ET.Element | None:
        return self.root.find("Gather")

    @property
    def record(self) -> ET.Element | None:
        return self.root.find("Record")

    @property
    def redirect(self) -> str | None:
        el = self.root.find("Redirect")
        return el.text if el is not None else None

    @property
    def hangs_up(self) -> bool:
        return self.root.find("Hangup") is not None

    @property
    def is_empty(self) -> bool:
        return len(self.root) == 0

    @property
    def action(self) -> str:
        """The action of the `<Gather>` or `<Record>` the reply holds."""
        verb = self.gather if self.gather is not None else self.record
        if verb is None or not verb.get("action"):
            raise UnexpectedReply(f"no <Gather> or <Record> with an action: {self.body[:300]}")
        return verb.get("action")

    def menu_path(self) -> str:
        """The last part of the `<Gather>` action's path ("language", "topic"...), or ""."""
        gather = self.gather
        if gather is None:
            return ""
        return urlsplit(gather.get("action") or "").path.rsplit("/", 1)[-1]

    def references(self) -> set[str]:
        """The reference numbers read back in this reply, as digits."""
        return {found.replace(", ", "") for found in REFERENCE.findall(self.said)}


@dataclass(frozen=True)
class Recording:
    """One recording as Twilio made it: what the `<Record>` action and the callbacks say."""

    sid: str
    seconds: int
    status: str = "completed"  # the recording status callback's RecordingStatus
    transcript: str | None = None
    transcription_status: str = "completed"
    error_code: str | None = None

    @property
    def transcription_sid(self) -> str:
        return "TR" + self.sid[2:]


class SimulatedCall:
    """The requests Twilio makes for one call, each with exactly the parameters Twilio sends.

    Nothing is sent: each method returns a `Request`. `base_url` is the line's public base
    (the number's voice URL is `base_url + /twilio/voice`, its status callback
    `base_url + /twilio/status`); action URLs are the ones the line's replies named."""

    def __init__(
        self,
        account: TwilioAccount,
        base_url: str,
        caller: Phone,
        *,
        call_sid: str | None = None,
        line: Phone = THE_LINE,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.account, self.base = account, base_url.rstrip("/")
        self.caller, self.line = caller, line
        self.sid = call_sid or new_sid("CA")
        self.extra = dict(extra or {})
        self.sequence = 0  # the call status callback's SequenceNumber
        self._standing = self._call_parameters()

    @property
    def number(self) -> str:
        return self.caller.number

    def url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith(("http://", "https://")) else self.base + path_or_url

    def _call_parameters(self) -> dict[str, str]:
        """What Twilio sends about the call in every voice request, but `CallStatus`."""
        params = {
            "AccountSid": self.account.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "Called": self.line.number,
            "Caller": self.caller.number,
            "Direction": "inbound",
            "From": self.caller.number,
            "To": self.line.number,
            **self.caller.place("From"),
            **self.caller.place("Caller"),
            **self.line.place("To"),
            **self.line.place("Called"),
        }
        if self.caller.name:
            params["CallerName"] = self.caller.name
        if self.caller.verstat:
            params["StirVerstat"] = self.caller.verstat
        return {**params, **self.extra}

    def call_parameters(self, status: str = "in-progress") -> dict[str, str]:
        """The parameters of a voice request about this call, with its `CallStatus`."""
        return {**self._standing, "CallStatus": status}

    def request(self, kind: str, url: str, params: dict[str, str], note: object = None) -> Request:
        return Request(kind, self.url(url), params, self.account, note)

    # --- the call's flow: the voice URL, then the actions its replies name ----------------------

    def voice(self) -> Request:
        """The number's voice URL: the call comes in."""
        return self.request("voice", "/twilio/voice", self.call_parameters("ringing"))

    def gather(self, action: str, digits: str) -> Request:
        """A `<Gather>`'s action: the caller pressed `digits`."""
        return self.request(kind_of(action), action, {**self.call_parameters(), "Digits": digits})

    def redirect(self, url: str) -> Request:
        """A `<Redirect>` Twilio follows (after a `<Gather>` that got no key, or a `<Record>`
        whose action it skipped)."""
        return self.request(kind_of(url), url, self.call_parameters())

    def record_action(self, action: str, recording: Recording, digits: str = FINISH_KEY) -> Request:
        """The `<Record>` action: the comment is recorded, ended by `digits` (the finish key,
        or `hangup` when the caller hung up: the call is then over)."""
        params = {
            **self.call_parameters("completed" if digits == HANG_UP else "in-progress"),
            "Digits": digits,
            "RecordingDuration": str(recording.seconds),
            "RecordingSid": recording.sid,
            "RecordingUrl": self.account.recording_url(recording.sid),
        }
        return self.request("recorded", action, params)

    def fallback(self, failed: Request, error_code: str = HTTP_RETRIEVAL_FAILURE) -> Request:
        """The number's Fallback URL, asked when `failed` failed as Twilio saw it: the failed
        request's parameters with `ErrorCode` and `ErrorUrl`."""
        params = {**failed.params, "ErrorCode": error_code, "ErrorUrl": failed.url}
        return replace(self.request("fallback", "/twilio/fallback", params, failed.note), failed=failed)

    # --- the callbacks ------------------------------------------------------------------------

    def recording_status(self, url: str, recording: Recording) -> Request:
        """The `<Record>`'s recordingStatusCallback. Twilio names the call only by its
        `CallSid`: no `From`, `To` or `CallStatus`."""
        params = {
            "AccountSid": self.account.account_sid,
            "CallSid": self.sid,
            "RecordingChannels": "1",
            "RecordingDuration": str(recording.seconds),
            "RecordingSid": recording.sid,
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": twilio_time(),
            "RecordingStatus": recording.status,
            "RecordingUrl": self.account.recording_url(recording.sid),
        }
        error = recording.error_code or RECORDING_ERRORS.get(recording.status)
        if error:
            params["ErrorCode"] = error
        return self.request("recording-status", url, params)

    def transcription(self, url: str, recording: Recording) -> Request:
        """The `<Record>`'s transcribeCallback (Twilio's transcription, English only). No `From`."""
        completed = recording.transcription_status == "completed"
        params = {
            "AccountSid": self.account.account_sid,
            "CallSid": self.sid,
            "RecordingSid": recording.sid,
            "RecordingUrl": self.account.recording_url(recording.sid),
            "TranscriptionSid": recording.transcription_sid,
            "TranscriptionStatus": recording.transcription_status,
            "TranscriptionText": (recording.transcript or "") if completed else "",
            "TranscriptionType": "fast",
            "TranscriptionUrl": self.account.transcription_url(recording.transcription_sid),
        }
        return self.request("transcription", url, params)

    def call_status(self, duration: int, status: str = "completed", timestamp: str | None = None) -> Request:
        """The number's status callback when the call ends: the call's parameters with its final
        `CallStatus`, `CallDuration`, `Timestamp`, `CallbackSource` and `SequenceNumber`."""
        params = {
            **self.call_parameters(status),
            "CallDuration": str(duration),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            "Timestamp": timestamp or twilio_time(),
        }
        self.sequence += 1
        return self.request("status", "/twilio/status", params)


def kind_of(url: str) -> str:
    """The kind of request a URL of the line's is (see KINDS), by its last path segment."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


# --- what a caller knows of the line -----------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    """What a caller can know of the line from its script: which key means what."""

    languages: dict[str, str]  # digit -> code, in the script's order (the first is the default)
    topics: dict[str, tuple[str, bool]]  # digit -> (slug, asks for a position), the menu's topics
    slugs: tuple[str, ...]  # every topic, switched off or not
    general: str
    general_asks_stance: bool
    zip_step: str = "off"  # where the line asks for the ZIP code (models.line.ZIP_STEPS)
    callbacks: frozenset[str] = frozenset()  # the topics that offer a call-back after the comment
    # code -> the language its voice speaks as (`<Say language>`), where that is another
    spoken_as: dict[str, str] = field(default_factory=dict)

    @property
    def first_language(self) -> str:
        return next(iter(self.languages.values()))

    def asks_stance(self, slug: str) -> bool:
        return next((asks for found, asks in self.topics.values() if found == slug), self.general_asks_stance)

    def say_language(self, code: str) -> str:
        """The `language` of the `<Say>`s a caller of language `code` hears."""
        return self.spoken_as.get(code, code)

    @classmethod
    def from_script(cls, script: LineScript) -> LineFacts:
        general = script.general()
        return cls(
            {lang.digit: lang.code for lang in script.languages},
            {t.digit: (t.slug, t.stance) for t in script.menu},
            tuple(t.slug for t in script.topics),
            general.slug,
            general.stance,
            script.zip_step,
            frozenset(t.slug for t in script.topics if t.callback),
            {lang.code: lang.spoken_as for lang in script.languages if lang.spoken_as != lang.code},
        )

    @classmethod
    def from_file(cls, path: str | Path) -> LineFacts:
        return cls.from_script(script_from_file(read_script_file(path)))


# --- what was played ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A keypress the line stores: a language, a topic, or a position on a topic. `order` is
    the caller's own count of the choices it made; a retry or a Fallback URL request of the
    same press carries the same."""

    order: int
    kind: str  # language | topic | stance
    language: str | None = None
    topic: str | None = None
    stance: str | None = None


@dataclass
class Comment:
    """One recording the caller made, and what Twilio said of it."""

    recording_sid: str
    topic: str | None
    stance: str | None
    language: str
    seconds: int
    finished_by: str = FINISH_KEY
    action_answered: bool = False  # the `<Record>` action (which gives the line its topic) got through
    status: str | None = None  # the recording status callback's, once it got through
    transcript: str | None = None
    references: set[str] = field(default_factory=set)

    @property
    def counts(self) -> bool:
        """A comment the counts show: the line knows its topic, it lasted more than 0 s, and
        Twilio did not call it absent or failed."""
        return self.action_answered and self.topic is not None and self.seconds > 0 and self.status not in NOT_HEARD


NOT_HEARD = ("absent", "failed")


@dataclass(frozen=True)
class ZipEntry:
    """A ZIP code the line takes as the call's (five digits, not 00000)."""

    zip: str


@dataclass
class StatusNote:
    recording_sid: str
    status: str
    seconds: int


@dataclass
class TranscriptNote:
    recording_sid: str
    text: str | None


@dataclass(frozen=True)
class CallbackNote:
    """The caller pressed 1 at the call-back offer after a comment on `topic`."""

    topic: str | None


@dataclass
class PlayedCall:
    """What one call did, as the caller saw it: the facts the counts must show."""

    call_sid: str
    number: str  # `From` as Twilio sent it
    caller: str | None  # the number, or None when it was withheld
    language: str | None = None
    choices: dict[int, Choice] = field(default_factory=dict)
    recordings: dict[str, Comment] = field(default_factory=dict)
    heard: list[str] = field(default_factory=list)
    webhooks: int = 0  # requests sent, retries and duplicates included
    reached: bool = False  # some request about the call reached the line
    status: str | None = None  # the final status the call status callback gave
    entered_zip: str | None = None  # the ZIP code the line took (None: not asked, skipped, unreadable)
    blocked: bool = False  # the line answered with the block list's message
    callbacks: set[str] = field(default_factory=set)  # topics the caller asked a call back about

    def learn(self, note: object) -> None:
        """What an answered request tells: applied once, however often it is answered."""
        if isinstance(note, ZipEntry):
            self.entered_zip = self.entered_zip or note.zip
        elif isinstance(note, Choice):
            self.choices.setdefault(note.order, note)
            if note.kind == "language":
                self.language = note.language
        elif isinstance(note, Comment):
            comment = self.recordings.setdefault(note.recording_sid, note)
            if comment is not note:  # the callbacks came first: the action fills in the rest
                comment.topic, comment.stance, comment.seconds = note.topic, note.stance, note.seconds
                comment.language, comment.finished_by = note.language, note.finished_by
            comment.action_answered = True
        elif isinstance(note, StatusNote):
            comment = self.recordings.get(note.recording_sid)
            if comment is None:
                comment = self.recordings[note.recording_sid] = Comment(
                    note.recording_sid, None, None, self.language or "", note.seconds
                )
            if comment.status not in NOT_HEARD + ("completed",):
                comment.status = note.status
        elif isinstance(note, CallbackNote):
            if note.topic is not None:
                self.callbacks.add(note.topic)
        elif isinstance(note, TranscriptNote):
            comment = self.recordings.get(note.recording_sid)
            if comment is not None and note.text:
                comment.transcript = note.text

    @property
    def topics(self) -> dict[str, str | None]:
        """Each topic chosen, in order, with the last position pressed on it (None: none)."""
        chosen: dict[str, str | None] = {}
        for order in sorted(self.choices):
            choice = self.choices[order]
            if choice.kind == "topic":
                chosen.setdefault(choice.topic, None)
            elif choice.kind == "stance":
                chosen[choice.topic] = choice.stance
        return chosen

    @property
    def positions(self) -> list[tuple[str, str]]:
        """Every position pressed, in order: (topic, stance)."""
        return [(c.topic, c.stance) for _, c in sorted(self.choices.items()) if c.kind == "stance"]

    @property
    def comments(self) -> list[Comment]:
        """The recordings the counts show as comments."""
        return [c for c in self.recordings.values() if c.counts]

    @property
    def references(self) -> dict[str, set[str]]:
        """The reference numbers read back, by RecordingSid."""
        return {sid: c.references for sid, c in self.recordings.items() if c.references}


# --- what the caller (and Twilio) decide ---------------------------------------------------------


@dataclass(frozen=True)
class Menu:
    """Where the caller is, as the caller believes: the menu (language, topic, stance, next),
    the recording prompt (record), the goodbye, and the state a menu keeps."""

    kind: str
    language: str
    misses: int = 0  # at a menu: keys missed; at the recording prompt: recordings not heard
    topic: str | None = None
    stance: str | None = None
    topics_chosen: int = 0  # topics chosen so far in this call


def zip_digits(key: str) -> str:
    """What Twilio sends as `Digits` for keys pressed at the ZIP code's `<Gather numDigits="5"
    finishOnKey="#">`: up to five keys, the finish key stripped (pound alone: nothing)."""
    return key.split(ZIP_FINISH_KEY, 1)[0][:ZIP_KEYS]


CALLBACKS_BEFORE, CALLBACKS_AFTER, CALLBACKS_LATE = "before", "after", "late"


@dataclass(frozen=True)
class Take:
    """What happens at one `<Record>`. `seconds` 0: nothing heard (Twilio sends the action with
    a duration of 0). `skipped`: Twilio skips the action and follows the redirect (an empty
    recording, on some accounts). `hang_up`: the caller hangs up while recording. `status`:
    the recording status callback's RecordingStatus (None: it never comes; "auto": completed,
    or absent when nothing was heard). `transcript`: Twilio's transcription (None: no
    callback; it is only sent where the `<Record>` asks for one). `callbacks`: whether the
    callbacks come before the action, right after it, or late (after the call has gone on,
    around the call status callback); `transcript_first` orders the two."""

    seconds: int = 12
    skipped: bool = False
    hang_up: bool = False
    status: str | None = "auto"
    transcript: str | None = None
    transcription_status: str = "completed"
    callbacks: str = CALLBACKS_AFTER
    transcript_first: bool = False
    recording_sid: str | None = None

    def recording_status(self) -> str | None:
        if self.status != "auto":
            return self.status
        return "completed" if self.seconds > 0 and not self.skipped else "absent"


@dataclass(frozen=True)
class CallEnd:
    """Twilio's call status callback: the final status and duration; `after_late` of the late
    recording callbacks come before it, the rest after."""

    status: str = "completed"
    duration: int = 30
    after_late: int = 0


class Mind(Protocol):
    """What the caller, and Twilio, decide."""

    def press(self, menu: Menu) -> str:
        """At a menu: a key, NO_KEY (let it time out) or HANG_UP. At the ZIP code (`menu.kind`
        "zip"): the keys pressed, e.g. "97201", "972#" (short), "#" (skip), or NO_KEY."""

    def take(self, menu: Menu) -> Take | None:
        """At the recording prompt: what is recorded; None: the caller hangs up before the beep."""

    def retry(self, request: Request, index: int) -> bool:
        """Whether Twilio sends the `index`-th request of the call twice."""

    def fails(self, request: Request, index: int) -> bool:
        """Whether Twilio sees the `index`-th request fail (too slow, say) and asks the Fallback URL."""

    def ending(self) -> CallEnd | None:
        """The call status callback, or None when it never comes."""


class Script:
    """A caller who presses `keys` in turn (NO_KEY: let the menu time out; HANG_UP: hang up),
    and records `takes` in turn at each `<Record>`. When the keys run out: `then` (NO_KEY by
    default, so the menus time out); when the takes run out: `more_takes` (None: hang up
    before the beep). `retries` and `failures` are the indices of the requests Twilio sends
    twice, or sees fail (and so asks the Fallback URL); `end` is the call status callback
    (None: it never comes)."""

    def __init__(
        self,
        keys: Iterable[str] = (),
        takes: Iterable[Take] = (),
        *,
        then: str = NO_KEY,
        more_takes: Take | None = None,
        retries: Collection[int] = (),
        failures: Collection[int] = (),
        end: CallEnd | None = CallEnd(),  # noqa: B008 - frozen
    ) -> None:
        self.keys, self.takes = list(keys), list(takes)
        self.then, self.more_takes = then, more_takes
        self.retries, self.failures, self.end = set(retries), set(failures), end

    def press(self, menu: Menu) -> str:
        return self.keys.pop(0) if self.keys else self.then

    def take(self, menu: Menu) -> Take | None:
        return self.takes.pop(0) if self.takes else self.more_takes

    def retry(self, request: Request, index: int) -> bool:
        return index in self.retries

    def fails(self, request: Request, index: int) -> bool:
        return index in self.failures

    def ending(self) -> CallEnd | None:
        return self.end


# --- playing a whole call ------------------------------------------------------------------------


MENUS = ("language", "topic", "stance", "zip", "next", "callback")


class _Gone(Exception):
    """The caller hung up, or the line ended the call."""


class CallPlayer:
    """Plays one call against the line as Twilio would, without doing any I/O.

    The transport asks `next_request()` for what to send (None when the call is over), sends it
    and gives back what came with `answer()`. Twilio's rules for a request that gets no good
    answer: with `failures="fallback"`, a voice request or action that got an HTTP error or no
    answer goes to the Fallback URL (a Fallback URL request that fails is sent again as it
    was), a callback is sent again, and a request the line never saw (connection refused) is
    sent again; with `failures="raise"` (the default) any of these raises UnexpectedReply.
    `keep_heard` keeps what the caller heard, line by line, in `played.heard`. `blocked`: the
    caller's number is on the line's block list, so the call must hear a short message and
    the line hang up; None: it may be (a person trying the line does not know), so either the
    first menu or that message is right, and `played.blocked` says which it was."""

    def __init__(
        self,
        call: SimulatedCall,
        line: LineFacts,
        mind: Mind,
        *,
        failures: str = "raise",
        keep_heard: bool = False,
        max_webhooks: int = 60,
        max_attempts: int = 20,
        blocked: bool | None = False,
    ) -> None:
        if failures not in ("raise", "fallback"):
            raise ValueError(f"failures must be 'raise' or 'fallback', not {failures!r}")
        self.call, self.line, self.mind = call, line, mind
        self.failures, self.keep_heard = failures, keep_heard
        self.max_webhooks, self.max_attempts = max_webhooks, max_attempts
        self.blocked = blocked
        caller = None if call.caller.withheld else call.number
        self.played = PlayedCall(call.sid, call.number, caller)
        self.done = False
        self._sent = 0  # requests made (each retry or fallback is one more)
        self._choices = 0
        self._pending: Request | None = None
        self._response: tuple[Response, ...] = ()
        self._steps = self._play()

    # --- the transport's side -------------------------------------------------------------------

    def next_request(self) -> Request | None:
        """The request to send now (the same until it is answered), or None: the call is over."""
        if self._pending is None and not self.done:
            try:
                self._pending = self._steps.send(self._response or None)
            except StopIteration:
                self.done = True
        return self._pending

    def answer(self, response: Response, *again: Response) -> None:
        """What came back for the request `next_request()` gave; `again`: what came back for
        the same request delivered again at the same time (a duplicate the transport sent)."""
        if self._pending is None:
            raise RuntimeError("answer() without a request to answer")
        self._pending, self._response = None, (response, *again)

    # --- the call -------------------------------------------------------------------------------

    def _play(self) -> Generator[Request, tuple[Response, ...], None]:
        late: list[Request] = []
        try:
            yield from self._follow(late)
        except _Gone:
            pass
        end = self.mind.ending()
        if end is None:
            for request in late:
                yield from self._exchange(request)
            return
        split = min(end.after_late, len(late))
        for request in late[:split]:
            yield from self._exchange(request)
        yield from self._exchange(self.call.call_status(end.duration, end.status))
        self.played.status = end.status
        for request in late[split:]:
            yield from self._exchange(request)

    def _follow(self, late: list[Request]):
        first = self.line.first_language
        one_language = len(self.line.languages) == 1
        menu = Menu("topic", first) if one_language else Menu("language", first)
        if one_language and self.line.zip_step == "after_language":
            menu = Menu("zip", first)
        if one_language:
            self.played.language = first
        goodbye = Menu("goodbye", first)
        may_be_blocked = self.blocked is None
        reply = yield from self._exchange(
            self.call.voice(), None if may_be_blocked else goodbye if self.blocked else menu
        )
        if self.blocked or (may_be_blocked and reply.gather is None and reply.record is None):
            check(reply, goodbye, self.line)
            self.played.blocked = True
            self._hear(reply)
            self._heard("[the line hangs up]")
            return
        if may_be_blocked:
            check(reply, menu, self.line)
        while True:
            if menu.kind in MENUS:
                menu, reply = yield from self._at_menu(menu, reply)
            elif menu.kind == "record":
                menu, reply = yield from self._at_record(menu, reply, late)
            else:  # goodbye
                self._hear(reply)
                self._heard("[the line hangs up]")
                return

    def _at_menu(self, menu: Menu, reply: Reply):
        self._hear(reply, upto="Gather")
        if self._sent >= self.max_webhooks:
            key = HANG_UP
        else:
            key = self.mind.press(menu)
        if key == HANG_UP:
            self._heard("[hangs up]")
            raise _Gone
        if key == NO_KEY:
            self._heard("[presses nothing]")
            if not reply.redirect:  # no redirect after the menu: Twilio goes on to the goodbye
                self._hear(reply, after="Gather")
                self._heard("[the line hangs up]")
                raise _Gone
            request, digits = self.call.redirect(reply.redirect), ""
        elif menu.kind == "zip" and not zip_digits(key):  # pound alone: Twilio takes it as no input
            self._heard(f"[presses {key}]")
            request, digits = self.call.redirect(reply.redirect), ""
        else:
            self._heard(f"[presses {key}]")
            digits = zip_digits(key) if menu.kind == "zip" else key
            request = self.call.gather(reply.action, digits)
        following, choice = self._after_key(menu, digits)
        reply = yield from self._exchange(request, following, choice)
        return following, reply

    def _after_key(self, menu: Menu, digits: str) -> tuple[Menu, Choice | ZipEntry | CallbackNote | None]:
        """The menu rules (ivr/menu.py, README "Caller-facing behaviour"): where a key leads,
        and the choice the line stores for it."""
        line, language, misses = self.line, menu.language, menu.misses
        missed = replace(menu, misses=misses + 1)
        if menu.kind == "callback":  # 1 asks for a call back; anything else, or nothing, goes on
            note = CallbackNote(menu.topic) if digits == CALLBACK_KEY else None
            return Menu("next", language, topics_chosen=menu.topics_chosen), note
        if menu.kind == "next":
            if digits == ANOTHER_TOPIC_KEY:
                return Menu("topic", language, topics_chosen=menu.topics_chosen), None
            if digits in ("", END_CALL_KEY) or misses + 1 >= MAX_MISSES:
                return Menu("goodbye", language), None
            return missed, None
        if digits == REPEAT_KEY:
            return menu, None
        if menu.kind == "zip":
            if not is_zip(digits) and digits and misses + 1 < MAX_ZIP_TRIES:
                return missed, None
            entry = ZipEntry(digits) if is_zip(digits) else None
            if menu.topic is None:
                return Menu("topic", language), entry
            kind = "stance" if line.asks_stance(menu.topic) else "record"
            return Menu(kind, language, topic=menu.topic, topics_chosen=menu.topics_chosen), entry
        if menu.kind == "language":
            code = line.languages.get(digits)
            if code is None:
                if misses + 1 < MAX_MISSES:
                    return missed, None
                code = line.first_language
            following = Menu("zip" if line.zip_step == "after_language" else "topic", code)
            return following, self._choice("language", language=code)
        if menu.kind == "topic":
            found = line.topics.get(digits)
            if found is None:
                if misses + 1 < MAX_MISSES:
                    return missed, None
                found = (line.general, line.general_asks_stance)
            slug, asks_stance = found
            chosen = menu.topics_chosen + 1
            following = Menu("stance" if asks_stance else "record", language, topic=slug, topics_chosen=chosen)
            if line.zip_step == "after_topic" and chosen == 1:  # the call's first topic
                following = Menu("zip", language, topic=slug, topics_chosen=chosen)
            return following, self._choice("topic", topic=slug)
        stance = STANCE_KEYS.get(digits)  # the position menu
        if stance is not None:
            following = Menu("record", language, topic=menu.topic, stance=stance, topics_chosen=menu.topics_chosen)
            return following, self._choice("stance", topic=menu.topic, stance=stance)
        if misses + 1 < MAX_MISSES:
            return missed, None
        return Menu("record", language, topic=menu.topic, topics_chosen=menu.topics_chosen), None

    def _choice(self, kind: str, **values) -> Choice:
        self._choices += 1
        return Choice(self._choices, kind, **values)

    def _at_record(self, menu: Menu, reply: Reply, late: list[Request]):
        self._hear(reply, upto="Record")
        verb = reply.record
        transcribe = verb.get("transcribeCallback")
        if (menu.language in TWILIO_TRANSCRIBES) != bool(transcribe):
            raise UnexpectedReply(f"transcribeCallback {transcribe!r} for a {menu.language} caller")
        take = self.mind.take(menu) if self._sent < self.max_webhooks else None
        if take is None:
            self._heard("[hangs up before the beep]")
            raise _Gone
        status = take.recording_status()
        seconds = 0 if take.skipped else take.seconds
        recording = Recording(
            take.recording_sid or new_sid("RE"),
            seconds,
            status or "completed",
            take.transcript,
            take.transcription_status,
        )
        callbacks = []
        if status is not None and verb.get("recordingStatusCallback"):
            request = self.call.recording_status(verb.get("recordingStatusCallback"), recording)
            callbacks.append(replace(request, note=StatusNote(recording.sid, status, seconds)))
        if take.transcript is not None and transcribe:
            note = TranscriptNote(recording.sid, take.transcript)
            request = replace(self.call.transcription(transcribe, recording), note=note)
            callbacks.insert(0 if take.transcript_first else len(callbacks), request)
        if take.callbacks == CALLBACKS_BEFORE:
            for request in callbacks:
                yield from self._exchange(request)
        language, topics = menu.language, menu.topics_chosen
        # A recording with nothing in it (0 s, or its action skipped) is offered once more,
        # then the caller hears the choice of another topic.
        empty = menu.misses + 1
        offered_again = replace(menu, misses=empty) if empty < MAX_EMPTY_RECORDINGS else Menu("next", language)
        offered_again = replace(offered_again, topics_chosen=topics)
        if take.skipped:  # Twilio skips the action and follows the redirect
            self._heard("[beep; says nothing, and Twilio skips the action]")
            following = offered_again
            if not reply.redirect:
                raise UnexpectedReply(f"no <Redirect> after the <Record>: {reply.body[:300]}")
            answered = yield from self._exchange(self.call.redirect(reply.redirect), following)
        else:
            ending = HANG_UP if take.hang_up else FINISH_KEY
            self._heard(
                f"[beep; records a {seconds}-second comment, then "
                + ("hangs up]" if take.hang_up else f"presses {FINISH_KEY}]")
            )
            comment = Comment(recording.sid, menu.topic, menu.stance, language, seconds, ending)
            if take.hang_up:
                following = Menu("gone", language)
            elif seconds == 0:
                following = offered_again
            elif menu.topic in self.line.callbacks and not self.call.caller.withheld:
                following = Menu("callback", language, topic=menu.topic, topics_chosen=topics)
            else:
                following = Menu("next", language, topics_chosen=topics)
            request = replace(self.call.record_action(reply.action, recording, ending), note=comment)
            answered = yield from self._exchange(request, following)
        if take.callbacks == CALLBACKS_AFTER:
            for request in callbacks:
                yield from self._exchange(request)
        elif take.callbacks == CALLBACKS_LATE:
            late.extend(callbacks)
        if following.kind == "gone":
            raise _Gone
        return following, answered

    # --- one request, as Twilio delivers it ---------------------------------------------------------

    def _exchange(self, request: Request, expected: Menu | None = None, note: object = None):
        """Send `request` until the line answers it as Twilio requires; learn its note; return
        the reply, checked against the menu the caller expects (callbacks: not checked)."""
        if note is not None:
            request = replace(request, note=note)
        index = self._sent
        current, attempts = request, 0
        while True:
            self._sent += 1
            responses = yield current
            self.played.webhooks += len(responses)
            response = responses[0]
            if response.reached:
                self.played.reached = True
            if response.status == 200 and not (current is request and self._fails(request, index)):
                break
            attempts += 1
            if attempts > self.max_attempts:
                raise UnexpectedReply(f"{request.kind}: no answer after {attempts} attempts")
            if response.status == 200:  # answered, but too late for Twilio: the Fallback URL
                current = self.call.fallback(request, HTTP_CONNECTION_FAILURE)
                continue
            if self.failures == "raise" or (response.status is not None and response.status < 500):
                raise UnexpectedReply(f"{current.kind} {current.url} answered {response.status}: {response.body[:300]}")
            if not response.reached or current.is_callback or current.kind == "fallback":
                continue  # sent again as it was
            error = HTTP_CONNECTION_FAILURE if response.status is None else HTTP_RETRIEVAL_FAILURE
            current = self.call.fallback(request, error)
        bodies = [r.body for r in responses if r.status == 200]
        if self.mind.retry(request, index):
            self._sent += 1
            again = yield current
            self.played.webhooks += len(again)
            bodies += [r.body for r in again if r.status == 200]
        self._check_duplicates(current, bodies)
        if request.note is not None:
            self.played.learn(request.note)
        if request.is_callback:
            return None
        reply = Reply(bodies[0])
        if isinstance(request.note, Comment):
            heard = self.played.recordings[request.note.recording_sid].references
            heard.update(reply.references())
            for body in bodies[1:]:
                heard.update(Reply(body).references())
        if expected is not None:
            check(reply, expected, self.line)
        return reply

    def _fails(self, request: Request, index: int) -> bool:
        return request.kind in FLOW_KINDS and self.mind.fails(request, index)

    @staticmethod
    def _check_duplicates(request: Request, bodies: Sequence[str]) -> None:
        """A duplicate hears exactly what the first heard, but for the reference number when the
        two reached different processes: each then finds the comment."""
        if len(bodies) < 2:
            return
        first = REFERENCE.sub("#", bodies[0])
        for body in bodies[1:]:
            if REFERENCE.sub("#", body) != first:
                raise UnexpectedReply(f"a duplicate of {request.kind} heard something else:\n{bodies[0]}\n{body}")

    # --- what the caller hears ------------------------------------------------------------------------

    def _heard(self, line: str) -> None:
        if self.keep_heard:
            self.played.heard.append(line)

    def _hear(self, reply: Reply, upto: str | None = None, after: str | None = None) -> None:
        """Keep the `<Say>`s of a reply, up to and inside the verb `upto` (or after the verb `after`)."""
        if not self.keep_heard:
            return
        started = after is None
        for verb in reply.root:
            if not started:
                started = verb.tag == after
                continue
            if verb.tag in ("Say", "Play"):
                self.played.heard.append(heard(verb))
            elif verb.tag in ("Gather", "Record"):
                self.played.heard.extend(heard(el) for el in verb if el.tag in ("Say", "Play"))
                if verb.tag == upto:
                    return


def heard(verb: ET.Element) -> str:
    """A `<Say>`'s text, or "[plays URL]" for a `<Play>`."""
    return f"[plays {verb.text}]" if verb.tag == "Play" else verb.text or ""


def check(reply: Reply, expected: Menu, line: LineFacts | None = None) -> None:
    """Raise UnexpectedReply unless `reply` is the menu the caller expects. A menu says
    something (a `<Say>` or a recorded prompt's `<Play>`), every `<Say>` in the caller's
    language (its voice's: `LineFacts.say_language`)."""
    kind = expected.kind
    if kind in MENUS:
        if reply.menu_path() != kind:
            raise UnexpectedReply(f"expected the {kind} menu, heard {describe(reply)}")
        if kind == "zip" and (
            reply.gather.get("numDigits") != str(ZIP_KEYS) or reply.gather.get("finishOnKey") != ZIP_FINISH_KEY
        ):
            raise UnexpectedReply(f"the ZIP code's <Gather> takes five keys ended by pound: {reply.body[:300]}")
        if not any(el.tag in ("Say", "Play") for el in reply.gather):
            raise UnexpectedReply(f"the {kind} menu says nothing: {reply.body[:300]}")
        if kind != "language":
            spoken = {say.get("language") for say in reply.gather.iter("Say")}
            voice = line.say_language(expected.language) if line else expected.language
            if spoken - {voice}:
                raise UnexpectedReply(f"expected the {kind} menu in {voice}, heard it in {spoken}")
    elif kind == "record":
        if reply.record is None:
            raise UnexpectedReply(f"expected the recording prompt, heard {describe(reply)}")
    elif kind == "goodbye":
        if not reply.hangs_up or reply.gather is not None:
            raise UnexpectedReply(f"expected the goodbye, heard {describe(reply)}")
    elif kind == "gone" and not reply.is_empty:
        raise UnexpectedReply(f"expected an empty reply after a hang-up, heard {describe(reply)}")


def describe(reply: Reply) -> str:
    if reply.gather is not None:
        return f"a menu asking {reply.menu_path()!r}"
    if reply.record is not None:
        return "a recording prompt"
    if reply.hangs_up:
        return "a goodbye"
    return "nothing" if reply.is_empty else repr(reply.body[:200])


# --- transports --------------------------------------------------------------------------------


Send = Callable[[Request], Response]
SendAsync = Callable[[Request], Awaitable[Response]]


def play(player: CallPlayer, send: Send) -> PlayedCall:
    """Play the whole call, sending each request with `send` (synchronous)."""
    while (request := player.next_request()) is not None:
        player.answer(send(request))
    return player.played


async def play_async(player: CallPlayer, send: SendAsync) -> PlayedCall:
    """Play the whole call, sending each request with `send` (a coroutine)."""
    while (request := player.next_request()) is not None:
        player.answer(await send(request))
    return player.played
