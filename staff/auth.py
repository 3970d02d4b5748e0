"""Signing staff in and out, sessions, roles, CSRF, and where redirects and links may point,
for the console's pages.

- A session holds the user's id, the account's `session_stamp`, when it was signed in and
  the key of its `StaffSession` row; it ends CONSOLE_SESSION_HOURS after sign-in, and at once
  when the person signs out (the row is deleted, so a copy of the cookie stops working too),
  the account is disabled or its password changes. The cookie is HttpOnly, SameSite=Lax, and
  Secure whenever the request came over HTTPS (or SESSION_COOKIE_SECURE says so).
- Every POST to the console carries the session's CSRF token (form field `csrf_token` or
  header `X-CSRF-Token`), checked by Flask-WTF's CSRFProtect from the console's blueprints
  (WTF_CSRF_CHECK_DEFAULT is off: no app-wide check runs on the Twilio webhooks, and the
  bearer-token API is another blueprint).
- Failed sign-ins are logged, written to the audit log and throttled (staff/throttle.py).
- `local_target` is the one judge of a redirect target or back link taken from a request.
- Links for people (reset, invitation) are made on LINK_BASE_URL, never the request's host.
"""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta
from functools import wraps

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from models import audit, db, utcnow
from models.users import (
    User,
    UserError,
    authenticate,
    end_session,
    forget_old_sessions,
    session_is_open,
    set_password,
    user_for_reset,
)
from models.users import start_session as open_staff_session

from . import throttle
from .errors import security_headers

auth = Blueprint(
    "auth", __name__, template_folder="templates", static_folder="static", static_url_path="/console-static"
)
csrf = CSRFProtect()
RESET_PATH = "/reset/"
NO_LINK_BASE = (
    "Links cannot be made until PUBLIC_BASE_URL is set to the console's address (for example "
    "https://line.example.org). Choose a generated password instead, or ask whoever runs the line to set it."
)
# A C0 control, space, DEL, a C1 control or a backslash: a browser strips, drops or rereads these.
UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with the Secure flag set for requests over HTTPS. Twilio's
    webhooks, the JSON API, the probes and the public tally carry no session: they get none to
    read or write, so no cookie is ever set on them."""

    SESSIONLESS = ("/twilio/", "/api/", "/metrics", "/livez", "/healthz", "/public")

    def open_session(self, app, request):
        if request.path.startswith(self.SESSIONLESS):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))


def configure_sessions(app) -> None:
    hours = float(app.config.get("CONSOLE_SESSION_HOURS", 12))
    if app.config.get("SESSION_COOKIE_NAME", "session") == "session":  # Flask's default: name it ours
        app.config["SESSION_COOKIE_NAME"] = "commentline_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=hours)
    app.config["CONSOLE_SESSION_HOURS"] = hours
    app.session_interface = ConsoleSessionInterface()
    # Checked where `check_csrf` runs, not by an app-wide hook on every webhook; a token lasts
    # as long as its session.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    # init_app also adds an app-wide `before_request` hook which, with the check off by
    # default, only returns; Flask would still call it on every webhook.
    app.before_request_funcs[None] = [
        hook for hook in app.before_request_funcs.get(None, []) if hook.__name__ != "csrf_protect"
    ]


# --- who is signed in --------------------------------------------------------------------------


def load_user() -> None:
    """Set `g.user` from the session, or None when it is absent, expired, signed out or no
    longer valid."""
    g.user = None
    if request.endpoint == "auth.static":
        return
    user_id, stamp, started = session.get("uid"), session.get("stamp"), session.get("since", 0)
    if user_id is None:
        return
    max_age = current_app.config["CONSOLE_SESSION_HOURS"] * 3600
    user = db.session.get(User, user_id)
    if (
        user is None
        or not user.active
        or stamp != user.session_stamp
        or time.time() - started > max_age
        or not session_is_open(db.session, user.id, session.get("sid"))
    ):
        for key in ("uid", "stamp", "sid"):
            session.pop(key, None)
        return
    g.user = user


def client_ip() -> str | None:
    return request.remote_addr


def record(action: str, target: str | None = None, **detail) -> None:
    """Write what the signed-in user did to the audit log (committed with the change)."""
    audit(db.session, g.get("user"), action, target, ip=client_ip(), **detail)


def admin_required(view):
    """Admins only: anyone else signed in gets 403."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        if not g.user.is_admin:
            abort(403, description="Only an admin can do this.")
        return view(*args, **kwargs)

    return wrapped


# --- CSRF ----------------------------------------------------------------------------------


def check_csrf() -> None:
    """A `before_request` hook for the console's blueprints: 400 for a state change whose
    token is missing, wrong or another session's (Flask-WTF's check)."""
    try:
        csrf.protect()
    except CSRFError as exc:
        current_app.logger.warning(
            "CSRF check failed for %s %s from %s: %s", request.method, request.path, client_ip(), exc.description
        )
        abort(400, description="This form has expired or did not come from the console. Reload the page and try again.")


auth.before_request(load_user)
auth.before_request(check_csrf)
auth.after_request(security_headers)


