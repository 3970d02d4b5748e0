"""What is stored and counted: retries, duplicates, callbacks in any order, hang-ups,
bad input. Expected counts come from what each test played."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from ivr.menu import HANG_UP
from models import Call, Choice, Recording, Transcription, db


def rows(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def topic(api, slug: str, **window) -> dict:
    return next(t for t in api("/api/v1/counts", **window).json["topics"] if t["slug"] == slug)


def test_webhook_without_call_sid_gets_400_and_stores_nothing(twilio, app):
    for path in ("/twilio/voice", "/twilio/status", "/twilio/recording-status", "/twilio/language?s=1"):
        response = twilio.post(path, {"From": "+15035550100", "CallStatus": "ringing", "Digits": "1"})
        assert response.status_code == 400, path
    assert rows(app, Call) == 0


def test_oversized_body_gets_413(twilio, app):
    response = twilio.post("/twilio/voice", {"CallSid": "CA" + "7" * 32, "Junk": "x" * 70_000})
    assert response.status_code == 413
    assert rows(app, Call) == 0


def test_wrong_method_gets_405(client):
    assert client.get("/twilio/voice").status_code == 405
    assert client.put("/twilio/status").status_code == 405


def test_tampered_step_in_url_gets_400_not_500(twilio):
    call = twilio.call()
    call.dial()
    response = twilio.post("/twilio/topic?s=abc&l=en-US", {**call.params, "Digits": "1"})
    assert response.status_code == 400


def test_hang_up_during_greeting_counts_the_call_as_unrouted(twilio, api, app):
    call = twilio.call()
    call.dial()
    call.hang_up(duration=3)
    body = api("/api/v1/counts").json
    assert (body["calls"], body["unrouted"]) == (1, 1)
    with app.app_context():
        stored = db.session.get(Call, call.sid)
        assert (stored.status, stored.duration) == ("completed", 3)


def test_hang_up_at_position_menu_still_counts_the_topic(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("2")  # transit; hangs up while asked for a position
    call.hang_up()
    transit = topic(api, "transit")
    assert (transit["calls"], transit["comments"]) == (1, 0)
    assert api("/api/v1/counts").json["unrouted"] == 0


def test_hang_up_while_recording_keeps_the_comment(twilio, api, app):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("1")
    call.press("1")
    reply, sid = call.speak(seconds=20, digits=HANG_UP)
    assert list(reply.root) == []  # Twilio ignores it: the caller has gone
    call.recording_status(sid, seconds=20)
    call.hang_up()
    budget = topic(api, "budget")
    assert (budget["calls"], budget["comments"], budget["stance"]["support"]) == (1, 1, 1)
    with app.app_context():
        assert db.session.scalar(select(Recording.finished_by)) == HANG_UP


def play_to_record(twilio, keys=("1", "1", "2")):
    call = twilio.call()
    call.dial()
    for key in keys:
        call.press(key)
    return call


ORDERS = list(itertools.permutations(["action", "status", "transcription"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_recording_callbacks_in_any_order_complete_one_comment(twilio, api, app, order):
    call = play_to_record(twilio)
    record_reply = call.reply
    sid = "RE" + "a" * 32
    for step in order:
        if step == "action":
            call.reply = record_reply
            call.speak(seconds=33, sid=sid)
        elif step == "status":
            call.recording_status(sid, seconds=33)
        else:
            call.transcription(sid, text="I oppose the budget.")
    budget = topic(api, "budget")
    assert (budget["calls"], budget["comments"], budget["stance"]["oppose"]) == (1, 1, 1)
    with app.app_context():
        recording = db.session.scalar(select(Recording))
        assert (recording.topic_id is not None, recording.stance, recording.duration, recording.status) == (
            True,
            "oppose",
            33,
            "completed",
        )
        assert db.session.scalar(select(Transcription.text)) == "I oppose the budget."
    comments = api("/api/v1/comments").json["comments"]
    assert [(c["topic"], c["transcript"], c["status"]) for c in comments] == [
        ("budget", "I oppose the budget.", "completed")
    ]


def test_every_webhook_twice_counts_once(twilio, api, app):
    """Replay each request of a whole call a second time, as a Twilio retry would."""
    sent = []
    original = twilio.send

    def send_twice(url, params, headers):
        first = original(url, params, headers)
        second = original(url, params, headers)
        assert first.get_data() == second.get_data()
        sent.append(url)
        return first

    twilio.send = send_twice
    call = play_to_record(twilio, ("1", "2", "3"))
    saved, sid = call.speak(seconds=15)
    call.recording_status(sid, seconds=15)
    call.transcription(sid)
    call.reply = saved
    call.press("1")  # another topic
    call.press("3")
    _, sid2 = call.speak(seconds=8)
    call.recording_status(sid2, seconds=8)
    call.hang_up()
    body = api("/api/v1/counts").json
    counts = {t["slug"]: (t["calls"], t["callers"], t["comments"], t["stance"]["other"]) for t in body["topics"]}
    assert counts == {"budget": (0, 0, 0, 0), "transit": (1, 1, 1, 1), "housing": (1, 1, 1, 0), "general": (0, 0, 0, 0)}
    assert (body["calls"], body["unrouted"]) == (1, 0)
    assert rows(app, Choice) == 4 and rows(app, Recording) == 2 and rows(app, Transcription) == 1


def test_last_position_pressed_wins(twilio, api):
    call = play_to_record(twilio, ("1", "1", "1"))  # budget: support
    call.speak()
    call.press("1")
    call.press("1")
    call.press("2")  # budget again: oppose
    call.speak()
    budget = topic(api, "budget")
    assert (budget["calls"], budget["comments"], budget["stance"]) == (1, 2, {"support": 0, "oppose": 1, "other": 0})


def test_absent_and_failed_recordings_are_not_comments(twilio, api):
    for status in ("absent", "failed", "completed"):
        call = play_to_record(twilio, ("1", "3"))
        _, sid = call.speak(seconds=4)
        call.recording_status(sid, status=status, seconds=4)
    housing = topic(api, "housing")
    assert (housing["calls"], housing["comments"]) == (3, 1)


def test_a_late_in_progress_status_does_not_undo_completed(twilio, api, app):
    call = play_to_record(twilio, ("1", "3"))
    _, sid = call.speak(seconds=4)
    call.recording_status(sid, status="absent", seconds=0)
    call.recording_status(sid, status="in-progress", seconds=4)
    assert topic(api, "housing")["comments"] == 0


def test_status_callback_for_a_call_never_seen_is_stored(twilio, api, app):
    call = twilio.call()
    call.hang_up(status="busy")
    with app.app_context():
        assert db.session.get(Call, call.sid).status == "busy"
    assert api("/api/v1/counts").json["calls"] == 1


def test_transcription_for_a_recording_never_seen_is_linked_when_the_action_arrives(twilio, api, app):
    call = play_to_record(twilio, ("1", "3"))
    record_reply = call.reply
    call.transcription("RE" + "b" * 32, text="Early words.")
    with app.app_context():
        assert db.session.scalar(select(Recording.topic_id)) is None
    call.reply = record_reply
    call.speak(seconds=9, sid="RE" + "b" * 32)
    assert topic(api, "housing")["comments"] == 1
    assert api("/api/v1/comments").json["comments"][0]["transcript"] == "Early words."


def test_recording_sid_taken_from_url_when_missing(twilio, app):
    call = play_to_record(twilio, ("1", "3"))
    url = call.reply.record.get("action")
    sid = "RE" + "c" * 32
    call.post(
        url,
        CallStatus="in-progress",
        Digits="#",
        RecordingDuration="6",
        RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{sid}",
    )
    with app.app_context():
        assert db.session.scalar(select(Recording.recording_sid)) == sid


@pytest.mark.parametrize("mode", ["raw", "hash", "none"])
def test_caller_numbers_setting(settings, mode):
    from app import create_app
    from models.line import load_script, read_script_file
    from tests.conftest import Caller, in_process_twilio

    app = create_app({**settings, "CALLER_NUMBERS": mode})
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
    client = app.test_client()
    twilio = in_process_twilio(app)
    for number in ("+15035550100", "+15035550100", "+15035550111", "anonymous", "+266696687"):
        call = Caller(twilio, From=number)
        call.dial()
        call.press("1")
        call.press("3")
    from models.tokens import create_token

    with app.app_context():
        token = create_token(db.session, "t")
        db.session.commit()
        stored = {c.from_number for c in db.session.scalars(select(Call))}
        hashes = {c.caller_hash for c in db.session.scalars(select(Call))}
    housing = next(
        t
        for t in client.get("/api/v1/counts", headers={"Authorization": f"Bearer {token}"}).json["topics"]
        if t["slug"] == "housing"
    )
    assert housing["calls"] == 5
    if mode == "raw":
        assert "+15035550100" in stored and housing["callers"] == 2
    elif mode == "hash":
        assert stored == {None} and len(hashes - {None}) == 2 and housing["callers"] == 2
        assert "+15035550100" not in str(hashes)
    else:
        assert stored == {None} and hashes == {None} and housing["callers"] is None
    with app.app_context():
        db.engine.dispose()


HANG_UPS = {
    # keys pressed before hanging up -> (calls, unrouted, budget calls, budget comments, support)
    "at the language menu": ([], (1, 1, 0, 0, 0)),
    "at the topic menu": (["1"], (1, 1, 0, 0, 0)),
    "at the position menu": (["1", "1"], (1, 0, 1, 0, 0)),
    "at the recording prompt": (["1", "1", "1"], (1, 0, 1, 0, 1)),
}


@pytest.mark.parametrize("where", list(HANG_UPS))
def test_hang_up_at_each_menu_keeps_what_was_chosen(twilio, api, where):
    keys, expected = HANG_UPS[where]
    call = twilio.call()
    call.dial()
    for key in keys:
        call.press(key)
    call.hang_up(duration=7)  # Twilio sends no action after a hang-up in a menu, only this
    body = api("/api/v1/counts").json
    budget = topic(api, "budget")
    assert (
        body["calls"],
        body["unrouted"],
        budget["calls"],
        budget["comments"],
        budget["stance"]["support"],
    ) == expected


def test_hang_up_after_the_reference_number(twilio, api, app):
    call = play_to_record(twilio, ("1", "1", "1"))
    _, sid = call.speak(seconds=12)
    call.recording_status(sid, seconds=12)
    call.hang_up(duration=40)
    budget = topic(api, "budget")
    assert (budget["calls"], budget["comments"], budget["stance"]["support"]) == (1, 1, 1)
    with app.app_context():
        assert db.session.get(Call, call.sid).duration == 40
