"""Duplicates at the same moment, against gunicorn with several workers: each pair of
identical webhooks is released together on a barrier, and every fact counts once."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import requests
from twilio.request_validator import RequestValidator

from models import db
from models.recordings import recording_for_reference
from models.tokens import create_token
from tests.conftest import ACCOUNT, TOKEN, eventually, recording_url
from tests.load import REFERENCE

CALLS = 50
TOPICS = ["1", "2", "3", "9"]
SLUGS = {"1": "budget", "2": "transit", "3": "housing", "9": "general"}
STANCE_TOPICS = {"1", "2"}
STANCES = {"1": "support", "2": "oppose", "3": "other"}


def burst(posts: list[tuple[str, dict]]) -> list[requests.Response]:
    """Send every request at once: threads wait on one barrier, then all post."""
    validator = RequestValidator(TOKEN)
    barrier = threading.Barrier(len(posts))
    results: list[requests.Response | Exception | None] = [None] * len(posts)

    def send(i: int, url: str, params: dict) -> None:
        session = requests.Session()
        headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
        barrier.wait()
        try:
            results[i] = session.post(url, data=params, headers=headers, timeout=60)
        except requests.RequestException as exc:
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i, url, p)) for i, (url, p) in enumerate(posts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for response in results:
        assert isinstance(response, requests.Response), response
        assert response.status_code == 200, response.text[:300]
    return results


def twice(posts: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [p for post in posts for p in (post, post)]


def action_of(body: str) -> str:
    root = ET.fromstring(body)
    verb = root.find("Gather") if root.find("Gather") is not None else root.find("Record")
    return verb.get("action")


def test_fifty_duplicate_pairs_at_once_count_once(served_line, app):
    line = served_line(workers=2, threads=8)
    calls = []
    for i in range(CALLS):
        topic = TOPICS[i % 4]
        calls.append(
            {
                "params": {
                    "CallSid": f"CA{i:032x}",
                    "AccountSid": ACCOUNT,
                    "From": f"+1503555{i % 20:04d}",
                    "To": "+15035550199",
                    "Direction": "inbound",
                },
                "language": "1" if i % 2 else "2",
                "topic": topic,
                "stance": str(i % 3 + 1) if topic in STANCE_TOPICS else None,
                "recording": f"RE{i:032x}",
                "seconds": 0 if i % 10 == 0 else 5 + i,
            }
        )

    def step(posts_for):
        posts = [posts_for(c) for c in calls]
        responses = burst(twice(posts))
        for c, (first, second) in zip(calls, zip(responses[::2], responses[1::2], strict=True), strict=True):
            # A retry hears exactly the same, but for the reference number when the two went to
            # different processes at once: each heard number must then find the comment.
            heard = [REFERENCE.search(r.text) for r in (first, second)]
            c.setdefault("heard", set()).update(m[0].replace(", ", "") for m in heard if m)
            assert REFERENCE.sub("", first.text) == REFERENCE.sub("", second.text)
            c["body"] = first.text

    step(lambda c: (line.base + "/twilio/voice", {**c["params"], "CallStatus": "ringing"}))
    step(lambda c: (action_of(c["body"]), {**c["params"], "Digits": c["language"]}))
    step(lambda c: (action_of(c["body"]), {**c["params"], "Digits": c["topic"]}))
    with_stance = [c for c in calls if c["stance"]]
    responses = burst(twice([(action_of(c["body"]), {**c["params"], "Digits": c["stance"]}) for c in with_stance]))
    for c, response in zip(with_stance, responses[::2], strict=True):
        c["body"] = response.text
    step(
        lambda c: (
            action_of(c["body"]),
            {
                **c["params"],
                "Digits": "#",
                "RecordingSid": c["recording"],
                "RecordingUrl": recording_url(c["recording"]),
                "RecordingDuration": str(c["seconds"]),
            },
        )
    )
    step(
        lambda c: (
            line.base + "/twilio/recording-status",
            {
                **c["params"],
                "RecordingSid": c["recording"],
                "RecordingStatus": "completed",
                "RecordingUrl": recording_url(c["recording"]),
                "RecordingDuration": str(c["seconds"]),
            },
        )
    )
    step(lambda c: (line.base + "/twilio/status", {**c["params"], "CallStatus": "completed", "CallDuration": "60"}))

    expected = {
        slug: {"calls": 0, "comments": 0, "callers": set(), "support": 0, "oppose": 0, "other": 0}
        for slug in SLUGS.values()
    }
    for c in calls:
        e = expected[SLUGS[c["topic"]]]
        e["calls"] += 1
        e["callers"].add(c["params"]["From"])
        e["comments"] += c["seconds"] > 0
        if c["stance"]:
            e[STANCES[c["stance"]]] += 1

    with app.app_context():
        token = create_token(db.session, "concurrency")
        db.session.commit()

    def counted() -> dict:
        body = requests.get(
            line.base + "/api/v1/counts", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        return {
            "calls": (body["calls"], body["unrouted"]),
            **{t["slug"]: (t["calls"], t["comments"], t["callers"], t["stance"]) for t in body["topics"]},
        }

    want = {
        "calls": (CALLS, 0),
        **{
            slug: (e["calls"], e["comments"], len(e["callers"]), {s: e[s] for s in ("support", "oppose", "other")})
            for slug, e in expected.items()
        },
    }
    assert eventually(counted, lambda seen: seen == want) == want  # the line writes behind its replies
    with app.app_context():
        for c in calls:
            assert bool(c["heard"]) == (c["seconds"] > 0)
            for reference in c["heard"]:
                assert recording_for_reference(db.session, reference).recording_sid == c["recording"], reference
