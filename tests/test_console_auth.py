"""Signing in, sessions, CSRF, throttling, roles, accounts (pages and `flask users`)."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from models import AuditEntry, Topic, User, db
from tests.console_support import PASSWORD, Console, leave_comment, make_user
from tests.test_hardening_auth import pass_time

STAFF_PAGES = ["/inbox", "/counts", "/counts.csv", "/export", "/comments/{ref}", "/audio/{ref}"]
ADMIN_PAGES = ["/admin/users", "/admin/topics", "/admin/audit"]


def actions(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


@pytest.fixture
def comment_ref(twilio):
    _, _, reference = leave_comment(twilio, text="Please fix the potholes on Elm Street.")
    return reference


def test_anonymous_visitor_sees_nothing_about_callers(client, comment_ref):
    for page in STAFF_PAGES + ADMIN_PAGES:
        response = client.get(page.format(ref=comment_ref))
        body = response.get_data(as_text=True)
        assert response.status_code in (302, 401), page
        assert "potholes" not in body and "Elm Street" not in body
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/sign-in?next=")
    assert client.get("/audio/" + comment_ref).status_code == 401
    # The JSON API keeps its bearer tokens: no token, no counts.
    assert client.get("/api/v1/counts").status_code == 401


def test_staff_reach_staff_pages_and_not_admin_pages(sign_in, comment_ref):
    staff = sign_in("staff")
    for page in STAFF_PAGES:
        if page.startswith("/audio"):
            continue  # no audio stored here; see the audio tests
        assert staff.get(page.format(ref=comment_ref)).status_code == 200, page
    for page in ADMIN_PAGES:
        response = staff.get(page)
        assert response.status_code == 403 and "Only an admin" in response.get_data(as_text=True)
    assert "Audit log" not in staff.get("/inbox").get_data(as_text=True)  # no admin links shown
    for path, form in [
        ("/admin/users", {"email": "x@example.org"}),
        ("/admin/topics", {"slug": "parks"}),
        (f"/comments/{comment_ref}/remove", {"what": "comment", "reason": "because"}),
    ]:
        assert staff.post(path, form).status_code == 403


def test_admin_reaches_every_page_and_no_twilio_secret_reaches_the_browser(app, sign_in, comment_ref):
    admin = sign_in("admin")
    for page in STAFF_PAGES + ADMIN_PAGES:
        if page.startswith("/audio"):
            continue
        response = admin.get(page.format(ref=comment_ref))
        assert response.status_code == 200, page
        body = response.get_data(as_text=True)
        assert app.config["TWILIO_AUTH_TOKEN"] not in body and app.config["TWILIO_ACCOUNT_SID"] not in body, page
        assert "api.twilio.com" not in body, page


def test_sign_in_is_audited_and_lands_on_next(app, client):
    make_user(app, "ann@example.org")
    console = Console(client)
    console.get("/sign-in")
    response = console.post("/sign-in", {"email": "ANN@example.org ", "password": PASSWORD, "next": "/counts"})
    assert response.status_code == 302 and response.headers["Location"] == "/counts"
    entry = actions(app, "sign_in")[-1]
    assert entry.actor_label == "ann@example.org" and entry.ip == "127.0.0.1"


def test_sign_in_never_redirects_off_site(app, client):
    make_user(app, "ann@example.org")
    console = Console(client)
    console.get("/sign-in")
    response = console.post("/sign-in", {"email": "ann@example.org", "password": PASSWORD, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/inbox"


def test_wrong_password_is_refused_logged_and_audited(app, client, caplog):
    make_user(app, "ann@example.org")
    console = Console(client)
    response = console.sign_in("ann@example.org", "not the password")
    assert response.status_code == 401
    assert "do not match" in response.get_data(as_text=True)
    assert client.get("/inbox").status_code == 302
    assert "failed sign-in for ann@example.org" in caplog.text
    assert [e.target for e in actions(app, "sign_in_failed")] == ["user ann@example.org"]


def test_repeated_failures_are_throttled_even_with_the_right_password(app, client):
    make_user(app, "ann@example.org")
    console = Console(client)
    for _ in range(5):
        assert console.sign_in("ann@example.org", "guess " * 3).status_code == 401
    response = console.sign_in("ann@example.org", PASSWORD)
    assert response.status_code == 429 and "Too many failed sign-ins" in response.get_data(as_text=True)
    assert len(actions(app, "sign_in_throttled")) == 1
    # Once the back-off has passed, the right password works again (tests/test_hardening_auth.py
    # has the rest of the throttle).
    pass_time(app, 16 * 60)
    assert console.sign_in("ann@example.org", PASSWORD).status_code == 302


def test_throttle_by_address_covers_many_emails(app, client):
    make_user(app, "ann@example.org")
    console = Console(client)
    for i in range(20):
        console.sign_in(f"nobody{i}@example.org", "guess guess guess")
    assert console.sign_in("ann@example.org", PASSWORD).status_code == 429


def test_disabled_account_cannot_sign_in(app, client):
    make_user(app, "ann@example.org")
    with app.app_context():
        db.session.execute(update(User).values(active=False))
        db.session.commit()
    assert Console(client).sign_in("ann@example.org").status_code == 401


def test_session_cookie_is_httponly_samesite_and_secure_under_https(app):
    make_user(app, "ann@example.org")
    console = Console(app.test_client())
    response = console.sign_in("ann@example.org")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie and "Expires=" in cookie
    secure = Console(app.test_client())
    secure.get("/sign-in", base_url="https://localhost")
    response = secure.post(
        "/sign-in",
        {"email": "ann@example.org", "password": PASSWORD},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/sign-in"},  # as a browser sends it; Flask-WTF checks it over HTTPS
    )
    assert response.status_code == 302 and "Secure" in response.headers["Set-Cookie"]


def test_session_expires(app, sign_in):
    staff = sign_in("staff")
    assert staff.get("/inbox").status_code == 200
    with staff.client.session_transaction() as session:
        session["since"] = int(time.time()) - 13 * 3600
    assert staff.get("/inbox").status_code == 302


def test_disabling_an_account_ends_its_open_sessions(app, sign_in):
    staff = sign_in("staff")
    admin = sign_in("admin")
    with app.app_context():
        staff_id = db.session.scalar(select(User.id).where(User.email == "staff@example.org"))
    admin.get("/admin/users")
    assert admin.post(f"/admin/users/{staff_id}/disable").status_code == 302
    assert staff.get("/inbox").status_code == 302
    assert actions(app, "user_disable")[-1].target == "user staff@example.org"


def test_sign_out_needs_csrf_and_ends_the_session(app, sign_in):
    staff = sign_in("staff")
    assert staff.post("/sign-out", csrf=False).status_code == 400
    assert staff.get("/inbox").status_code == 200
    assert staff.post("/sign-out").status_code == 302
    assert staff.get("/inbox").status_code == 302


def test_every_state_change_needs_the_csrf_token(app, sign_in, twilio):
    _, _, reference = leave_comment(twilio, text="Noise at night.")
    admin = sign_in("admin")
    with app.app_context():
        admin_id = db.session.scalar(select(User.id))
    changes = [
        ("/inbox/review", {"ref": reference}),
        (f"/comments/{reference}/review", {}),
        (f"/comments/{reference}/note", {"note": "x", "tags": "y"}),
        (f"/comments/{reference}/transcript", {"text": "changed"}),
        (f"/comments/{reference}/remove", {"what": "comment", "reason": "asked"}),
        ("/export", {"from": "2026-01-01", "to": "2030-01-01", "topic": "budget"}),
        ("/admin/users", {"email": "new@example.org"}),
        (f"/admin/users/{admin_id}/reset", {"how": "password"}),
        ("/admin/topics", {"slug": "parks", "digit": "5"}),
        ("/admin/topics/budget", {"digit": "1"}),
        ("/admin/topics/budget/move", {"direction": "down"}),
        ("/admin/wording/en-US", {"greeting": "Hi"}),
        ("/admin/script/publish", {}),
        ("/admin/script/discard", {}),
        ("/admin/script/versions/1/publish", {}),
        ("/try/calls", {}),
        ("/try/calls/next", {}),
        ("/sign-out", {}),
    ]
    for path, form in changes:
        for token in (None, "forged-token"):
            data = dict(form, **({"csrf_token": token} if token else {}))
            response = admin.post(path, data, csrf=False)
            assert response.status_code == 400, path
            assert "did not come from the console" in response.get_data(as_text=True)
    with app.app_context():
        assert (
            db.session.scalar(select(db.func.count()).select_from(AuditEntry).where(AuditEntry.action != "sign_in"))
            == 0
        )
    # A sign-in form without the token is refused too (no login CSRF).
    fresh = Console(app.test_client())
    assert fresh.post("/sign-in", {"email": "admin@example.org", "password": PASSWORD}, csrf=False).status_code == 400


def test_error_pages_show_no_stack_trace(sign_in):
    staff = sign_in("staff")
    response = staff.get("/comments/123")
    body = response.get_data(as_text=True)
    assert response.status_code == 404 and "No comment has the reference number 123" in body
    assert "Traceback" not in body and "<html" in body
    assert staff.get("/no-such-page").status_code == 404


def test_pages_for_people_carry_the_security_headers_and_webhook_replies_do_not(client, sign_in, twilio):
    staff = sign_in("staff")
    pages = {
        "console": staff.get("/inbox"),
        "console error": staff.get("/comments/123"),
        "sign-in": client.get("/sign-in"),
        "console style": client.get("/console-static/console.css"),
        "unknown page": client.get("/no-such-page"),
    }
    for name, response in pages.items():
        assert response.headers.get("Content-Security-Policy", "").startswith("default-src 'self'"), name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
    assert pages["console"].headers["Cache-Control"] == "private, no-store"
    assert pages["unknown page"].status_code == 404 and "<html" in pages["unknown page"].get_data(as_text=True)
    call = twilio.call()
    reply = twilio.post("/twilio/voice", {**call.params, "CallStatus": "ringing"})
    assert reply.status_code == 200 and "Content-Security-Policy" not in reply.headers


# --- accounts, from the command line ------------------------------------------------------------


def test_users_create_admin_with_password_from_stdin(app, runner):
    result = runner.invoke(
        args=["users", "create", "--admin", "Boss@Example.org", "--password-stdin"], input="a long enough secret\n"
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(select(User))
        assert (user.email, user.role, user.active) == ("boss@example.org", "admin", True)
        assert user.password_hash.startswith("scrypt:") and "a long enough secret" not in user.password_hash
    assert Console(app.test_client()).sign_in("boss@example.org", "a long enough secret").status_code == 302


def test_users_create_asks_for_the_password_twice(app, runner):
    result = runner.invoke(
        args=["users", "create", "ann@example.org"], input="typed at the prompt\ntyped at the prompt\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output and "typed at the prompt" not in result.output  # not echoed
    assert Console(app.test_client()).sign_in("ann@example.org", "typed at the prompt").status_code == 302
    mismatch = runner.invoke(args=["users", "create", "bob@example.org"], input="first password!!\nsecond password!\n")
    assert mismatch.exit_code != 0


def test_users_create_prints_a_generated_password(app, runner):
    result = runner.invoke(args=["users", "create", "ann@example.org", "--generate"])
    assert result.exit_code == 0, result.output
    password = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"([a-z2-9]{4}-){4}[a-z2-9]{4}", password)
    assert Console(app.test_client()).sign_in("ann@example.org", password).status_code == 302


def test_users_create_refuses_weak_passwords_and_duplicates(app, runner):
    result = runner.invoke(args=["users", "create", "ann@example.org", "--password-stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 12 characters" in result.output
    runner.invoke(args=["users", "create", "ann@example.org", "--generate"])
    again = runner.invoke(args=["users", "create", "ann@example.org", "--generate"])
    assert again.exit_code != 0 and "already an account" in again.output


def test_users_disable_and_reset_from_the_command_line(app, runner):
    make_user(app, "ann@example.org")
    assert runner.invoke(args=["users", "disable", "ann@example.org"]).exit_code == 0
    assert Console(app.test_client()).sign_in("ann@example.org").status_code == 401
    assert runner.invoke(args=["users", "enable", "ann@example.org"]).exit_code == 0
    result = runner.invoke(args=["users", "reset", "ann@example.org", "--password"])
    new_password = result.stdout.strip().splitlines()[-1]
    assert Console(app.test_client()).sign_in("ann@example.org").status_code == 401  # the old one is gone
    assert Console(app.test_client()).sign_in("ann@example.org", new_password).status_code == 302
    link = runner.invoke(args=["users", "reset", "ann@example.org"]).stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"http://localhost:5000/reset/[\w-]+", link)
    assert [e.actor_label for e in actions(app, "user_reset")] == ["cli", "cli"]


# --- accounts, from the admin page --------------------------------------------------------------


def test_admin_adds_an_account_with_a_one_time_link(app, sign_in):
    admin = sign_in("admin")
    admin.get("/admin/users")
    response = admin.post(
        "/admin/users", {"email": "new@example.org", "name": "New Person", "role": "staff", "how": "link"}
    )
    link = re.search(r'id="shown-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    path = urlsplit(link).path
    person = Console(app.test_client())
    assert "Choose a password" in person.get(path).get_data(as_text=True)
    response = person.post(path, {"password": "my own new password", "again": "my own new password"})
    assert response.status_code == 302
    assert person.get(path).status_code == 404  # used once
    assert person.sign_in("new@example.org", "my own new password").status_code == 302
    assert [e.target for e in actions(app, "user_create")] == ["user new@example.org"]
    assert actions(app, "password_set")[-1].actor_label == "new@example.org"


def test_admin_resets_a_password_shown_once(app, sign_in):
    admin = sign_in("admin")
    staff_id = make_user(app, "ann@example.org")
    admin.get("/admin/users")
    response = admin.post(f"/admin/users/{staff_id}/reset", {"how": "password"})
    password = re.search(r'id="shown-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    assert password not in admin.get("/admin/users").get_data(as_text=True)
    assert Console(app.test_client()).sign_in("ann@example.org", password).status_code == 302


def test_admin_cannot_disable_themselves_or_demote_the_last_admin(app, sign_in):
    admin = sign_in("admin")
    with app.app_context():
        admin_id = db.session.scalar(select(User.id).where(User.email == "admin@example.org"))
    admin.get("/admin/users")
    admin.post(f"/admin/users/{admin_id}/disable")
    admin.post(f"/admin/users/{admin_id}/role", {"role": "staff"})
    with app.app_context():
        user = db.session.get(User, admin_id)
        assert user.active and user.role == "admin"


def test_admin_changes_a_role(app, sign_in):
    admin = sign_in("admin")
    staff_id = make_user(app, "ann@example.org")
    admin.get("/admin/users")
    admin.post(f"/admin/users/{staff_id}/role", {"role": "admin"})
    entry = actions(app, "user_role")[-1]
    assert entry.detail == {"before": "staff", "after": "admin"} and entry.actor_label == "admin@example.org"
    assert Console(app.test_client()).sign_in("ann@example.org").status_code == 302


def test_audit_takes_entries_from_any_part_of_the_line(app, sign_in):
    """The worker's jobs write with a label and a detail dict; the console with a user and keywords."""
    from models import audit

    with app.app_context():
        audit(db.session, "system:worker", "recording.purge", "RE123", {"age_days": 90})
        db.session.commit()
    entry = actions(app, "recording.purge")[0]
    assert (entry.actor, entry.actor_label, entry.target, entry.detail) == (
        None,
        "system:worker",
        "RE123",
        {"age_days": 90},
    )
    page = sign_in("admin").get("/admin/audit?action=recording.purge").get_data(as_text=True)
    assert "system:worker" in page and "age_days" in page


def test_an_unexpected_error_shows_a_plain_page_and_logs_the_cause(app, sign_in, caplog):
    staff = sign_in("staff")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: errors are handled, not raised to the test
    with app.app_context():  # a topic edited by hand to have no name: counting it fails
        db.session.execute(update(Topic).where(Topic.slug == "housing").values(names={}))
        db.session.commit()
    response = staff.get("/counts")
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and "Something went wrong" in body
    incident = re.search(r"error ([0-9a-f]{8})", body).group(1)
    assert "Traceback" not in body and "StopIteration" not in body and "tally" not in body
    assert f"error {incident} on GET /counts" in caplog.text and "StopIteration" in caplog.text
