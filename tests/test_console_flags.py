"""The console's side of issue 14's flags: the block list (admins), call-back requests (the
call-back role only, every view audited), the inbox's flag and call-back filters, and the
counts page's flagged and call-back figures."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select, update

from ivr.caller import Phone, Script, Take
from models import db, utcnow
from models.audit import AuditEntry
from models.blocklist import BlockedNumber, block_list
from models.callbacks import CallbackRequest
from models.users import User

from .conftest import CALLER, LINE
from .test_flags import offer_callbacks


def audit_actions(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_admins_block_and_lift_a_number_and_each_change_is_audited(app, sign_in, twilio, api):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    response = admin.post("/admin/blocked", {"number": "503.555.0100", "reason": "forty calls an hour"})
    assert response.status_code == 302
    page = admin.get("/admin/blocked").get_data(as_text=True)
    assert "…0100" in page and "forty calls an hour" in page and "5035550100" not in page
    with app.app_context():
        entry = db.session.scalar(select(BlockedNumber))
        assert entry.created_by_label == "admin@example.org" and len(entry.caller_hash) == 64
    played = twilio.play(Script(["1", "1", "1"], [Take()]), CALLER, blocked=True)
    assert played.blocked
    assert api("/api/v1/counts").json["blocked"] == 1

    admin.get("/admin/blocked")
    assert admin.post(f"/admin/blocked/{entry.id}/lift").status_code == 302
    assert not twilio.play(Script(["1", "1", "1"], [Take()]), CALLER).blocked  # the cache was told at once
    assert [e.detail["number_ends"] for e in audit_actions(app, "block_add")] == ["0100"]
    assert len(audit_actions(app, "block_lift")) == 1


def test_a_block_list_entry_that_cannot_be_used_is_refused_plainly(app, sign_in):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    for form, said in (
        ({"number": "anonymous", "reason": "x"}, "withheld number cannot be blocked"),
        ({"number": "call me", "reason": "x"}, "Enter a phone number"),
        ({"number": "+15035550100", "reason": " "}, "Say why"),
        ({"number": "+15035550100", "reason": "x", "last_day": "2001-01-01"}, "in the future"),
        ({"number": "+15035550100", "reason": "x", "last_day": "tomorrow"}, "is not a date"),
        ({"number": "+15035550100", "reason": "x", "last_day": "2099-W49-5"}, "is not a date"),  # a week date
    ):
        response = admin.post("/admin/blocked", form)
        assert response.status_code == 400 and said in response.get_data(as_text=True), form
    assert sign_in("staff").get("/admin/blocked").status_code == 403


def test_an_expired_block_lets_the_caller_through(app, twilio):
    with app.app_context():
        from models.blocklist import block_number

        entry = block_number(db.session, app.config["CALLER_HASH_KEY"], CALLER.number, "for a day", by="tests")
        db.session.commit()
        db.session.execute(update(BlockedNumber).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert entry.id
    block_list(app).forget()
    assert not twilio.play(Script(["1", "3"], [Take()]), CALLER).blocked


def test_only_the_call_back_role_sees_numbers_and_every_view_is_audited(app, sign_in, twilio):
    offer_callbacks(app)
    line = replace(LINE, callbacks=frozenset({"budget"}))
    twilio.play(Script(["1", "1", "2", "1", "2"], [Take(seconds=9)]), CALLER, line=line)
    admin = sign_in("admin")
    assert admin.get("/callbacks").status_code == 403  # an admin is not a call-back person by role
    admin.get("/admin/users")
    with app.app_context():
        staff_id = db.session.scalar(select(User.id).where(User.email == "admin@example.org"))
    assert admin.post(f"/admin/users/{staff_id}/callbacks", {"callbacks": "on"}).status_code == 302
    page = admin.get("/callbacks")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and CALLER.number in body and "Mark done" in body
    (view,) = audit_actions(app, "callback_view")
    with app.app_context():
        request_id = db.session.scalar(select(CallbackRequest.id))
    assert view.detail["shown"] == [request_id] and view.actor_label == "admin@example.org"
    assert re.search(r'href="/comments/\d{7}"', body)  # with the comment it was asked after

    assert admin.post(f"/callbacks/{request_id}/done").status_code == 302
    assert CALLER.number not in admin.get("/callbacks").get_data(as_text=True)  # open ones only
    assert "admin@example.org" in admin.get("/callbacks?done=yes").get_data(as_text=True)
    assert len(audit_actions(app, "callback_view")) == 3 and len(audit_actions(app, "callback_done")) == 1
    assert sign_in("staff").get("/callbacks").status_code == 403


def test_call_back_numbers_are_erased_after_the_set_days(app, runner, twilio):
    offer_callbacks(app)
    line = replace(LINE, callbacks=frozenset({"budget"}))
    twilio.play(Script(["1", "1", "2", "1", "2"], [Take(seconds=9)]), CALLER, line=line)
    app.config["CALLBACK_KEEP_DAYS"] = 3
    assert "Erased 0" in runner.invoke(args=["callbacks", "purge"]).output
    with app.app_context():
        db.session.execute(update(CallbackRequest).values(requested_at=utcnow() - timedelta(days=4)))
        db.session.commit()
    assert "Erased 1" in runner.invoke(args=["callbacks", "purge"]).output
    with app.app_context():
        row = db.session.scalar(select(CallbackRequest))
        assert row.number_sealed is None and row.erased_at is not None and row.topic_id is not None


def test_the_inbox_filters_on_flags_and_call_backs(app, sign_in, twilio):
    offer_callbacks(app)
    line = replace(LINE, callbacks=frozenset({"budget"}))
    twilio.play(Script(["1", "1", "1", "1", "2"], [Take(seconds=9)]), CALLER, line=line)  # asks for a call back
    twilio.play(Script(["1", "3", "2"], [Take(seconds=1)]), replace(CALLER, number="+15035550131"))  # short
    twilio.play(Script(["1", "3", "2"], [Take(seconds=9)]), Phone("anonymous"))  # unverified
    staff = sign_in("staff")

    def shown(**query) -> int:
        page = staff.get("/inbox", query_string=query)
        assert page.status_code == 200, page.get_data(as_text=True)[:300]
        return len(re.findall(r'<li class="comment', page.get_data(as_text=True)))

    assert shown() == 3
    assert (shown(flag="any"), shown(flag="short"), shown(flag="unverified"), shown(flag="burst")) == (2, 1, 1, 0)
    assert (shown(callback="yes"), shown(callback="no")) == (1, 2)
    assert staff.get("/inbox", query_string={"flag": "loud"}).status_code == 400
    assert 'class="badge flag"' in staff.get("/inbox").get_data(as_text=True)
    app.config["FLAG_SHORT_COMMENTS"] = False
    assert shown(flag="short") == 0


def test_the_counts_page_shows_flagged_calls_beside_all_calls(app, sign_in, twilio):
    twilio.play(Script(["1", "3", "2"], [Take(seconds=1)]), CALLER)
    twilio.play(Script(["1", "3", "2"], [Take(seconds=9)]), replace(CALLER, number="+15035550132"))
    body = sign_in("staff").get("/counts").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-flags-topic="([^"]+)"><th scope="row">[^<]*</th>(.*?)</tr>', body, re.S))
    cells = {slug: re.findall(r'<td class="num">([^<]*)</td>', row) for slug, row in rows.items()}
    assert cells["housing"] == ["2", "1", "0"] and cells["(all)"] == ["2", "1", "0"] and cells["(blocked)"][0] == "0"


def test_admins_offer_a_call_back_per_topic(app, sign_in):
    admin = sign_in("admin")
    page = admin.get("/admin/topics").get_data(as_text=True)
    assert 'name="callback"' in page
    with app.app_context():
        from models.line import Topic

        topic = db.session.scalar(select(Topic).where(Topic.slug == "housing"))
        form = {"digit": topic.digit, "enabled": "on", "callback": "on"}
        form.update({f"name_{code}": name for code, name in topic.names.items()})
        topic_id = topic.id
    assert admin.post("/admin/topics/housing", form).status_code == 302
    with app.app_context():
        assert not db.session.get(Topic, topic_id).callback  # in the draft until published
    assert admin.post("/admin/script/publish").status_code == 302
    with app.app_context():
        assert db.session.get(Topic, topic_id).callback
    (entry,) = audit_actions(app, "topic_edit")
    assert entry.detail["after"] == {"callback": True}


def test_a_topic_cannot_offer_call_backs_without_a_key(app, sign_in):
    from models.line import Topic

    app.config["CALLBACK_KEY"] = ""
    admin = sign_in("admin")
    admin.get("/admin/topics")
    with app.app_context():
        topic = db.session.scalar(select(Topic).where(Topic.slug == "housing"))
        form = {"digit": topic.digit, "enabled": "on", "callback": "on"}
        form.update({f"name_{code}": name for code, name in topic.names.items()})
    response = admin.post("/admin/topics/housing", form)
    assert response.status_code == 400 and "Call-backs need CALLBACK_KEY" in response.get_data(as_text=True)
