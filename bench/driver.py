"""The load driver: plays whole calls the way Twilio does, many at once, on one asyncio loop.

Each call is the simulated caller of ivr/caller.py (the one the tests and `flask line call`
play), driven over aiohttp, with a seeded random mind (`RandomCaller`): it hears the TwiML,
presses keys at each `<Gather>` (right keys, wrong keys, nothing, `*`), records at `<Record>`
(a comment, nothing, a hang-up, a recording Twilio drops), asks for another topic or not, and
sometimes hangs up mid-menu. Twilio's side is played as Twilio plays it: every webhook signed,
each with exactly the parameters Twilio sends, the recording status and transcription
callbacks (sometimes before the `<Record>` action), and the call status callback ending every
call.

The player predicts from the line's script (`config/line.yaml`) and the menu rules which menu
each reply must be; a reply of another kind is an error. It keeps its own record of what each
call did, and `expected_counts()` turns the records into the counts the API must show
(ivr/oracle.py); nothing here reads the line's tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import xml.etree.ElementTree as ET
from array import array
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp

from ivr.caller import (
    WITHHELD,
    CallEnd,
    CallPlayer,
    LineFacts,
    Menu,
    Phone,
    PlayedCall,
    Request,
    Response,
    SimulatedCall,
    Take,
    TwilioAccount,
    UnexpectedReply,
    play_async,
    sign,
)
from ivr.menu import ANOTHER_TOPIC_KEY, END_CALL_KEY, HANG_UP, NO_KEY, REPEAT_KEY, STANCE_KEYS
from ivr.oracle import compare_counts
from ivr.oracle import expected_counts as counts_played

__all__ = ["LineFacts", "PlayedCall", "compare_counts", "sign"]

# The webhooks whose latency the report shows.
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
MAX_TURNS = 40  # a call never takes more webhooks than this (the caller hangs up)
MAX_TOPICS_PER_CALL = 3
MAX_TAKES = 4  # recordings without a comment before the caller gives up
TRANSCRIPT = "I would like to say a few words about this."
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


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


def caller_phone(rng: random.Random, round_no: int, index: int) -> Phone:
    """Most callers call once; some call again from the same number; some withhold it."""
    roll = rng.random()
    if roll < 0.08:
        return Phone(rng.choice(WITHHELD))
    if roll < 0.20 and index > 0:
        index = rng.randrange(index)  # a caller who called earlier in this round calls again
    return Phone(f"+1{500 + round_no:03d}{index:07d}", "PORTLAND", "OR", "97201", "US")


# What bench callers enter where the line asks for a ZIP code.
ZIP_CODES = ("97201", "97204", "97205", "97209", "97211", "97266", "98101")


class RandomCaller:
    """A caller with a seeded random mind, and Twilio's side of its call."""

    def __init__(self, rng: random.Random, line: LineFacts, first_only: bool = False) -> None:
        self.rng, self.line, self.first_only = rng, line, first_only
        self.wrong_at_next = False
        self.empty_takes = 0
        digits = list(line.topics)
        self.topic_keys, self.topic_weights = digits, ([40, 30, 15, 15] + [5] * len(digits))[: len(digits)]
        self.not_a_topic = next(k for k in "5678034" if k not in line.topics)

    def decide(self, hang: float, wrong: float, silent: float, star: float) -> str:
        roll = self.rng.random()
        for choice, p in (("hang", hang), ("wrong", wrong), ("silent", silent), ("star", star)):
            if roll < p:
                return choice
            roll -= p
        return "key"

    def press(self, menu: Menu) -> str:
        if self.first_only:
            return HANG_UP
        if menu.kind == "next":
            return self.at_next(menu)
        if menu.kind == "zip":
            return self.at_zip()
        odds, wrong = {
            "language": ((0.03, 0.06, 0.04, 0.02), "7"),
            "topic": ((0.03, 0.06, 0.03, 0.02), self.not_a_topic),
            "stance": ((0.02, 0.05, 0.03, 0.01), "8"),
        }[menu.kind]
        choice = self.decide(*odds)
        if choice != "key":
            return {"hang": HANG_UP, "wrong": wrong, "silent": NO_KEY, "star": REPEAT_KEY}[choice]
        if menu.kind == "language":
            languages = list(self.line.languages)
            return languages[0] if self.rng.random() < 0.6 or len(languages) == 1 else languages[1]
        if menu.kind == "topic":
            return self.rng.choices(self.topic_keys, weights=self.topic_weights)[0]
        return self.rng.choice(list(STANCE_KEYS))

    def at_zip(self) -> str:
        """A ZIP code inside or outside the Portland districts, too short, skipped with pound or
        silence, or a hang-up."""
        roll = self.rng.random()
        if roll < 0.65:
            return self.rng.choice(ZIP_CODES)
        if roll < 0.75:
            return "972#"  # too short: asked once more
        if roll < 0.88:
            return "#"
        if roll < 0.97:
            return NO_KEY
        return HANG_UP

    def at_next(self, menu: Menu) -> str:
        if menu.misses:  # wrong keys at "another topic?" until the line says goodbye
            return "7"
        roll = self.rng.random()
        if roll < 0.15 and menu.topics_chosen < MAX_TOPICS_PER_CALL:
            return ANOTHER_TOPIC_KEY
        if roll < 0.75:
            return END_CALL_KEY
        if roll < 0.80:
            return "7"
        return HANG_UP  # or lets the menu end the call: no request either way

    def take(self, menu: Menu) -> Take | None:
        if self.empty_takes >= MAX_TAKES:
            return None  # no comment after four tries: the caller gives up
        roll = self.rng.random()
        if roll < 0.02:
            return None  # gone before the beep: no recording at all
        if roll < 0.05:  # Twilio skips the action for an empty recording: the redirect
            self.empty_takes += 1
            return Take(0, skipped=True, callbacks="before")
        seconds = 0 if roll < 0.10 else self.rng.randint(3, 120)
        self.empty_takes = 0 if seconds else self.empty_takes + 1
        early = self.rng.random() < 0.15  # the callbacks overtake the action
        return Take(
            seconds,
            hang_up=0.10 <= roll < 0.13,
            transcript=TRANSCRIPT if seconds > 2 else None,
            callbacks="before" if early else "after",
        )

    def retry(self, request: Request, index: int) -> bool:
        return False

    def fails(self, request: Request, index: int) -> bool:
        return False

    def ending(self) -> CallEnd | None:
        return None if self.first_only else CallEnd("completed", self.rng.randint(5, 300))