# --- where a request may send a person -----------------------------------------------------------


def local_target(target: str | None) -> str | None:
    """`target` if it is a path on this site however a browser reads it, else None.

    The one judge of every redirect target and back link that comes from a request (sign-in's
    `next`, the console's `back`). A path on this site starts with one `/` and holds no
    character a browser strips, drops or rereads: no control character or space (a browser
    drops tabs and newlines, so `/<tab>/evil.example` becomes `//evil.example`, another
    site) and no backslash (read as `/`)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if UNSAFE_IN_TARGET.search(target):
        return None
    return target


def safe_next(target: str | None, default_endpoint: str = "console.inbox") -> str:
    """Where to go: `target` when it is a path on this site, else the default page."""
    return local_target(target) or url_for(default_endpoint)


# --- links for people ------------------------------------------------------------------------------


def can_make_links() -> bool:
    """Whether LINK_BASE_URL is known (PUBLIC_BASE_URL, or a development default)."""
    return bool(current_app.config.get("LINK_BASE_URL"))


def reset_link(token: str) -> str:
    """The one-time reset or invitation link for `token`, on LINK_BASE_URL: never on the host
    a request named, which anyone can forge. Call `can_make_links` first."""
    if not can_make_links():
        raise RuntimeError(NO_LINK_BASE)
    return f"{current_app.config['LINK_BASE_URL']}{RESET_PATH}{token}"


# --- signing in and out ---------------------------------------------------------------------


def start_session(user: User) -> None:
    """A new session for `user` (a new server-side key and a new CSRF token: nothing of the
    anonymous session carries over)."""
    now = utcnow()
    forget_old_sessions(db.session, now - timedelta(hours=current_app.config["CONSOLE_SESSION_HOURS"]))
    key = open_staff_session(db.session, user, now)
    session.clear()
    g.pop("csrf_token", None)
    session.permanent = True
    session.update(uid=user.id, stamp=user.session_stamp, since=int(time.time()), sid=key)
    generate_csrf()


def end_browser_session() -> None:
    """Forget the session in this browser and on the server (the caller commits)."""
    end_session(db.session, session.get("sid"))
    session.clear()
    g.pop("csrf_token", None)


def too_many_failures(email: str, next_url: str, verdict: throttle.Verdict):
    """The 429 page for a refused sign-in, saying how long to wait."""
    ip = client_ip()
    current_app.logger.warning("sign-in refused for %s from %s: too many failures", email, ip)
    audit(db.session, None, "sign_in_throttled", f"user {email}", ip=ip, retry_after=verdict.retry_after)
    db.session.commit()
    wait = verdict.retry_after
    when = f"{wait} seconds" if wait < 120 else f"{math.ceil(wait / 60)} minutes"
    message = f"Too many failed sign-ins from here. Wait {when} and try again, or ask an admin."
    page = render_template("sign_in.html", email=email, next=next_url, error=message)
    return page, 429, {"Retry-After": str(wait)}


@auth.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if request.method == "GET":
        if g.get("user"):
            return redirect(safe_next(request.args.get("next")))
        return render_template("sign_in.html", email="", next=local_target(request.args.get("next")) or "")
    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")
    next_url = request.form.get("next", "")
    ip = client_ip()
    verdict = throttle.admit(email, ip)
    if not verdict.allowed:
        return too_many_failures(email, next_url, verdict)
    user = authenticate(db.session, email, password)
    if user is None:
        current_app.logger.warning("failed sign-in for %s from %s", email, ip)
        audit(db.session, None, "sign_in_failed", f"user {email}", ip=ip)
        db.session.commit()
        return render_template(
            "sign_in.html", email=email, next=next_url, error="That email and password do not match an active account."
        ), 401
    throttle.forgive(email, ip)
    user.last_sign_in_at = utcnow()
    audit(db.session, user, "sign_in", f"user {user.email}", ip=ip)
    start_session(user)
    db.session.commit()
    return redirect(safe_next(next_url))


@auth.post("/sign-out")
def sign_out():
    if g.get("user"):
        record("sign_out", f"user {g.user.email}")
    end_browser_session()
    db.session.commit()
    flash("You are signed out.")
    return redirect(url_for("auth.sign_in"))


@auth.route(RESET_PATH + "<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """The one-time link an admin made: choose a new password, then sign in with it."""
    user = user_for_reset(db.session, token)
    if user is None:
        return render_template("reset.html", invalid=True), 404
    if request.method == "GET":
        return render_template("reset.html", email=user.email)
    password, again = request.form.get("password", ""), request.form.get("again", "")
    try:
        if password != again:
            raise UserError("The two passwords differ.")
        set_password(user, password)
    except UserError as exc:
        return render_template("reset.html", email=user.email, error=str(exc)), 400
    audit(db.session, user, "password_set", f"user {user.email}", ip=client_ip(), via="reset link")
    end_browser_session()
    db.session.commit()
    flash("Your password is set. Sign in with it.")
    return redirect(url_for("auth.sign_in"))
