"""The staff console's sign-in under attack, and sessions and links that a stranger must not
be able to use: the findings of the security review ("Hardening").

- A stranger cannot deny a real person sign-in: failures are throttled per address and
  account with a back-off that grows, an address is limited over all accounts, and an
  account under attack slows every address that fails on it, never a clean one.
- The count is atomic: forty wrong guesses at once, against two served instances with two
  workers each, check the password at most five times.
- Signing out ends that session on the server: a copied cookie stops working.
- Reset and invitation links take their host from PUBLIC_BASE_URL, never from the request.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import DateTime, column, select, table

from models import AuditEntry, User, db
from tests.console_support import CSRF, PASSWORD, Console, make_user

OWNER = "admin@example.org"
STRANGER_ADDRESS = "203.0.113.9"
OWNER_ADDRESS = "198.51.100.2"
WRONG = "not the password at all"
LIMITS = table("sign_in_limits", column("key"), column("first_at", DateTime), column("last_at", DateTime))


def from_address(app, address: str) -> Console:
    """A browser whose requests come from `address`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return Console(client)


def audited(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def pass_time(app, seconds: float) -> None:
    """Make every throttling record (and the audit log) `seconds` older, as if that much
    time had passed."""
    shift = timedelta(seconds=seconds)
    with app.app_context():
        rows = db.session.execute(select(LIMITS.c.key, LIMITS.c.first_at, LIMITS.c.last_at)).all()
        for key, first_at, last_at in rows:
            db.session.execute(
                LIMITS.update().where(LIMITS.c.key == key).values(first_at=first_at - shift, last_at=last_at - shift)
            )
        for entry in db.session.scalars(select(AuditEntry)):
            entry.at -= shift
        db.session.commit()


def retry_after(response) -> int:
    assert response.status_code == 429, response.status_code
    return int(response.headers["Retry-After"])


# --- throttling: a stranger cannot lock the owner out ---------------------------------------------


def test_a_stranger_cannot_lock_the_owner_out_from_another_address(app):
    make_user(app, OWNER, "admin")
    stranger = from_address(app, STRANGER_ADDRESS)
    for _ in range(12):
        assert stranger.sign_in(OWNER, WRONG).status_code in (401, 429)
    assert stranger.sign_in(OWNER, PASSWORD).status_code == 429  # the stranger's own address waits
    assert from_address(app, OWNER_ADDRESS).sign_in(OWNER, PASSWORD).status_code == 302


def test_many_strangers_cannot_lock_the_owner_out_either(app):
    """Failures from twelve addresses put the account under attack: each of those addresses
    is slowed, but the owner's clean address signs in at once."""
    make_user(app, OWNER, "admin")
    for i in range(12):
        stranger = from_address(app, f"203.0.113.{i + 10}")
        for _ in range(5):
            assert stranger.sign_in(OWNER, WRONG).status_code in (401, 429)
    assert from_address(app, OWNER_ADDRESS).sign_in(OWNER, PASSWORD).status_code == 302


def test_under_attack_the_owners_typo_costs_a_short_wait_not_a_wall(app):
    make_user(app, OWNER, "admin")
    for i in range(12):
        stranger = from_address(app, f"203.0.113.{i + 10}")
        for _ in range(5):
            stranger.sign_in(OWNER, WRONG)
    owner = from_address(app, OWNER_ADDRESS)
    assert owner.sign_in(OWNER, "a typo in it somewhere").status_code == 401
    wait = retry_after(owner.sign_in(OWNER, PASSWORD))
    assert 0 < wait <= 30
    pass_time(app, wait)
    assert owner.sign_in(OWNER, PASSWORD).status_code == 302


def test_failures_from_one_address_back_off_and_the_wait_grows(app):
    make_user(app, OWNER, "admin")
    guesser = from_address(app, STRANGER_ADDRESS)
    for _ in range(5):
        assert guesser.sign_in(OWNER, WRONG).status_code == 401
    response = guesser.sign_in(OWNER, PASSWORD)  # not checked: refused before the password is read
    first_wait = retry_after(response)
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    assert len(audited(app, "sign_in_throttled")) == 1
    pass_time(app, first_wait)
    assert guesser.sign_in(OWNER, WRONG).status_code == 401  # one more guess after the wait ...
    second_wait = retry_after(guesser.sign_in(OWNER, WRONG))
    assert second_wait > first_wait  # ... and the next wait is longer
    pass_time(app, second_wait)
    assert guesser.sign_in(OWNER, PASSWORD).status_code == 302
    # A success forgets the pair's failures: the next guess is checked at once.
    assert from_address(app, STRANGER_ADDRESS).sign_in(OWNER, WRONG).status_code == 401


def test_one_address_is_limited_over_all_accounts(app):
    make_user(app, OWNER, "admin")
    guesser = from_address(app, STRANGER_ADDRESS)
    for i in range(20):
        assert guesser.sign_in(f"nobody{i}@example.org", WRONG).status_code == 401
    assert guesser.sign_in(OWNER, PASSWORD).status_code == 429
    assert from_address(app, OWNER_ADDRESS).sign_in(OWNER, PASSWORD).status_code == 302
    pass_time(app, 15 * 60)
    assert guesser.sign_in(OWNER, PASSWORD).status_code == 302


def burst_of_sign_ins(bases: list[str], email: str, password: str, count: int) -> list[int]:
    """`count` browsers, each with its own session and CSRF token from one of `bases` in turn,
    post the sign-in form at the same moment; their status codes."""
    browsers = []
    for i in range(count):
        base = bases[i % len(bases)]
        browser = requests.Session()
        token = CSRF.search(browser.get(base + "/sign-in", timeout=10).text).group(1)
        browsers.append((base, browser, token))
    barrier = threading.Barrier(count)
    codes: list[int | Exception | None] = [None] * count

    def post(i: int) -> None:
        base, browser, token = browsers[i]
        form = {"csrf_token": token, "email": email, "password": password}
        barrier.wait()
        try:
            codes[i] = browser.post(base + "/sign-in", data=form, allow_redirects=False, timeout=60).status_code
        except requests.RequestException as exc:
            codes[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_forty_wrong_guesses_at_once_check_the_password_at_most_five_times(app, served_line):
    """Two instances on one database, two gunicorn workers each: the count is the database's."""
    make_user(app, OWNER, "admin")
    lines = [served_line(workers=2, threads=4), served_line(workers=2, threads=4)]
    codes = burst_of_sign_ins([line.base for line in lines], OWNER, WRONG, 40)
    assert all(code in (401, 429) for code in codes), codes
    assert 1 <= codes.count(401) <= 5, codes
    assert len(audited(app, "sign_in_failed")) == codes.count(401)
    assert len(audited(app, "sign_in_throttled")) == codes.count(429)


# --- sessions end on the server -----------------------------------------------------------------


def copy_of_cookie(app, console: Console) -> Console:
    cookie = console.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    copy = Console(app.test_client())
    copy.client.set_cookie(cookie.key, cookie.value)
    return copy


def test_a_copied_cookie_stops_working_after_sign_out(app, sign_in):
    staff = sign_in("staff")
    copy = copy_of_cookie(app, staff)
    assert copy.get("/inbox").status_code == 200
    assert staff.post("/sign-out").status_code == 302
    response = copy.get("/inbox")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


def test_a_copied_cookie_stops_working_after_a_password_change_or_a_disable(app, sign_in):
    staff = sign_in("staff")
    copy = copy_of_cookie(app, staff)
    admin = sign_in("admin")
    with app.app_context():
        staff_id = db.session.scalar(select(User.id).where(User.email == "staff@example.org"))
    admin.get("/admin/users")
    response = admin.post(f"/admin/users/{staff_id}/reset", {"how": "password"})
    assert copy.get("/inbox").status_code == 302
    again = Console(app.test_client())
    assert again.sign_in("staff@example.org", shown_link(response)).status_code == 302
    copy = copy_of_cookie(app, again)
    assert admin.post(f"/admin/users/{staff_id}/disable").status_code == 302
    assert copy.get("/inbox").status_code == 302


def test_signing_out_elsewhere_leaves_other_sessions_alone(app):
    make_user(app, "ann@example.org")
    laptop, phone = Console(app.test_client()), Console(app.test_client())
    assert laptop.sign_in("ann@example.org").status_code == 302
    assert phone.sign_in("ann@example.org").status_code == 302
    assert laptop.post("/sign-out").status_code == 302
    assert phone.get("/inbox").status_code == 200


# --- links take their host from the configuration ---------------------------------------------


def with_forged_host(app, console: Console, host: str) -> dict:
    """Headers naming another host; the browser's session cookie goes to it too (a browser
    sends it to the real site, whose request says another Host)."""
    cookie = console.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    console.client.set_cookie(cookie.key, cookie.value, domain=host)
    return {"Host": host}


def shown_link(response) -> str:
    return re.search(r'id="shown-secret">([^<]+)<', response.get_data(as_text=True)).group(1)


def test_a_forged_host_does_not_decide_where_a_reset_link_points(app, sign_in):
    admin = sign_in("admin")
    staff_id = make_user(app, "ann@example.org")
    admin.get("/admin/users")
    forged = with_forged_host(app, admin, "evil.example")
    link = shown_link(admin.post(f"/admin/users/{staff_id}/reset", {"how": "link"}, headers=forged))
    assert link.startswith("http://localhost:5000/reset/"), link
    invite = shown_link(admin.post("/admin/users", {"email": "new@example.org", "how": "link"}, headers=forged))
    assert invite.startswith("http://localhost:5000/reset/"), invite


@pytest.fixture
def configured_base(settings):
    settings["PUBLIC_BASE_URL"] = "https://line.example.org/"


def test_reset_links_use_the_public_base_url(configured_base, app, sign_in, runner):
    admin = sign_in("admin")
    staff_id = make_user(app, "ann@example.org")
    admin.get("/admin/users")
    forged = with_forged_host(app, admin, "evil.example")
    link = shown_link(admin.post(f"/admin/users/{staff_id}/reset", {"how": "link"}, headers=forged))
    assert urlsplit(link)[:2] == ("https", "line.example.org") and urlsplit(link).path.startswith("/reset/")
    printed = runner.invoke(args=["users", "reset", "ann@example.org"]).stdout.strip().splitlines()[-1]
    assert printed.startswith("https://line.example.org/reset/")


@pytest.fixture
def production_without_base(settings):
    settings.update({"APP_ENV": "production", "WRITE_BEHIND": "0", "PUBLIC_BASE_URL": ""})


def test_production_without_a_base_url_refuses_links_with_a_clear_message(production_without_base, app, runner):
    make_user(app, OWNER, "admin")
    admin = Console(app.test_client())
    assert admin.sign_in(OWNER).status_code == 302
    admin.get("/admin/users")
    forged = with_forged_host(app, admin, "evil.example")
    response = admin.post("/admin/users", {"email": "new@example.org", "how": "link"}, headers=forged)
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "PUBLIC_BASE_URL" in body and "evil.example" not in body
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "new@example.org")) is None
    staff_id = make_user(app, "ann@example.org")
    response = admin.post(f"/admin/users/{staff_id}/reset", {"how": "link"})
    assert response.status_code == 400 and "PUBLIC_BASE_URL" in response.get_data(as_text=True)
    # A generated password needs no link.
    response = admin.post("/admin/users", {"email": "new@example.org", "how": "password"})
    assert response.status_code == 200 and shown_link(response)
    result = runner.invoke(args=["users", "reset", "ann@example.org"])
    assert result.exit_code != 0 and "PUBLIC_BASE_URL" in result.output


# --- CSRF: Flask-WTF for the console, nothing for the webhooks and the API ------------------------


def test_the_console_checks_csrf_and_the_webhooks_and_api_take_none(app, sign_in, twilio, api):
    staff = sign_in("staff")
    response = staff.post("/inbox/review", {"ref": "1234567"}, csrf=False)
    assert response.status_code == 400 and "did not come from the console" in response.get_data(as_text=True)
    other = sign_in("admin")  # another session's token is refused too
    assert staff.post("/inbox/review", {"ref": "1234567", "csrf_token": other.token}, csrf=False).status_code == 400
    call = twilio.call()
    assert call.dial().status == 200  # a signed webhook, without any CSRF token
    assert api("/api/v1/counts").status_code == 200


def test_no_app_wide_hook_runs_before_a_webhook(app):
    """The CSRF check belongs to the console's blueprints: Flask-WTF's app-wide hook, which
    would only return, is not called on every webhook."""
    assert [hook.__name__ for hook in app.before_request_funcs.get(None, [])] == []
