"""Every path a caller can take, through signed webhooks, checking the TwiML they hear."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from models import Call, Choice, Recording, db


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def test_greeting_says_recorded_and_offers_every_language(twilio):
    reply = twilio.call().dial()
    says = reply.says()
    assert "This call is recorded" in reply.said
    assert "Esta llamada se graba" in reply.said
    assert "Yo anrejistre apèl sa a" in reply.said
    assert "For English, press 1." in reply.said and "Para español, oprima 2." in reply.said
    assert "Pou kreyòl ayisyen, peze 3." in reply.said
    # No voice speaks Haitian Creole: until its prompts are recorded, a French voice reads them.
    assert {(s.get("language"), s.get("voice")) for s in says} == {
        ("en-US", "Polly.Joanna"),
        ("es-US", "Polly.Lupe"),
        ("fr-FR", "Polly.Lea"),
    }
    gather = reply.gather
    assert gather.get("numDigits") == "1" and urlparse(gather.get("action")).path == "/twilio/language"
    assert urlparse(reply.redirect).path == "/twilio/language"  # no key: re-prompt


def test_spanish_caller_hears_spanish_throughout(twilio, app):
    call = twilio.call()
    call.dial()
    menu = call.press("2")
    assert "Por favor, elija el tema" in menu.said and "oprima 9" in menu.said
    assert {s.get("language") for s in menu.says()} == {"es-US"}
    stance = call.press("1")
    assert "Si usted apoya el presupuesto propuesto de la ciudad, oprima 1" in stance.said
    record = call.press("2")
    assert "deje su comentario" in record.said
    rec = record.record
    assert rec.get("transcribe") in (None, "false")  # Twilio transcribes English only
    saved, _ = call.speak()
    assert "Su número de referencia es" in saved.said
    with app.app_context():
        assert db.session.get(Call, call.sid).language == "es-US"


def test_english_call_with_stance_stores_every_fact(twilio, app):
    call = twilio.call()
    call.dial()
    call.press("1")
    stance = call.press("1")  # budget asks for a position
    assert (
        "If you support the proposed city budget, press 1. If you oppose, press 2. Otherwise, press 3." in stance.said
    )
    record_reply = call.press("2")
    rec = record_reply.record
    assert "Please leave your comment after the tone. Press the pound key when you are done." in record_reply.said
    assert rec.get("maxLength") == "180" and rec.get("trim") == "trim-silence" and rec.get("finishOnKey") == "#"
    assert rec.get("transcribe") == "true" and urlparse(rec.get("transcribeCallback")).path == "/twilio/transcription"
    assert urlparse(rec.get("recordingStatusCallback")).path == "/twilio/recording-status"
    assert rec.get("recordingStatusCallbackEvent") == "completed absent"
    saved, sid = call.speak(seconds=42)
    assert "Your reference number is" in saved.said
    call.hang_up(duration=95)
    with app.app_context():
        stored = db.session.get(Call, call.sid)
        assert (stored.language, stored.status, stored.duration) == ("en-US", "completed", 95)
        assert (stored.from_city, stored.from_state, stored.from_zip, stored.from_country) == (
            "PORTLAND",
            "OR",
            "97201",
            "US",
        )
        assert stored.caller_hash and stored.from_number is None  # CALLER_NUMBERS=hash by default
        kinds = [c.kind for c in db.session.scalars(select(Choice).order_by(Choice.step))]
        assert kinds == ["language", "topic", "stance"]
        recording = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert (recording.stance, recording.duration, recording.language) == ("oppose", 42, "en-US")


def test_reference_number_is_read_digit_by_digit_and_stable_on_retry(twilio):
    call = twilio.call()
    call.dial()
    call.press("1")
    record = call.press("3")  # housing: no position asked
    assert record.record is not None
    first, sid = call.speak()
    call.reply = record
    again, _ = call.speak(sid=sid)  # Twilio retries the same action
    spoken = first.said.split("Your reference number is ")[1].split(".")[0]
    digits = spoken.split(", ")
    assert len(digits) >= 6 and all(len(d) == 1 and d.isdigit() for d in digits)
    assert first.body == again.body


def test_references_are_unique_and_their_replies_not_kept(twilio):
    """Each comment's reply reads back its own number: keeping them would only fill the
    process's cache of replies and push out the menus that repeat."""
    from ivr import twiml

    before = twiml.another_menu.cache_info().currsize
    seen = set()
    for _ in range(5):
        call = twilio.call()
        call.dial()
        call.press("1")
        call.press("9")
        reply, _ = call.speak()
        seen.add(reply.said.split("Your reference number is ")[1].split(".")[0])
    assert len(seen) == 5
    assert twiml.another_menu.cache_info().currsize == before


