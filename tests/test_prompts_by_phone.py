"""Recording a prompt by phone: an admin makes a one-time code, calls the line, presses star
twice at the language menu and types the code; the take, recorded through Twilio's exact
`<Record>` action and recording status callback, is fetched by the worker from the Twilio
stand-in (tests/console_support.py MediaServer) and appears in the console to accept or
discard; an accepted take goes to the draft, as an upload does. The call that records it is a
test call, counted nowhere. No code, a wrong, used or expired one, or too many wrong ones: a
wrong key."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from facts import write_path
from ivr.caller import Recording, new_sid
from ivr.dev_media import comment_audio
from jobs.runner import Worker
from jobs.work import sweep
from models import Call, Job, PromptCode, PromptCodeFailure, PromptTake, db, summary, utcnow
from models.prompts import code_hash, new_code
from tests.console_support import wav_bytes
from tests.test_try_line import TryPhone, counts_now

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (make test installs it)")
CODE = re.compile(r'id="shown-code">(\d{8})<')


def make_code(admin, language: str = "ht", key: str = "greeting") -> str:
    admin.get("/admin/prompts")
    page = admin.post(f"/admin/prompts/{language}/{key}/code")
    assert page.status_code == 200
    return CODE.search(page.get_data(as_text=True)).group(1)


def enter(twilio, code: str):
    """A call that presses star twice at the language menu, then types `code`."""
    call = twilio.call()
    call.dial()
    assert call.press("*").gather.get("numDigits") == "1"
    entry = call.press("*")
    assert entry.menu_path() == "language" and entry.gather.get("numDigits") is None  # the same menu, more keys
    assert "Pou kreyòl ayisyen, peze 3." in entry.said
    return call, call.press(code)


def record_take(call, reply, sid: str, seconds: int = 3):
    """Twilio's `<Record>` action, then its recording status callback, as Twilio sends them."""
    record = reply.record
    recording = Recording(sid, seconds)
    taken = call.send(call.simulated.record_action(record.get("action"), recording))
    call.send(call.simulated.recording_status(record.get("recordingStatusCallback"), recording))
    return taken


def run_worker(app) -> None:
    Worker(app, ("fetch_prompt",), name="test-worker").run(burst=True)


def test_a_prompt_recorded_by_phone_appears_in_the_console_to_accept(media_server, app, sign_in, twilio):
    admin = sign_in("admin")
    code = make_code(admin)
    with app.app_context():
        stored = db.session.scalar(select(PromptCode))
        assert stored.code_hash == code_hash(app.config["SECRET_KEY"], code) and code not in stored.code_hash

    call, reply = enter(twilio, code)
    record = reply.record
    assert record is not None and "Mèsi paske ou rele liy kòmantè piblik la." in reply.said
    assert urlparse(record.get("action")).path == "/twilio/prompt-recorded"
    assert urlparse(record.get("recordingStatusCallback")).path == "/twilio/prompt-recording-status"
    assert record.get("transcribe") in (None, "false")

    sid = new_sid("RE")
    media_server.audio[sid] = comment_audio("Mèsi paske ou rele liy kòmantè piblik la.", "ht", 3)
    taken = record_take(call, reply, sid)
    assert taken.hangs_up and "in the console" in taken.said
    with app.app_context():
        take = db.session.scalar(select(PromptTake))
        assert (take.recording_sid, take.language, take.key, take.state) == (sid, "ht", "greeting", "waiting")
        assert db.session.scalar(select(Job.kind).where(Job.key == sid)) == "fetch_prompt"

    run_worker(app)
    assert [auth is not None for path, auth in media_server.requests if sid in path] == [True]  # with Basic auth
    page = admin.get("/admin/prompts").get_data(as_text=True)
    assert "Recorded by phone" in page and f"/admin/prompts/takes/{take.id}.wav" in page
    heard = admin.get(f"/admin/prompts/takes/{take.id}.wav")
    assert heard.status_code == 200 and heard.data[:4] == b"RIFF"
    assert not twilio.call().dial().plays()  # not on the line until accepted

    # Accepted, it is the greeting's prompt in the draft; callers hear it once that is published.
    assert admin.post(f"/admin/prompts/takes/{take.id}/accept").status_code == 302
    assert "Mèsi paske ou rele liy kòmantè piblik la." in twilio.call().dial().said
    tried = TryPhone(sign_in("staff")).dial("draft")
    assert "Mèsi paske ou rele liy kòmantè piblik la." not in tried.said and len(tried.plays()) == 1
    page = admin.get("/admin/script").get_data(as_text=True)
    assert "recorded prompt ht" in page and "greeting: added" in page
    admin.post("/admin/script/publish")
    greeting = twilio.call().dial()
    assert "Mèsi paske ou rele liy kòmantè piblik la." not in greeting.said and greeting.plays() == tried.plays()
    with app.app_context():
        assert db.session.get(PromptTake, take.id).state == "accepted"


