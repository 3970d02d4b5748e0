"""The draft script beside the live one (edit, see the differences, publish, undo), and "Try the
line": calls played from the console through the real webhooks, on the draft or the live
script, stored as test calls that count nowhere."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import asdict

import pytest
import yaml
from sqlalchemy import func, select

from facts import write_path
from ivr.caller import Reply, SimulatedCall, new_sid
from ivr.trial import TRIAL_HEADER, trial_mark
from models import AuditEntry, Call, Job, LineSettings, Recording, ScriptVersion, db, summary
from models.tally import tally
from tests.conftest import CALLER, TWILIO_ACCOUNT

NEW_GREETING = "Welcome to the draft of the city's comment line."
OLD_GREETING = "Thank you for calling the public comment line. This call is recorded."


class TryPhone:
    """The console's phone page, as its script drives it: each step through the server endpoint."""

    def __init__(self, console) -> None:
        self.console = console
        console.get("/try")
        self.token: str | None = None
        self.sid: str | None = None
        self.reply: Reply | None = None

    def post(self, path: str, body) -> dict:
        response = self.console.client.post(path, json=body, headers={"X-CSRF-Token": self.console.token})
        assert response.status_code == 200, response.get_data(as_text=True)
        data = response.get_json()
        assert data["status"] == 200, data
        self.token, self.sid = data["call"], data["call_sid"]
        self.reply = Reply(data["twiml"])
        return data

    def dial(self, script: str = "draft") -> Reply:
        self.post("/try/calls", {"script": script})
        return self.reply

    def step(self, **body) -> Reply:
        self.post("/try/calls/next", {"call": self.token, **body})
        return self.reply

    def press(self, digits: str) -> Reply:
        return self.step(kind="gather", url=self.reply.action, digits=digits)

    def record(self, seconds: int = 5) -> Reply:
        record = self.reply.record
        assert record is not None, self.reply.body
        return self.step(
            kind="record",
            url=record.get("action"),
            seconds=seconds,
            digits="#",
            status_callback=record.get("recordingStatusCallback"),
        )

    def hang_up(self, seconds: int = 40) -> Reply:
        return self.step(kind="hangup", seconds=seconds)


def edit_greeting(app, admin, language: str, greeting: str) -> None:
    with app.app_context():
        from models.drafts import draft_document

        wording = dict(draft_document(db.session)["wording"][language])
    admin.get("/admin/topics")
    assert admin.post(f"/admin/wording/{language}", {**wording, "greeting": greeting}).status_code == 302


def whole_trial_call(phone: TryPhone, script: str = "draft", language: str = "1") -> str:
    """Language, budget, support, a comment, goodbye; the reference heard."""
    phone.dial(script)
    phone.press(language)
    phone.press("1")
    phone.press("1")
    saved = phone.record(7)
    assert saved.references(), saved.said
    phone.press("2")
    phone.hang_up()
    return next(iter(saved.references()))


def test_a_draft_edit_is_heard_only_on_the_draft_until_published_and_undone(app, sign_in, twilio):
    admin = sign_in("admin")
    edit_greeting(app, admin, "en-US", NEW_GREETING)
    # Callers hear the live script; the draft is heard only on a try-the-line call on the draft.
    assert OLD_GREETING in twilio.call().dial().said and NEW_GREETING not in twilio.call().dial().said
    phone = TryPhone(sign_in("staff"))
    assert NEW_GREETING in phone.dial("draft").said
    assert OLD_GREETING in phone.dial("live").said
    with app.app_context():
        live_version = db.session.get(LineSettings, 1).version
    # Publish: one step, audited, kept as a version (with the one it replaced).
    admin.get("/admin/script")
    assert admin.post("/admin/script/publish").status_code == 302
    assert NEW_GREETING in twilio.call().dial().said
    with app.app_context():
        versions = db.session.scalars(select(ScriptVersion.version).order_by(ScriptVersion.version)).all()
        assert versions == [live_version, live_version + 1]
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "script_publish"))
        assert entry.actor_label == "admin@example.org" and entry.target == f"script version {live_version + 1}"
        assert any("greeting" in change and NEW_GREETING in change for change in entry.detail["changes"])
        assert db.session.get(LineSettings, 1).draft is None  # the draft is the live script again
    # Undo: publish the version before again.
    page = admin.get("/admin/script").get_data(as_text=True)
    assert "Publish this version again" in page
    assert admin.post(f"/admin/script/versions/{live_version}/publish").status_code == 302
    assert OLD_GREETING in twilio.call().dial().said
    with app.app_context():
        again = db.session.scalar(select(ScriptVersion).where(ScriptVersion.version == live_version + 2))
        assert again.republished_from == live_version
    assert admin.post("/admin/script/versions/999/publish").status_code == 404


