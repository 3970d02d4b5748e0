"""Duplicates at the same moment, against gunicorn with several workers: fifty simulated calls
(ivr/caller.py) in lockstep, each request delivered twice, the pair released together on a
barrier; every fact counts once, and every reference number read back finds its comment."""

from __future__ import annotations

import threading
from dataclasses import replace

import requests

from ivr.caller import CallEnd, CallPlayer, Request, Response, Script, SimulatedCall, Take
from ivr.oracle import compare_counts, expected_counts
from models import db
from models.recordings import recording_for_reference
from models.tokens import create_token
from tests.conftest import CALLER, LINE, TWILIO_ACCOUNT, eventually

CALLS = 50
TOPICS = ["1", "2", "3", "9"]
STANCE_TOPICS = {"1", "2"}


def burst(sent: list[Request]) -> list[Response]:
    """Send every request at once: threads wait on one barrier, then all post."""
    barrier = threading.Barrier(len(sent))
    results: list[Response | Exception | None] = [None] * len(sent)

    def send(i: int, request: Request) -> None:
        session = requests.Session()
        barrier.wait()
        try:
            answer = session.post(request.url, data=request.params, headers=request.headers(), timeout=60)
            results[i] = Response(answer.status_code, answer.text)
        except requests.RequestException as exc:
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i, request)) for i, request in enumerate(sent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for response in results:
        assert isinstance(response, Response), response
    return results


def caller(base: str, i: int) -> CallPlayer:
    """The i-th call: a language, a topic, a position where it asks, a comment (0 s for one in ten)."""
    topic = TOPICS[i % 4]
    keys = ["1" if i % 2 else "2", topic] + ([str(i % 3 + 1)] if topic in STANCE_TOPICS else [])
    take = Take(0 if i % 10 == 0 else 5 + i, recording_sid=f"RE{i:032x}")
    phone = replace(CALLER, number=f"+1503555{i % 20:04d}")
    call = SimulatedCall(TWILIO_ACCOUNT, base, phone, call_sid=f"CA{i:032x}")
    return CallPlayer(call, LINE, Script(keys, [take], end=CallEnd(duration=60)))


def test_fifty_duplicate_pairs_at_once_count_once(served_line, app):
    line = served_line(workers=2, threads=8)
    players = [caller(line.base, i) for i in range(CALLS)]
    while pending := [(player, request) for player in players if (request := player.next_request()) is not None]:
        answers = burst([request for _, request in pending for _ in range(2)])
        for (player, _), first, second in zip(pending, answers[::2], answers[1::2], strict=True):
            # The player checks that the two heard the same, but for the reference number when
            # they went to different processes at once, and keeps every number heard.
            player.answer(first, second)
    played = [player.played for player in players]
    expected = expected_counts(played, LINE.slugs)
    assert expected["calls"] == CALLS and sum(t["comments"] for t in expected["topics"].values()) == 45

    with app.app_context():
        token = create_token(db.session, "concurrency")
        db.session.commit()

    def differences() -> list[str]:
        body = requests.get(line.base + "/api/v1/counts", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return compare_counts(expected, body.json())

    assert eventually(differences, lambda found: found == []) == []  # the line writes behind its replies
    with app.app_context():
        for call in played:
            (recording,) = call.recordings.values()
            assert bool(recording.references) == (recording.seconds > 0)
            for reference in recording.references:
                assert recording_for_reference(db.session, reference).recording_sid == recording.recording_sid