def test_star_repeats_the_topic_menu_without_counting_a_miss(twilio):
    call = twilio.call()
    call.dial()
    menu = call.press("1")
    again = call.press("*")
    assert "Sorry" not in again.said and again.said == menu.said
    assert query(again.action)["m"] == query(menu.action)["m"]


def test_wrong_and_missing_keys_reprompt_politely_then_fall_back_to_general(twilio, app, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    first = call.press("7")  # no topic on 7
    assert first.said.startswith("Sorry, that is not one of the choices.")
    second = call.wait()
    assert second.said.startswith("Sorry, we did not hear a choice.")
    third = call.press("#")  # an empty entry
    assert third.record is not None  # general: no position, straight to the recording
    assert query(third.record.get("action"))["t"] == "general"
    counts = {t["slug"]: t["calls"] for t in api("/api/v1/counts").json["topics"]}
    assert counts == {"budget": 0, "transit": 0, "housing": 0, "general": 1}


def test_three_misses_at_language_menu_choose_the_first_language(twilio, app):
    call = twilio.call()
    call.dial()
    call.press("5")
    call.wait()
    menu = call.wait()
    assert "Please choose the topic" in menu.said
    with app.app_context():
        assert db.session.get(Call, call.sid).language == "en-US"


def test_three_misses_at_position_menu_record_without_position(twilio, app, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("2")  # transit asks for a position
    call.press("9")
    call.wait()
    record = call.press("0")
    assert record.record is not None and "p" not in query(record.record.get("action"))
    call.speak()
    transit = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "transit")
    assert transit["calls"] == 1 and transit["comments"] == 1
    assert transit["stance"] == {"support": 0, "oppose": 0, "other": 0}


def test_non_numeric_digits_reprompt(twilio):
    call = twilio.call()
    call.dial()
    reply = call.press("abc")
    assert "Sorry, that is not one of the choices." in reply.said and reply.gather is not None


def test_another_topic_then_goodbye(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    saved, _ = call.speak()
    assert "To comment on another topic, press 1." in saved.said
    menu = call.press("1")
    assert "Please choose the topic" in menu.said
    call.press("1")
    call.press("1")
    bye, _ = call.speak()
    end = call.press("2")
    assert "Goodbye" in end.said and end.hangs_up
    body = api("/api/v1/counts").json
    counts = {t["slug"]: (t["calls"], t["comments"], t["stance"]["support"]) for t in body["topics"]}
    assert counts["housing"] == (1, 1, 0) and counts["budget"] == (1, 1, 1)
    assert body["calls"] == 1 and body["unrouted"] == 0


def test_silence_instead_of_a_comment_is_offered_again_then_the_menu(twilio):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    again = call.post(call.reply.redirect, CallStatus="in-progress")  # Twilio skipped the action
    assert "We did not hear a comment." in again.said and again.record is not None
    menu = call.post(again.redirect, CallStatus="in-progress")
    assert "To comment on another topic" in menu.said


def test_zero_second_recording_is_not_a_comment(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    reply, _ = call.speak(seconds=0)
    assert reply.record is not None and "We did not hear a comment." in reply.said
    housing = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "housing")
    assert housing["calls"] == 1 and housing["comments"] == 0


def test_a_second_silent_recording_leads_to_the_choice_of_another_topic(twilio, api):
    """A 0-second recording is offered once more, as one Twilio skips is: after the second
    the caller hears the choice of another topic, not the recording a third time."""
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    again, _ = call.speak(seconds=0)
    assert again.record is not None and "We did not hear a comment." in again.said
    menu, _ = call.speak(seconds=0)
    assert menu.record is None and "We did not hear a comment." in menu.said
    assert "To comment on another topic" in menu.said
    housing = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "housing")
    assert housing["calls"] == 1 and housing["comments"] == 0


def test_silence_then_a_comment_is_a_comment(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    call.speak(seconds=0)
    thanks, _ = call.speak(seconds=9)
    assert "Your reference number is" in thanks.said
    housing = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "housing")
    assert housing["calls"] == 1 and housing["comments"] == 1


def test_one_language_line_skips_the_language_menu(tmp_path, settings):
    import yaml

    from app import create_app
    from models.line import load_script, read_script_file
    from tests.conftest import Caller, in_process_twilio

    data = yaml.safe_load(open(create_app(settings).config["LINE_CONFIG"]))
    data["languages"] = data["languages"][:1]
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    app = create_app({**settings, "LINE_CONFIG": str(path)})
    with app.app_context():
        load_script(db.session, read_script_file(path))
        db.session.commit()
    call = Caller(in_process_twilio(app))
    reply = call.dial()
    assert "This call is recorded" in reply.said and "Please choose the topic" in reply.said
    assert "español" not in reply.said
    with app.app_context():
        assert db.session.get(Call, call.sid).language == "en-US"
        db.engine.dispose()
