"""The load driver: plays whole calls the way Twilio does, many at once, on one asyncio loop.

Each call is a caller with a seeded random mind: it hears the TwiML, presses keys at each
`<Gather>` (right keys, wrong keys, nothing, `*`), records at `<Record>` (a comment, nothing,
a hang-up), asks for another topic or not, and sometimes hangs up mid-menu. Twilio's side is
played as Twilio plays it: every webhook is signed, the recording status and transcription
callbacks are sent (sometimes before the `<Record>` action), and the call status callback
ends every call.

While it plays, the driver keeps its own record of what it did and predicts, from the line's
script (`config/line.yaml`) and the documented menu rules, which menu each reply must be. A
reply of another kind is an error. `expected_counts()` turns the record into the counts the
API must show; nothing here reads the line's tables.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
import xml.etree.ElementTree as ET
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import yaml

KINDS = (
    "voice",
    "language",
    "topic",
    "stance",
    "recorded",
    "no-comment",
    "next",
    "recording-status",
    "transcription",
    "status",
)
ACCOUNT_SID = "AC" + "b" * 32
TO_NUMBER = "+15035550199"
WITHHELD = ("anonymous", "unknown", "restricted", "+266696687")
MAX_MISSES = 3  # the line's rule: the third miss at a menu takes the fall-back
MAX_TURNS = 40  # a call never takes more webhooks than this (the driver hangs up)
MAX_TOPICS_PER_CALL = 3
STANCE_KEYS = {"1": "support", "2": "oppose", "3": "other"}


def sign(token: bytes, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature, as Twilio computes it (the same as RequestValidator.compute_signature)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token, data.encode(), hashlib.sha1).digest()).decode()


@dataclass(frozen=True)
class LineFacts:
    """What a caller can know of the line from its script: which key means what."""

    languages: dict[str, str]  # digit -> code
    first_language: str
    topics: dict[str, tuple[str, bool]]  # digit -> (slug, asks stance)
    slugs: tuple[str, ...]
    general: str
    general_asks_stance: bool

    @classmethod
    def from_file(cls, path: str | Path) -> LineFacts:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        langs = {str(lang["digit"]): lang["code"] for lang in data["languages"]}
        enabled = [t for t in data["topics"] if t.get("enabled", True)]
        topics = {str(t["digit"]): (t["slug"], bool(t.get("stance"))) for t in enabled}
        general = next(t for t in data["topics"] if t["slug"] == data["general_topic"])
        return cls(
            langs,
            data["languages"][0]["code"],
            topics,
            tuple(t["slug"] for t in data["topics"]),
            general["slug"],
            bool(general.get("stance")),
        )


@dataclass
class PlayedCall:
    """What one call did, as the driver saw it: the facts the counts must show."""

    sid: str
    caller: str | None  # the number, or None when it was withheld
    topics: dict[str, str | None] = field(default_factory=dict)  # slug -> last stance pressed
    comments: list[str] = field(default_factory=list)  # the topic of each comment recorded
    webhooks: int = 0


@dataclass
class Record:
    """Everything played against one line (across rounds), and what went wrong."""

    calls: list[PlayedCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RoundStats:
    calls: int = 0
    webhooks: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: dict[str, array] = field(default_factory=lambda: {kind: array("d") for kind in KINDS})


class UnexpectedReply(Exception):
    pass


class Hangup(Exception):
    """The caller hangs up (or the line did): no more webhooks but the status callback."""


@dataclass
class Menu:
    kind: str  # gather | record | goodbye | empty
    path: str = ""
    action: str = ""
    redirect: str = ""
    verb: ET.Element | None = None


def read_reply(body: str) -> Menu:
    root = ET.fromstring(body)
    if root.tag != "Response":
        raise UnexpectedReply(f"root is {root.tag}")
    redirect = root.find("Redirect")
    redirect_url = redirect.text if redirect is not None else ""
    gather = root.find("Gather")
    if gather is not None:
        return Menu("gather", urlsplit(gather.get("action")).path, gather.get("action"), redirect_url or "", gather)
    record = root.find("Record")
    if record is not None:
        return Menu("record", "/twilio/recorded", record.get("action"), redirect_url or "", record)
    if root.find("Hangup") is not None:
        return Menu("goodbye")
    if len(root) == 0:
        return Menu("empty")
    raise UnexpectedReply(f"unknown reply {body[:200]}")


def caller_number(rng: random.Random, round_no: int, index: int) -> str:
    """Most callers call once; some call again from the same number; some withhold it."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(WITHHELD)
    if roll < 0.20 and index > 0:
        index = rng.randrange(index)  # a caller who called earlier in this round calls again
    return f"+1{500 + round_no:03d}{index:07d}"


