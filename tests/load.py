"""A small threaded load for the fault tests: plays whole calls against a served line the way
Twilio does (signed, following the TwiML), and keeps its own record of what it played, from
which the expected counts are computed, never from the app's tables."""

from __future__ import annotations

import random
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from twilio.request_validator import RequestValidator

from models import db
from models.recordings import recording_for_reference
from tests.conftest import ACCOUNT, TOKEN, eventually, recording_url

TOPICS = {"1": "budget", "2": "transit", "3": "housing", "9": "general"}
ASKS_STANCE = {"budget", "transit"}
STANCES = {"1": "support", "2": "oppose", "3": "other"}
REFERENCE = re.compile(r"\d(?:, \d){6,7}")  # a reference number, read digit by digit


@dataclass
class Plan:
    sid: str
    number: str
    language: str
    topic: str
    stance: str | None
    seconds: int

    @property
    def slug(self) -> str:
        return TOPICS[self.topic]


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


def expected_counts(played: list[Plan]) -> dict:
    topics = defaultdict(lambda: {"calls": 0, "comments": 0, "callers": set(), "support": 0, "oppose": 0, "other": 0})
    for plan in played:
        t = topics[plan.slug]
        t["calls"] += 1
        t["comments"] += plan.seconds > 0
        if plan.number != "anonymous":
            t["callers"].add(plan.number)
        if plan.stance:
            t[STANCES[plan.stance]] += 1
    return {
        "calls": len(played),
        "unrouted": 0,
        "topics": {
            slug: (t["calls"], len(t["callers"]), t["comments"], t["support"], t["oppose"], t["other"])
            for slug, t in topics.items()
        },
    }


def counts_settled(base: str, token: str, expected: dict, timeout: float = 30.0) -> dict:
    """The counts once they equal `expected`, or as they are after `timeout` s: the line
    writes behind its replies, and a killed worker's journal is replayed seconds later."""
    return eventually(lambda: counts_seen(base, token), lambda seen: seen == expected, timeout)


def counts_seen(base: str, token: str) -> dict:
    body = requests.get(base + "/api/v1/counts", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    return {
        "calls": body["calls"],
        "unrouted": body["unrouted"],
        "topics": {
            t["slug"]: (
                t["calls"],
                t["callers"],
                t["comments"],
                t["stance"]["support"],
                t["stance"]["oppose"],
                t["stance"]["other"],
            )
            for t in body["topics"]
            if t["calls"]
        },
    }


@dataclass
class Twilio:
    """Delivers webhooks as Twilio does. A request whose connection could not be made is
    retried; one that was sent and then dropped goes to the Fallback URL (callbacks, which
    have none, are retried). A Fallback URL request that is dropped in turn is sent again as it
    was, naming the webhook that failed first: Twilio itself would end the call there, which
    no count could be checked against; sent to the Fallback URL as a failure of the Fallback
    URL, it would take a general comment the plan never made. With `twice`, every webhook is
    delivered twice: every other pair at the same moment, the rest one after the other."""

    bases: list[str]
    twice: bool = False
    validator: RequestValidator = field(default_factory=lambda: RequestValidator(TOKEN))
    local: threading.local = field(default_factory=threading.local)
    retries: int = 0
    fallbacks: int = 0
    webhooks: int = 0
    heard: dict[str, set[str]] = field(default_factory=dict)  # RecordingSid -> references read back

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def post_once(self, url: str, params: dict) -> requests.Response:
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)}
        self.webhooks += 1
        return self.session().post(url, data=params, headers=headers, timeout=30)

    def deliver(self, url: str, params: dict, callback: bool = False) -> str:
        for attempt in range(20):
            try:
                response = self.post_once(url, params)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # Refused: Twilio retries. Sent, then dropped (even mid-answer): the Fallback URL.
                self.local.session = requests.Session()
                refused = "NewConnectionError" in repr(exc) or "Connection refused" in repr(exc)
                if refused or callback:
                    self.retries += 1
                    time.sleep(0.05 * (attempt + 1))
                    continue
                self.fallbacks += 1
                if "ErrorUrl" not in params:  # the Fallback URL's own request, dropped: sent again as it was
                    base = url.split("/twilio/")[0]
                    url, params = base + "/twilio/fallback", {**params, "ErrorCode": "11200", "ErrorUrl": url}
                continue
            if response.status_code >= 500:
                self.retries += 1
                continue
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
            return response.text
        raise AssertionError(f"no answer from {url}")

    def send(self, url: str, params: dict, callback: bool = False, pair: int = 0) -> str:
        if not self.twice:
            return self.heard_in(params, self.deliver(url, params, callback))
        if pair % 2:
            first = self.deliver(url, params, callback)
            second = self.deliver(url, params, callback)
        else:
            answers: list[str] = []
            other = threading.Thread(target=lambda: answers.append(self.deliver(url, params, callback)))
            other.start()
            first = self.deliver(url, params, callback)
            other.join()
            second = answers[0]
        # A duplicate hears exactly the same, but for the reference number when the two reached
        # different processes: the caller hears one of them, and each must find the comment.
        same = REFERENCE.sub("#", first) == REFERENCE.sub("#", second)
        assert same, f"a duplicate heard something else: {url}\n{first}\n{second}"
        self.heard_in(params, second)
        return self.heard_in(params, first)

    def heard_in(self, params: dict, body: str) -> str:
        if params.get("RecordingSid"):
            found = {m.replace(", ", "") for m in REFERENCE.findall(body)}
            self.heard.setdefault(params["RecordingSid"], set()).update(found)
        return body