def test_the_script_page_shows_the_drafts_differences(app, sign_in):
    admin = sign_in("admin")
    edit_greeting(app, admin, "es-US", "Bienvenidos al borrador.")
    admin.get("/admin/topics")
    admin.post(
        "/admin/topics",
        {
            "slug": "parks",
            "digit": "4",
            "enabled": "on",
            "name_en-US": "parks",
            "name_es-US": "los parques",
            "name_ht": "pak yo",
        },
    )
    admin.post(
        "/admin/topics/transit",
        {
            "digit": "2",
            "name_en-US": "the new bus routes",
            "name_es-US": "las nuevas rutas de autobús",
            "name_ht": "nouvo wout otobis yo",
        },
    )
    admin.post("/admin/topics/housing/move", {"direction": "up"})
    page = admin.get("/admin/script").get_data(as_text=True)
    assert "wording es-US" in page and "Bienvenidos al borrador." in page
    assert "Gracias por llamar a la línea de comentarios públicos" in page  # what it was
    assert "topic parks" in page and "added (key 4: parks, los parques, pak yo)" in page
    assert "topic transit" in page and "switched off" in page
    assert "menu order" in page and "budget, housing, transit, general" in page
    # Discarding gives the live script back; nothing is left to publish.
    assert admin.post("/admin/script/discard").status_code == 302
    assert "nothing to publish" in admin.get("/admin/script").get_data(as_text=True)


def counts_now(app) -> dict:
    with app.app_context():
        return asdict(tally(db.session))


@pytest.mark.parametrize("script", ["draft", "live"])
def test_a_try_the_line_call_leaves_no_trace_in_any_count(app, sign_in, twilio, runner, script):
    call = twilio.call(From="+15035550111")  # one real call, so there is something to count
    call.dial()
    for key in ("1", "1", "1"):  # English, the budget, support
        call.press(key)
    call.speak(10)
    before = counts_now(app)
    staff = sign_in("staff")
    reference = whole_trial_call(TryPhone(staff), script)
    write_path(app).flush()
    assert counts_now(app) == before
    result = runner.invoke(args=["counts", "verify"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        test_calls = db.session.scalars(select(Call).where(Call.is_test.is_(True))).all()
        assert len(test_calls) == 1 and test_calls[0].status == "completed"
        assert test_calls[0].call_sid.startswith("CA") and len(test_calls[0].call_sid) == 34
        assert db.session.scalar(select(func.count()).select_from(Call)) == 2
        test_recording = db.session.scalar(select(Recording).where(Recording.call_sid == test_calls[0].call_sid))
        assert test_recording.duration == 7 and test_recording.status == "completed"
        # Its audio stayed in the browser: nothing for the worker to fetch.
        assert db.session.scalar(select(Job).where(Job.key == test_recording.recording_sid)) is None
        assert summary.verify(db.session) == []
    # Out of the inbox unless asked; never in the JSON API.
    assert reference not in staff.get("/inbox").get_data(as_text=True)
    only = staff.get("/inbox?tests=only").get_data(as_text=True)
    assert f"#{reference}" in only and "Test call</span>" in only
    assert f"#{reference}" in staff.get("/inbox?tests=also").get_data(as_text=True)
    assert staff.get("/inbox?tests=maybe").status_code == 400


def test_the_api_and_the_export_never_hold_a_test_calls_comment(app, sign_in, twilio, api):
    staff = sign_in("staff")
    reference = whole_trial_call(TryPhone(staff))
    write_path(app).flush()
    listed = api("/api/v1/comments").get_json()["comments"]
    assert reference not in {c["reference"] for c in listed}
    assert api("/api/v1/counts").get_json()["calls"] == 0
    form = staff.get("/export").get_data(as_text=True)
    today = re.search(r'name="from" value="([\d-]+)"', form).group(1)
    exported = staff.post("/export", {"from": today, "to": today, "topic": ["budget"]})
    assert exported.mimetype == "application/zip"
    rows = zipfile.ZipFile(io.BytesIO(exported.data)).read("comments.csv").decode().splitlines()
    assert rows[0].startswith("reference,") and len(rows) == 1  # the test call's comment is not there


def test_a_topic_only_the_draft_has_can_be_tried_and_counts_nowhere(app, sign_in):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    admin.post(
        "/admin/topics",
        {"slug": "parks", "digit": "4", "enabled": "on", "stance": "on"}
        | {"name_en-US": "parks", "name_es-US": "parques", "name_ht": "pak yo"},
    )
    phone = TryPhone(sign_in("staff"))
    phone.dial("draft")
    assert "For parks, press 4." in phone.press("1").said
    assert "If you support parks" in phone.press("4").said
    phone.press("1")
    assert phone.record(4).references()
    phone.hang_up()
    write_path(app).flush()
    assert counts_now(app)["calls"] == 0


def test_the_mark_is_the_servers_alone(app, client):
    """A signed request with a mark made without the secret, or for another call, is Twilio's:
    a real call on the live script."""
    call = SimulatedCall(TWILIO_ACCOUNT, "http://localhost", CALLER)
    forged = {**call.voice().headers(), TRIAL_HEADER: trial_mark("not-the-secret", "draft", call.sid)}
    assert client.post("/twilio/voice", data=call.voice().params, headers=forged).status_code == 200
    other = SimulatedCall(TWILIO_ACCOUNT, "http://localhost", CALLER)
    borrowed = {**other.voice().headers(), TRIAL_HEADER: trial_mark("test-secret", "draft", call.sid)}
    assert client.post("/twilio/voice", data=other.voice().params, headers=borrowed).status_code == 200
    unsigned = {TRIAL_HEADER: trial_mark("test-secret", "draft", call.sid)}
    assert client.post("/twilio/voice", data=call.voice().params, headers=unsigned).status_code == 403
    write_path(app).flush()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Call).where(Call.is_test.is_(True))) == 0
        assert db.session.scalar(select(func.count()).select_from(Call)) == 2