class Driver:
    """Plays calls against one base URL with `in_flight` calls at once over keep-alive."""

    def __init__(
        self, base_url: str, token: str, line: LineFacts, *, in_flight: int = 64, seed: int = 1, run_id: str = ""
    ) -> None:
        self.base = base_url.rstrip("/")
        self.token = token.encode()
        self.line = line
        self.in_flight = in_flight
        self.seed = seed
        self.run_id = run_id or f"{time.time_ns():x}"
        self.session: aiohttp.ClientSession | None = None
        self.stats = RoundStats()

    # --- HTTP ---------------------------------------------------------------------------------

    async def post(self, kind: str, url: str, params: dict[str, str], call: PlayedCall) -> str:
        headers = {
            "X-Twilio-Signature": sign(self.token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        started = time.perf_counter()
        async with self.session.post(url, data=urlencode(params), headers=headers) as response:
            body = await response.text()
            status = response.status
        self.stats.latencies[kind].append(time.perf_counter() - started)
        self.stats.webhooks += 1
        call.webhooks += 1
        if status != 200:
            raise UnexpectedReply(f"{kind} answered {status}: {body[:200]}")
        return body

    # --- one call -----------------------------------------------------------------------------

    async def play_call(self, round_no: int, index: int, first_only: bool = False) -> PlayedCall:
        rng = random.Random(f"{self.seed}:{round_no}:{index}")
        number = caller_number(rng, round_no, index)
        sid = "CA" + hashlib.md5(f"{self.run_id}:{round_no}:{index}".encode()).hexdigest()
        call = PlayedCall(sid, None if number in WITHHELD else number)
        base = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": number,
            "To": TO_NUMBER,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            "FromCity": "PORTLAND",
            "FromState": "OR",
            "FromZip": "97201",
            "FromCountry": "US",
        }
        reply = await self.post("voice", self.base + "/twilio/voice", {**base, "CallStatus": "ringing"}, call)
        if first_only:
            expect(read_reply(reply), "gather", "/twilio/language")
            return call
        try:
            await Caller(self, rng, call, base).follow(reply)
        finally:
            await self.post(
                "status",
                self.base + "/twilio/status",
                {
                    **base,
                    "CallStatus": "completed",
                    "CallDuration": str(rng.randint(5, 300)),
                    "CallbackSource": "call-progress-events",
                    "SequenceNumber": "0",
                },
                call,
            )
        return call

    # --- many calls ---------------------------------------------------------------------------

    async def run(self, calls: int, round_no: int, record: Record, first_only: bool = False) -> RoundStats:
        """Play `calls` calls, `in_flight` at a time; add them to `record`."""
        self.stats = RoundStats()
        next_index = iter(range(calls))
        connector = aiohttp.TCPConnector(limit=self.in_flight, keepalive_timeout=60, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)

        async def worker() -> None:
            for index in next_index:
                try:
                    call = await self.play_call(round_no, index, first_only)
                except (TimeoutError, UnexpectedReply, ET.ParseError, aiohttp.ClientError) as exc:
                    self.stats.errors += 1
                    record.errors.append(f"round {round_no} call {index}: {type(exc).__name__}: {exc}")
                    continue
                record.calls.append(call)
                self.stats.calls += 1

        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.session = session
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(self.in_flight)))
            self.stats.seconds = time.perf_counter() - started
        self.session = None
        return self.stats


