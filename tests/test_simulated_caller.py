"""The simulated caller (ivr/caller.py) sends exactly what Twilio sends, and the oracle
(ivr/oracle.py) says what the line must count: for any call, however it is played, the API's
counts equal the oracle's for what was played."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from ivr.caller import (
    CallEnd,
    CallPlayer,
    Choice,
    Comment,
    Phone,
    PlayedCall,
    Request,
    Response,
    Script,
    SimulatedCall,
    Take,
    UnexpectedReply,
    play,
    sign,
)
from ivr.menu import HANG_UP, NO_KEY
from ivr.oracle import compare_counts, expected_counts
from models import db
from models.recordings import recording_for_reference
from tests.conftest import CALLER, LINE, TOKEN, TWILIO_ACCOUNT, Twilio

CALL = {"AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "Caller", "Direction", "From", "To"}
PLACES = {side + part for side in ("From", "Caller", "To", "Called") for part in ("City", "State", "Zip", "Country")}
RECORDING_STATUS = {
    "AccountSid",
    "CallSid",
    "RecordingChannels",
    "RecordingDuration",
    "RecordingSid",
    "RecordingSource",
    "RecordingStartTime",
    "RecordingStatus",
    "RecordingUrl",
}
TRANSCRIPTION = {
    "AccountSid",
    "CallSid",
    "RecordingSid",
    "RecordingUrl",
    "TranscriptionSid",
    "TranscriptionStatus",
    "TranscriptionText",
    "TranscriptionType",
    "TranscriptionUrl",
}


def test_signs_as_twilio_does():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert sign("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert sign(b"12345", url, params) == RequestValidator("12345").compute_signature(url, params)


class Recorder:
    """A transport to the test client that keeps every request sent."""

    def __init__(self, client) -> None:
        self.client, self.sent = client, []

    def __call__(self, request: Request) -> Response:
        self.sent.append(request)
        answer = self.client.post(request.url, data=request.params, headers=request.headers())
        return Response(answer.status_code, answer.get_data(as_text=True))

    def of(self, kind: str) -> list[dict[str, str]]:
        return [r.params for r in self.sent if r.kind == kind]


def test_each_request_carries_exactly_what_twilio_sends(client):
    """The callbacks name the call only by its CallSid: a stand-in that added `From` to them
    hid that the line must not rely on it there."""
    send = Recorder(client)
    mind = Script(
        ["1", "1", "1", "1", "3"],
        [Take(9, transcript="Words.", callbacks="before"), Take(0, status="absent")],
        failures={2},
        end=CallEnd("completed", 75),
    )
    call = SimulatedCall(TWILIO_ACCOUNT, "http://localhost", CALLER)
    played = play(CallPlayer(call, LINE, mind), send)
    assert played.topics == {"budget": "support", "housing": None}

    (voice,) = send.of("voice")
    assert set(voice) == CALL | PLACES and voice["CallStatus"] == "ringing"
    assert (voice["From"], voice["Caller"], voice["FromCity"], voice["Direction"]) == (
        CALLER.number,
        CALLER.number,
        "PORTLAND",
        "inbound",
    )
    for kind in ("language", "topic", "stance", "next"):
        for params in send.of(kind):
            assert set(params) == CALL | PLACES | {"Digits"} and params["CallStatus"] == "in-progress", kind
    (fallback,) = send.of("fallback")  # the topic webhook, which Twilio saw fail
    assert set(fallback) == CALL | PLACES | {"Digits", "ErrorCode", "ErrorUrl"}
    assert fallback["ErrorUrl"].startswith("http://localhost/twilio/topic?")
    for params in send.of("recorded"):
        assert set(params) == CALL | PLACES | {"Digits", "RecordingDuration", "RecordingSid", "RecordingUrl"}
        assert params["RecordingUrl"] == TWILIO_ACCOUNT.recording_url(params["RecordingSid"])
    completed, absent = send.of("recording-status")
    assert set(completed) == RECORDING_STATUS and completed["RecordingStatus"] == "completed"
    assert set(absent) == RECORDING_STATUS | {"ErrorCode"} and absent["RecordingStatus"] == "absent"
    (transcription,) = send.of("transcription")
    assert set(transcription) == TRANSCRIPTION and transcription["TranscriptionText"] == "Words."
    (status,) = send.of("status")
    assert set(status) == CALL | PLACES | {"CallDuration", "Timestamp", "CallbackSource", "SequenceNumber"}
    assert (status["CallStatus"], status["CallDuration"]) == ("completed", "75")
    validator = RequestValidator(TOKEN)
    assert all(validator.validate(r.url, r.params, r.headers()["X-Twilio-Signature"]) for r in send.sent)


def test_the_tests_step_by_step_caller_sends_the_same(client):
    sent = []

    def send(url, params, headers):
        sent.append(params)
        return client.post(url, data=params, headers=headers)

    call = Twilio(send).call()
    call.dial()
    call.press("1")
    call.press("3")
    _, sid = call.speak(seconds=7, digits=HANG_UP)
    call.recording_status(sid, seconds=7)
    call.transcription(sid, "Hello.")
    call.hang_up()
    voice, language, topic, recorded, recording_status, transcription, status = sent
    assert set(voice) == CALL | PLACES and set(language) == set(topic) == CALL | PLACES | {"Digits"}
    assert recorded["Digits"] == HANG_UP and recorded["CallStatus"] == "completed"
    assert set(recording_status) == RECORDING_STATUS and "From" not in recording_status
    assert set(transcription) == TRANSCRIPTION and "From" not in transcription
    assert {"CallDuration", "Timestamp", "CallbackSource", "SequenceNumber", "From"} <= set(status)


def test_a_reply_the_caller_could_not_have_heard_is_an_error(client):
    """The player predicts each menu from the script and the menu rules."""

    bodies = []

    def wrong_menu(request: Request) -> Response:
        answer = client.post(request.url, data=request.params, headers=request.headers())
        bodies.append(answer.get_data(as_text=True))
        if request.kind == "topic":  # as if the line had offered the languages again
            return Response(answer.status_code, bodies[0])
        return Response(answer.status_code, bodies[-1])

    call = SimulatedCall(TWILIO_ACCOUNT, "http://localhost", CALLER)
    with pytest.raises(UnexpectedReply):
        play(CallPlayer(call, LINE, Script(["1", "3"])), wrong_menu)


# --- the oracle, on records made by hand ---------------------------------------------------------


def made(sid: str, number: str | None, *choices: Choice, comments=(), reached=True) -> PlayedCall:
    call = PlayedCall(sid, number or "anonymous", number, reached=reached)
    for choice in choices:
        call.learn(choice)
    for comment in comments:
        call.learn(comment)
    return call


def test_oracle_counts_by_the_documented_rules():
    kept = spoken = {"action_answered": True, "status": "completed"}
    calls = [
        # Budget: support, then budget again: oppose (the later press wins), and two comments.
        made(
            "CA1",
            "+1",
            Choice(1, "language", language="en-US"),
            Choice(2, "topic", topic="budget"),
            Choice(3, "stance", topic="budget", stance="support"),
            Choice(5, "topic", topic="budget"),
            Choice(6, "stance", topic="budget", stance="oppose"),
            comments=[
                Comment("RE1", "budget", "support", "en-US", 9, **spoken),
                Comment("RE2", "budget", "oppose", "en-US", 4, **spoken),
            ],
        ),
        # The same number again; a comment of 0 s, one absent, one whose action never came.
        made(
            "CA2",
            "+1",
            Choice(2, "topic", topic="budget"),
            Choice(4, "stance", topic="budget", stance="other"),
            Choice(3, "stance", topic="budget", stance="support"),  # learnt late, pressed earlier
            comments=[
                Comment("RE3", "budget", None, "en-US", 0, **spoken),
                Comment("RE4", "budget", None, "en-US", 5, action_answered=True, status="absent"),
                Comment("RE5", None, None, "en-US", 5, status="completed"),
            ],
        ),
        made(
            "CA3", None, Choice(1, "topic", topic="housing"), comments=[Comment("RE6", "housing", None, "", 3, **kept)]
        ),
        made("CA4", "+2"),  # unrouted
        made("CA5", "+3", Choice(1, "topic", topic="housing"), reached=False),  # never reached the line
    ]
    expected = expected_counts(calls, ["budget", "transit", "housing"])
    assert (expected["calls"], expected["unrouted"]) == (4, 1)
    assert expected["topics"]["budget"] == {
        "calls": 2,
        "callers": 1,
        "comments": 2,
        "stance": {"support": 0, "oppose": 1, "other": 1},
        "callbacks": 0,
    }
    assert expected["topics"]["housing"] == {
        "calls": 1,
        "callers": 0,
        "comments": 1,
        "stance": {"support": 0, "oppose": 0, "other": 0},
        "callbacks": 0,
    }
    assert expected["topics"]["transit"]["calls"] == 0
    assert expected_counts(calls, callers_known=False)["topics"]["budget"]["callers"] is None


def test_compare_counts_names_each_difference():
    expected = expected_counts([made("CA1", "+1", Choice(1, "topic", topic="housing"))], ["housing"])
    none = dict.fromkeys(("support", "oppose", "other"), 0)
    shown = {
        "calls": 1,
        "unrouted": 0,
        "topics": [
            {"slug": "housing", "calls": 1, "callers": 1, "comments": 1, "stance": none},
            {"slug": "general", "calls": 1, "callers": 0, "comments": 0, "stance": none},
        ],
    }
    assert compare_counts(expected, shown) == [
        "topic general calls: the API says 1, the callers played 0",
        "topic housing comments: the API says 1, the callers played 0",
    ]


# --- any call, played any way ---------------------------------------------------------------------

NOISE = st.one_of(  # now and then a miss or a repeat; sometimes three misses
    st.just([]), st.lists(st.sampled_from(["7", "5", "*", "#", NO_KEY]), max_size=3)
)
TAKES = st.builds(
    Take,
    seconds=st.sampled_from([0, 1, 4, 30]),
    skipped=st.booleans(),
    hang_up=st.booleans(),
    status=st.sampled_from(["auto", "completed", "absent", "failed", None]),
    transcript=st.sampled_from([None, "Some words."]),
    transcription_status=st.sampled_from(["completed", "failed"]),
    callbacks=st.sampled_from(["before", "after", "late"]),
    transcript_first=st.booleans(),
)
COMMENTS = st.builds(  # a comment that is heard, its callbacks in any order
    Take,
    seconds=st.integers(1, 60),
    transcript=st.sampled_from([None, "Some words."]),
    callbacks=st.sampled_from(["before", "after", "late"]),
    transcript_first=st.booleans(),
)
ENDS = st.one_of(
    st.none(),
    st.builds(
        CallEnd,
        status=st.sampled_from(["completed", "busy", "no-answer"]),
        duration=st.integers(0, 600),
        after_late=st.integers(0, 3),
    ),
)


@st.composite
def scripts(draw) -> Script:
    """A caller who means to choose a language and one to three topics (with a position where
    it is asked), comment on each and hang up or say goodbye; with missed and wrong keys, `*`,
    empty or dropped recordings, a hang-up anywhere, retries and webhooks Twilio saw fail."""
    keys = [*draw(NOISE), draw(st.sampled_from(["1", "2"]))]
    takes = []
    visits = draw(st.integers(1, 3))
    topic = draw(st.sampled_from(["1", "2", "3", "9"]))
    for visit in range(visits):
        if visit and draw(st.booleans()):  # another topic, or the same again (a position changed)
            topic = draw(st.sampled_from(["1", "2", "3", "9"]))
        keys += [*draw(NOISE), topic]
        if LINE.topics[topic][1]:
            keys += [*draw(NOISE), draw(st.sampled_from(["1", "2", "3"]))]
        takes.append(draw(st.one_of(COMMENTS, COMMENTS, TAKES)))
        keys.append("1" if visit + 1 < visits else draw(st.sampled_from(["2", "7", NO_KEY, HANG_UP])))
    if draw(st.integers(0, 3)) == 0:
        keys = keys[: draw(st.integers(0, len(keys)))] + [HANG_UP]
    return Script(
        keys,
        takes,
        then=draw(st.sampled_from([NO_KEY, HANG_UP])),
        more_takes=draw(st.one_of(st.none(), TAKES)),
        retries=draw(st.sets(st.integers(0, 30), max_size=4)),
        failures=draw(st.sets(st.integers(0, 30), max_size=3)),
        end=draw(ENDS),
    )


NUMBERS = st.sampled_from(["+15035550100", "+15035550101", "+15035550102", "anonymous", "unknown"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(scripts(), NUMBERS), min_size=1, max_size=3))
def test_the_counts_equal_what_was_played_however_it_was_played(app, twilio, api, calls):
    """Hang-ups anywhere, missed and wrong keys, `*`, positions changed, second topics, empty and
    failed recordings, callbacks before, after or long after the action (or never), retries,
    webhooks Twilio saw fail (the Fallback URL): every call counted as it was played, and
    every reference number read back finds its comment. The line's counts accumulate over the
    examples, and so does what was played."""
    played = app.extensions.setdefault("played by the test", [])
    for script, number in calls:
        phone = Phone(number) if Phone(number).withheld else replace(CALLER, number=number)
        call = twilio.play(script, phone)
        played.append(call)
        for topic, stances in itertools.groupby(sorted(call.positions), key=lambda p: p[0]):
            if len({stance for _, stance in stances}) > 1:
                event(f"position changed on {topic}")
        event(f"{len(call.topics)} topic(s), {len(call.comments)} comment(s)")
    assert compare_counts(expected_counts(played, LINE.slugs), api("/api/v1/counts").json) == []
    with app.app_context():
        for call in played:
            for sid, references in call.references.items():
                for reference in references:
                    assert recording_for_reference(db.session, reference).recording_sid == sid


def test_flask_line_call_from_a_blocked_number_hears_the_block_message(app, sign_in, runner, api):
    """A person trying the line does not know whether the number is blocked: the simulated
    caller takes either the first menu or the block message, and says which it heard."""
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "+15035550177", "reason": "trying"}).status_code == 302
    blocked = runner.invoke(args=["line", "call", "--press", "1", "1", "--from", "+15035550177"])
    assert blocked.exit_code == 0, blocked.output
    assert "This line cannot take your call" in blocked.output and "counted as blocked" in blocked.output
    assert "Topics chosen" not in blocked.output
    free = runner.invoke(args=["line", "call", "--press", "1", "1", "--from", "+15035550178"])
    assert free.exit_code == 0, free.output
    assert "Topics chosen: " in free.output and "blocked" not in free.output
    counts = api("/api/v1/counts").json
    assert counts["blocked"] == 1 and counts["calls"] == 2