class Driver:
    """Plays calls against one base URL with `in_flight` calls at once over keep-alive."""

    def __init__(
        self, base_url: str, token: str, line: LineFacts, *, in_flight: int = 64, seed: int = 1, run_id: str = ""
    ) -> None:
        self.base = base_url.rstrip("/")
        self.account = TwilioAccount(ACCOUNT_SID, token)
        self.line = line
        self.in_flight = in_flight
        self.seed = seed
        self.run_id = run_id or f"{time.time_ns():x}"
        self.session: aiohttp.ClientSession | None = None
        self.stats = RoundStats()

    async def send(self, request: Request) -> Response:
        started = time.perf_counter()
        async with self.session.post(
            request.url, data=urlencode(request.params), headers={**request.headers(), **FORM}
        ) as response:
            body = await response.text()
            status = response.status
        latencies = self.stats.latencies.get(request.kind)
        if latencies is not None:
            latencies.append(time.perf_counter() - started)
        self.stats.webhooks += 1
        return Response(status, body)

    async def play_call(self, round_no: int, index: int, first_only: bool = False) -> PlayedCall:
        """One call (only its first webhook with `first_only`); what it played."""
        rng = random.Random(f"{self.seed}:{round_no}:{index}")
        phone = caller_phone(rng, round_no, index)
        sid = "CA" + hashlib.md5(f"{self.run_id}:{round_no}:{index}".encode()).hexdigest()
        call = SimulatedCall(self.account, self.base, phone, call_sid=sid)
        mind = RandomCaller(rng, self.line, first_only)
        return await play_async(CallPlayer(call, self.line, mind, max_webhooks=MAX_TURNS), self.send)

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


# --- what the counts must be ------------------------------------------------------------------


def expected_counts(calls: list[PlayedCall], slugs: tuple[str, ...], drop_one: bool = False) -> dict:
    """The counts API's figures, from the calls' own records alone (ivr/oracle.py). With
    `drop_one`, the first comment played is left out (the self-test: the check must then fail)."""
    expected = counts_played(calls, slugs)
    if drop_one:
        first = next((comment for call in calls if call.reached for comment in call.comments), None)
        if first is not None:
            expected["topics"][first.topic]["comments"] -= 1
    return expected


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
