"""A small threaded load for the fault tests: whole calls played by the simulated caller
(ivr/caller.py) against served lines, over `requests`, through what faults do to a request
(refused, dropped mid-answer, delivered twice). Twilio's rules for a failed request (the
Fallback URL, or the same request again) are the player's. The expected counts come from the
callers' own records (ivr/oracle.py), never from the app's tables."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import requests

from ivr.caller import CallEnd, CallPlayer, Phone, PlayedCall, Request, Response, Script, SimulatedCall, Take
from ivr.oracle import counts_shown
from ivr.oracle import expected_counts as counts_played
from models import db
from models.recordings import recording_for_reference
from tests.conftest import CALLER, LINE, TWILIO_ACCOUNT, eventually

TOPICS = {"1": "budget", "2": "transit", "3": "housing", "9": "general"}
ASKS_STANCE = {"budget", "transit"}


@dataclass
class Plan:
    """One call: English or Spanish, a topic, a position where it asks, a comment (0 s: none)."""

    sid: str
    number: str
    language: str
    topic: str
    stance: str | None
    seconds: int

    def mind(self) -> Script:
        keys = [self.language, self.topic] + ([self.stance] if self.stance else [])
        return Script(keys, [Take(self.seconds)], end=CallEnd(duration=40))

    def phone(self) -> Phone:
        return Phone(self.number) if Phone(self.number).withheld else replace(CALLER, number=self.number)


def plans(count: int, seed: int = 7) -> list[Plan]:
    rng = random.Random(seed)
    made = []
    for i in range(count):
        topic = rng.choice(list(TOPICS))
        made.append(
            Plan(
                sid=f"CA{seed:04x}{i:028x}",
                number=rng.choice([f"+1503555{n:04d}" for n in range(40)] + ["anonymous"]),
                language=rng.choice("12"),
                topic=topic,
                stance=rng.choice("123") if TOPICS[topic] in ASKS_STANCE else None,
                seconds=rng.choice([0, 4, 12, 30]),
            )
        )
    return made


def expected_counts(played: list[PlayedCall]) -> dict:
    return counts_played(played, LINE.slugs)


def counts_seen(base: str, token: str) -> dict:
    body = requests.get(base + "/api/v1/counts", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    return counts_shown(body)


def counts_settled(base: str, token: str, expected: dict, timeout: float = 30.0) -> dict:
    """The counts once they equal `expected`, or as they are after `timeout` s: the line
    writes behind its replies, and a killed worker's journal is replayed seconds later."""
    return eventually(lambda: counts_seen(base, token), lambda seen: seen == expected, timeout)


@dataclass
class Delivery:
    """Twilio's connections to the served lines `bases`. A call's requests go to them in turn.
    With `twice`, every request is delivered twice: every other pair at the same moment, the
    rest one after the other."""

    bases: list[str]
    twice: bool = False
    local: threading.local = field(default_factory=threading.local)
    failures: int = 0  # attempts refused, dropped or answered with an error
    fallbacks: int = 0  # Fallback URL requests made
    webhooks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def post(self, request: Request) -> Response:
        """One attempt: the answer, or what became of the request."""
        with self.lock:
            self.webhooks += 1
            self.fallbacks += request.kind == "fallback"
        try:
            answer = self.session().post(request.url, data=request.params, headers=request.headers(), timeout=30)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            self.local.session = requests.Session()
            refused = "NewConnectionError" in repr(exc) or "Connection refused" in repr(exc)
            response = Response.refused() if refused else Response.dropped()
        else:
            response = Response(answer.status_code, answer.text)
        if response.status == 200:
            self.local.failed = 0
            return response
        with self.lock:
            self.failures += 1
        self.local.failed = getattr(self.local, "failed", 0) + 1
        time.sleep(0.05 * min(self.local.failed, 10))  # a worker restarting: give it a moment
        return response

    def deliver(self, request: Request, pair: int) -> tuple[Response, ...]:
        if not self.twice:
            return (self.post(request),)
        if pair % 2:
            return self.post(request), self.post(request)
        answers: list[Response] = []
        other = threading.Thread(target=lambda: answers.append(self.post(request)))
        other.start()
        first = self.post(request)
        other.join()
        return first, answers[0]


def play(delivery: Delivery, plan: Plan, index: int) -> PlayedCall:
    """Play one planned call; its requests go to the served lines in turn."""
    bases = delivery.bases
    call = SimulatedCall(TWILIO_ACCOUNT, bases[index % len(bases)], plan.phone(), call_sid=plan.sid)
    player = CallPlayer(call, LINE, plan.mind(), failures="fallback")
    sent = 0
    while (request := player.next_request()) is not None:
        moved = request.moved_to(bases[(index + sent) % len(bases)])
        player.answer(*delivery.deliver(moved, pair=index + sent))
        sent += 1
    return player.played


def play_all(delivery: Delivery, planned: list[Plan], threads: int = 16, during=None) -> list[PlayedCall]:
    """Play every planned call, `threads` at a time; `during` runs alongside. What was played."""
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(play, delivery, plan, i) for i, plan in enumerate(planned)]
        if during is not None:
            during()
        return [future.result() for future in futures]


def unfound_references(app, played: list[PlayedCall]) -> dict[str, str | None]:
    """Each reference number read back that does not find its recording, with the
    RecordingSid it found instead (None: nothing). Empty when every caller can be found by
    the number they heard."""
    wrong = {}
    with app.app_context():
        for call in played:
            for sid, references in call.references.items():
                for reference in references:
                    recording = recording_for_reference(db.session, reference)
                    if recording is None or recording.recording_sid != sid:
                        wrong[reference] = recording.recording_sid if recording else None
    return wrong