def unfound_references(app, twilio: Twilio) -> dict[str, str | None]:
    """Each reference number read back that does not find its recording, with the
    RecordingSid it found instead (None: nothing). Empty when every caller can be found by
    the number they heard."""
    wrong = {}
    with app.app_context():
        for sid, references in twilio.heard.items():
            for reference in references:
                recording = recording_for_reference(db.session, reference)
                if recording is None or recording.recording_sid != sid:
                    wrong[reference] = recording.recording_sid if recording else None
    return wrong


def action(body: str) -> str:
    root = ET.fromstring(body)
    verb = root.find("Gather")
    verb = verb if verb is not None else root.find("Record")
    assert verb is not None, body
    return verb.get("action")


def play(twilio: Twilio, plan: Plan, index: int) -> None:
    base = twilio.bases[index % len(twilio.bases)]
    common = {
        "CallSid": plan.sid,
        "AccountSid": ACCOUNT,
        "From": plan.number,
        "To": "+15035550199",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    body = twilio.send(base + "/twilio/voice", {**common, "CallStatus": "ringing"}, pair=index)
    keys = [plan.language, plan.topic] + ([plan.stance] if plan.stance else [])
    for n, key in enumerate(keys):
        url = action(body).replace(base, twilio.bases[(index + n + 1) % len(twilio.bases)], 1)
        body = twilio.send(url, {**common, "CallStatus": "in-progress", "Digits": key}, pair=index + n)
    rec = "RE" + plan.sid[2:]
    media = {"RecordingSid": rec, "RecordingUrl": recording_url(rec), "RecordingDuration": str(plan.seconds)}
    twilio.send(action(body), {**common, "CallStatus": "in-progress", "Digits": "#", **media}, pair=index + 1)
    if plan.seconds:
        twilio.send(
            base + "/twilio/recording-status",
            {**common, **media, "RecordingStatus": "completed"},
            callback=True,
            pair=index,
        )
    twilio.send(
        base + "/twilio/status",
        {**common, "CallStatus": "completed", "CallDuration": "40"},
        callback=True,
        pair=index + 1,
    )


def play_all(twilio: Twilio, planned: list[Plan], threads: int = 16, during=None) -> None:
    """Play every planned call, `threads` at a time; `during` runs alongside."""
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(play, twilio, plan, i) for i, plan in enumerate(planned)]
        if during is not None:
            during()
        for future in futures:
            future.result()