def test_a_call_that_records_a_prompt_is_a_test_call_counted_nowhere(media_server, app, sign_in, twilio, runner):
    counted = twilio.call(From="+15035550111")  # one real call, so there is something to count
    counted.dial()
    counted.press("1")
    counted.press("1")
    counted.hang_up()
    write_path(app).flush()
    before = counts_now(app)
    admin = sign_in("admin")

    call, reply = enter(twilio, make_code(admin))
    sid = new_sid("RE")
    media_server.audio[sid] = wav_bytes(2.0)
    record_take(call, reply, sid)
    call.hang_up()
    write_path(app).flush()
    assert counts_now(app) == before
    result = runner.invoke(args=["counts", "verify"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        stored = db.session.scalar(select(Call).where(Call.call_sid == call.sid))
        assert stored.is_test and stored.status == "completed"
        assert not db.session.scalar(select(Call).where(Call.call_sid == counted.sid)).is_test
        assert summary.verify(db.session) == []


def test_a_take_can_be_discarded_to_record_again(media_server, app, sign_in, twilio):
    admin = sign_in("admin")
    call, reply = enter(twilio, make_code(admin, "es-US", "goodbye"))
    sid = new_sid("RE")
    media_server.audio[sid] = wav_bytes(0.2)  # too short to be a prompt
    record_take(call, reply, sid, seconds=0)
    run_worker(app)
    page = admin.get("/admin/prompts").get_data(as_text=True)
    assert "could not be used: it lasts 0.2 s: a prompt lasts at least 0.5 s; record it again" in page
    with app.app_context():
        take_id = db.session.scalar(select(PromptTake.id))
    assert admin.post(f"/admin/prompts/takes/{take_id}/accept").status_code == 409
    assert admin.post(f"/admin/prompts/takes/{take_id}/discard").status_code == 302
    assert "Recorded by phone" not in admin.get("/admin/prompts").get_data(as_text=True)


def test_no_caller_reaches_the_recording_without_a_valid_code(media_server, app, sign_in, twilio):
    admin = sign_in("admin")
    code = make_code(admin)
    # A wrong code is a wrong key: the menu again, with the polite notice.
    call, reply = enter(twilio, "12345678")
    assert reply.record is None and reply.menu_path() == "language"
    assert "Sorry, that is not one of the choices." in reply.said
    assert parse_qs(urlparse(reply.gather.get("action")).query)["m"] == ["1"]
    # A code without the two stars is not a code: the language menu takes one key.
    plain = twilio.call()
    plain.dial()
    assert plain.reply.gather.get("numDigits") == "1"
    # An expired code is refused; so is a used one.
    with app.app_context():
        db.session.execute(update(PromptCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert enter(twilio, code)[1].record is None
    with app.app_context():
        db.session.execute(update(PromptCode).values(expires_at=utcnow() + timedelta(minutes=5)))
        db.session.commit()
    assert enter(twilio, code)[1].record is not None
    assert enter(twilio, code)[1].record is None  # used once already
    with app.app_context():
        assert db.session.scalar(select(PromptCodeFailure.id).order_by(PromptCodeFailure.id.desc())) == 3
    # The prompt routes answer only the call that redeemed the code.
    other = twilio.call()
    other.dial()
    with app.app_context():
        code_id = db.session.scalar(select(PromptCode.id))
    stray = other.simulated.record_action(f"/twilio/prompt-recorded?c={code_id}&s=1", Recording(new_sid("RE"), 3))
    assert twilio.deliver(stray).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(PromptTake)) is None


def test_after_too_many_wrong_codes_every_code_is_refused(app, sign_in, twilio):
    app.config["PROMPT_WRONG_CODES_PER_HOUR"] = 2
    admin = sign_in("admin")
    code = make_code(admin)
    for wrong in ("11111111", "22222222"):
        assert enter(twilio, wrong)[1].record is None
    assert enter(twilio, code)[1].record is None  # the right code, refused for the hour
    with app.app_context():
        db.session.execute(update(PromptCodeFailure).values(at=utcnow() - timedelta(hours=2)))
        db.session.commit()
    assert enter(twilio, code)[1].record is not None


def test_only_admins_make_codes(app, sign_in):
    staff = sign_in("staff", "someone@example.org")
    staff.get("/inbox")
    assert staff.post("/admin/prompts/ht/greeting/code").status_code == 403
    admin = sign_in("admin")
    admin.get("/admin/prompts")
    assert admin.post("/admin/prompts/ht/stance/code").status_code == 404  # a line with a placeholder


def test_a_take_whose_status_callback_never_came_is_fetched_by_the_sweep(media_server, app, sign_in, twilio):
    admin = sign_in("admin")
    call, reply = enter(twilio, make_code(admin))
    sid = new_sid("RE")
    media_server.audio[sid] = wav_bytes(2.0)
    call.send(call.simulated.record_action(reply.record.get("action"), Recording(sid, 2)))  # no callback
    with app.app_context():
        assert sweep(db.session, app.config) == 0  # not yet: the callback may still come
        db.session.execute(update(PromptTake).values(created_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
        assert sweep(db.session, app.config) == 1
    run_worker(app)
    with app.app_context():
        assert db.session.scalar(select(PromptTake.state)) == "ready"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed=st.text(alphabet="0123456789*#", min_size=0, max_size=12))
def test_nothing_typed_at_the_language_menu_but_the_code_records(app, twilio, typed):
    """Whatever keys a caller types after two stars, only the code made leads to a `<Record>`,
    and every answer is a menu (never an error)."""
    with app.app_context():
        code, _ = new_code(db.session, app.config["SECRET_KEY"], "ht", "greeting", None, 15)
        db.session.commit()
    call = twilio.call()
    call.dial()
    call.press("*")
    call.press("*")
    reply = call.press(typed)
    assert (reply.record is not None) == (typed == code)
    assert reply.record is not None or reply.menu_path() in ("language", "topic")