def expect(menu: Menu, kind: str, path: str = "") -> Menu:
    if menu.kind != kind or (path and menu.path != path):
        raise UnexpectedReply(f"expected {kind} {path}, heard {menu.kind} {menu.path}")
    return menu


class Caller:
    """One caller's mind, and the line's documented rules it relies on to know what it did."""

    def __init__(self, driver: Driver, rng: random.Random, call: PlayedCall, base: dict[str, str]) -> None:
        self.d, self.rng, self.call, self.base = driver, rng, call, base
        self.line = driver.line
        self.language = driver.line.first_language
        self.turns = 0

    async def press(self, menu: Menu, kind: str, digits: str | None) -> Menu:
        """Press `digits` at a `<Gather>`; None: press nothing (Twilio follows the redirect)."""
        self.turns += 1
        if self.turns > MAX_TURNS:
            raise Hangup
        if digits is None:
            if not menu.redirect:
                raise Hangup  # no redirect: the call ends (e.g. after "another topic?")
            params = {**self.base, "CallStatus": "in-progress"}
            url = menu.redirect
        else:
            params = {**self.base, "CallStatus": "in-progress", "Digits": digits}
            url = menu.action
        return read_reply(await self.d.post(kind, url, params, self.call))

    def decide(self, hang: float, wrong: float, silent: float, star: float) -> str:
        roll = self.rng.random()
        for choice, p in (("hang", hang), ("wrong", wrong), ("silent", silent), ("star", star)):
            if roll < p:
                return choice
            roll -= p
        return "key"

    async def follow(self, reply: str) -> None:
        try:
            menu = expect(read_reply(reply), "gather", "/twilio/language")
            menu = await self.choose_language(menu)
            for topic_no in range(MAX_TOPICS_PER_CALL):
                menu = await self.choose_topic(menu)
                if menu is None:
                    return
                roll = self.rng.random()
                if roll < 0.15 and topic_no + 1 < MAX_TOPICS_PER_CALL:
                    menu = expect(await self.press(menu, "next", "1"), "gather", "/twilio/topic")
                    continue
                if roll < 0.75:
                    expect(await self.press(menu, "next", "2"), "goodbye")
                elif roll < 0.80:
                    misses = 0
                    while misses + 1 < MAX_MISSES:  # wrong keys at "another topic?"
                        menu = expect(await self.press(menu, "next", "7"), "gather", "/twilio/next")
                        misses += 1
                    expect(await self.press(menu, "next", "7"), "goodbye")
                # otherwise the caller hangs up or lets the menu end the call
                return
        except Hangup:
            return

    async def choose_language(self, menu: Menu) -> Menu:
        misses = 0
        while True:
            choice = self.decide(hang=0.03, wrong=0.06, silent=0.04, star=0.02)
            if choice == "hang":
                raise Hangup
            if choice == "star":
                menu = expect(await self.press(menu, "language", "*"), "gather", "/twilio/language")
                continue
            if choice in ("wrong", "silent"):
                reply = await self.press(menu, "language", "7" if choice == "wrong" else None)
                misses += 1
                if misses < MAX_MISSES:
                    menu = expect(reply, "gather", "/twilio/language")
                    continue
                self.language = self.line.first_language
                return expect(reply, "gather", "/twilio/topic")
            digit = "1" if self.rng.random() < 0.6 else "2"
            self.language = self.line.languages[digit]
            return expect(await self.press(menu, "language", digit), "gather", "/twilio/topic")

    async def choose_topic(self, menu: Menu) -> Menu | None:
        """From the topic menu to the end of the comment; None when the caller has gone."""
        misses = 0
        while True:
            choice = self.decide(hang=0.03, wrong=0.06, silent=0.03, star=0.02)
            if choice == "hang":
                raise Hangup
            if choice == "star":
                menu = expect(await self.press(menu, "topic", "*"), "gather", "/twilio/topic")
                continue
            if choice in ("wrong", "silent"):
                reply = await self.press(menu, "topic", "5" if choice == "wrong" else None)
                misses += 1
                if misses < MAX_MISSES:
                    menu = expect(reply, "gather", "/twilio/topic")
                    continue
                slug, asks_stance = self.line.general, self.line.general_asks_stance
                break
            digit = self.rng.choices(list(self.line.topics), weights=[40, 30, 15, 15][: len(self.line.topics)])[0]
            slug, asks_stance = self.line.topics[digit]
            reply = await self.press(menu, "topic", digit)
            break
        self.call.topics.setdefault(slug, None)
        if asks_stance:
            reply = await self.choose_stance(expect(reply, "gather", "/twilio/stance"), slug)
        return await self.record(expect(reply, "record"), slug)

    async def choose_stance(self, menu: Menu, slug: str) -> Menu:
        misses = 0
        while True:
            choice = self.decide(hang=0.02, wrong=0.05, silent=0.03, star=0.01)
            if choice == "hang":
                raise Hangup
            if choice == "star":
                menu = expect(await self.press(menu, "stance", "*"), "gather", "/twilio/stance")
                continue
            if choice in ("wrong", "silent"):
                reply = await self.press(menu, "stance", "8" if choice == "wrong" else None)
                misses += 1
                if misses < MAX_MISSES:
                    menu = expect(reply, "gather", "/twilio/stance")
                    continue
                return reply  # three misses: the comment is taken without a position
            key = self.rng.choice("123")
            self.call.topics[slug] = STANCE_KEYS[key]
            return await self.press(menu, "stance", key)

    async def record(self, menu: Menu, slug: str) -> Menu | None:
        """At `<Record>`: leave a comment (or not); return the "another topic?" menu."""
        empty_misses = 0  # the `m` the line keeps in the no-comment redirect
        for _ in range(4):
            verb = menu.verb
            transcribe = verb.get("transcribeCallback")
            if (self.language == "en-US") != bool(transcribe):
                raise UnexpectedReply(f"transcribeCallback {transcribe!r} for a {self.language} caller")
            roll = self.rng.random()
            if roll < 0.02:
                raise Hangup  # gone before the beep: no recording at all
            if roll < 0.05:  # Twilio skips the action for an empty recording: the redirect
                await self.callbacks(verb, "RE" + self.rng.randbytes(16).hex(), 0, "absent")
                reply = read_reply(
                    await self.d.post(
                        "no-comment", menu.redirect, {**self.base, "CallStatus": "in-progress"}, self.call
                    )
                )
                empty_misses += 1
                if empty_misses < 2:
                    menu = expect(reply, "record")
                    continue
                return expect(reply, "gather", "/twilio/next")
            sid = "RE" + self.rng.randbytes(16).hex()
            seconds = 0 if roll < 0.10 else self.rng.randint(3, 120)
            hang_up = 0.10 <= roll < 0.13
            early = self.rng.random() < 0.15  # the callbacks overtake the action
            if early:
                await self.callbacks(verb, sid, seconds, "completed" if seconds else "absent")
            media = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
            params = {
                **self.base,
                "CallStatus": "in-progress",
                "Digits": "hangup" if hang_up else "#",
                "RecordingSid": sid,
                "RecordingUrl": media,
                "RecordingDuration": str(seconds),
            }
            reply = read_reply(await self.d.post("recorded", menu.action, params, self.call))
            if seconds:
                self.call.comments.append(slug)
            if not early:
                await self.callbacks(verb, sid, seconds, "completed" if seconds else "absent")
            if hang_up:
                expect(reply, "empty")
                raise Hangup
            if seconds:
                return expect(reply, "gather", "/twilio/next")
            menu = expect(reply, "record")
            empty_misses = 1
        raise Hangup  # four tries without a comment: the caller gives up

    async def callbacks(self, verb: ET.Element, sid: str, seconds: int, status: str) -> None:
        """Twilio's asynchronous callbacks for one recording."""
        media = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
        recording = {**self.base, "RecordingSid": sid, "RecordingUrl": media}
        await self.d.post(
            "recording-status",
            verb.get("recordingStatusCallback"),
            {
                **recording,
                "RecordingStatus": status,
                "RecordingDuration": str(seconds),
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
            },
            self.call,
        )
        if verb.get("transcribeCallback") and seconds > 2:
            await self.d.post(
                "transcription",
                verb.get("transcribeCallback"),
                {
                    **recording,
                    "TranscriptionSid": "TR" + sid[2:],
                    "TranscriptionStatus": "completed",
                    "TranscriptionText": "I would like to say a few words about this.",
                    "TranscriptionUrl": media + "/Transcriptions",
                },
                self.call,
            )