def test_the_phone_endpoints_refuse_what_the_page_would_never_send(app, sign_in, client):
    staff = sign_in("staff")
    phone = TryPhone(staff)
    phone.dial("live")
    token = phone.token

    def step(body, status=400):
        response = staff.client.post("/try/calls/next", json=body, headers={"X-CSRF-Token": staff.token})
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    action = phone.reply.action
    assert "url" in step({"call": token, "kind": "gather", "url": "https://evil.example/twilio/language"})["error"]
    assert "url" in step({"call": token, "kind": "gather", "url": action.replace("/language", "/status")})["error"]
    assert "digits" in step({"call": token, "kind": "gather", "url": action, "digits": "1; DROP"})["error"]
    assert "seconds" in step({"call": token, "kind": "hangup", "seconds": -3})["error"]
    assert "kind" in step({"call": token, "kind": "fax", "url": action})["error"]
    assert "call again" in step({"call": "forged", "kind": "hangup"})["error"]
    assert "JSON" in step(["not", "an", "object"])["error"]
    bad_script = staff.client.post("/try/calls", json={"script": "staging"}, headers={"X-CSRF-Token": staff.token})
    assert bad_script.status_code == 400
    # Another person's call is theirs.
    other = sign_in("staff", "other@example.org")
    other.get("/try")
    stolen = other.client.post(
        "/try/calls/next", json={"call": token, "kind": "hangup"}, headers={"X-CSRF-Token": other.token}
    )
    assert stolen.status_code == 403
    # Signed out: no phone.
    assert client.get("/try").status_code == 302
    assert client.post("/try/calls", json={"script": "draft"}).status_code in (302, 400)
    assert new_sid("CA") != token


def test_flask_line_sync_writes_the_draft_and_a_new_language_can_be_tried(app, runner, tmp_path, sign_in, twilio):
    data = yaml.safe_load(open(app.config["LINE_CONFIG"]))
    data["languages"].append({"code": "fr-FR", "digit": "4", "voice": "Polly.Lea", "needs_recordings": True})
    data["wording"]["fr-FR"] = {
        **data["wording"]["en-US"],
        "greeting": "Bonjour, ceci est le brouillon.",
        "language_option": "Pour le français, tapez 4.",
    }
    for topic in data["topics"]:
        topic["name"]["fr-FR"] = topic["name"]["en-US"] + " (fr)"
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = runner.invoke(args=["line", "sync", "--file", str(path)])
    assert result.exit_code == 0 and "languages: fr-FR added (key 4)" in result.output, result.output
    assert "Bonjour" not in twilio.call().dial().said  # callers hear the live script
    phone = TryPhone(sign_in("staff"))
    assert "Bonjour, ceci est le brouillon." in phone.dial("draft").said
    menu = phone.press("4")
    assert {say.get("language") for say in menu.says()} == {"fr-FR"} and "budget (fr)" in menu.said
    with app.app_context():
        from models.drafts import draft_document

        assert draft_document(db.session)["languages"][-1]["needs_recordings"] is True  # kept as given