# --- what the counts must be ------------------------------------------------------------------


def expected_counts(calls: list[PlayedCall], slugs: tuple[str, ...], drop_one: bool = False) -> dict:
    """The counts API's figures, from the driver's own record alone. With `drop_one`, the
    first comment played is left out (the self-test: the check must then fail)."""
    topics = {
        slug: {"calls": 0, "callers": set(), "comments": 0, "stance": {"support": 0, "oppose": 0, "other": 0}}
        for slug in slugs
    }
    unrouted = 0
    dropped = not drop_one
    for call in calls:
        if not call.topics:
            unrouted += 1
        for slug, stance in call.topics.items():
            t = topics[slug]
            t["calls"] += 1
            if call.caller is not None:
                t["callers"].add(call.caller)
            if stance:
                t["stance"][stance] += 1
        for slug in call.comments:
            if not dropped:
                dropped = True
                continue
            topics[slug]["comments"] += 1
    for t in topics.values():
        t["callers"] = len(t["callers"])
    return {"calls": len(calls), "unrouted": unrouted, "topics": topics}


def compare_counts(expected: dict, shown: dict) -> list[str]:
    """Every difference between the expected counts and the API's; [] when they agree."""
    problems = []
    for name in ("calls", "unrouted"):
        if shown.get(name) != expected[name]:
            problems.append(f"{name}: the API says {shown.get(name)}, the driver played {expected[name]}")
    by_slug = {t["slug"]: t for t in shown.get("topics", [])}
    for slug, want in expected["topics"].items():
        got = by_slug.get(slug)
        if got is None:
            problems.append(f"topic {slug}: missing from the API")
            continue
        for name in ("calls", "callers", "comments"):
            if got.get(name) != want[name]:
                problems.append(f"topic {slug} {name}: the API says {got.get(name)}, the driver played {want[name]}")
        for stance, n in want["stance"].items():
            if got.get("stance", {}).get(stance) != n:
                problems.append(
                    f"topic {slug} {stance}: the API says {got.get('stance', {}).get(stance)}, the driver played {n}"
                )
    return problems


async def fetch_counts(base_url: str, api_token: str, **window: str) -> dict:
    async with aiohttp.ClientSession() as session:
        url = base_url.rstrip("/") + "/api/v1/counts" + (f"?{urlencode(window)}" if window else "")
        async with session.get(url, headers={"Authorization": f"Bearer {api_token}"}) as response:
            response.raise_for_status()
            return await response.json()


async def settled_counts(
    base_url: str, api_token: str, expected: dict, *, quiet: float = 3.0, timeout: float = 60.0
) -> dict:
    """The API's counts once they equal `expected`, or once they have not moved for `quiet`
    seconds (at most `timeout`). The line writes behind its replies: the last webhooks' facts
    reach the database a batch later."""
    deadline = time.monotonic() + timeout
    shown = await fetch_counts(base_url, api_token)
    still_since = time.monotonic()
    while compare_counts(expected, shown) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        latest = await fetch_counts(base_url, api_token)
        if latest != shown:
            shown, still_since = latest, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return shown


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]
