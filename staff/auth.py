"""Signing staff in and out, sessions, roles and CSRF, for the console's pages.

- A session holds the user's id, the account's `session_stamp` and when it was signed in; it
  ends CONSOLE_SESSION_HOURS after sign-in, and at once when the account is disabled or its
  password changes. The cookie is HttpOnly, SameSite=Lax, and Secure whenever the request
  came over HTTPS (or SESSION_COOKIE_SECURE says so).
- Every POST to the console carries the session's CSRF token (form field `csrf_token` or
  header `X-CSRF-Token`). The Twilio webhooks and the bearer-token API are other blueprints
  and are not touched by this.
- Failed sign-ins are logged and written to the audit log; after THROTTLE_PER_EMAIL failures
  for one email (or THROTTLE_PER_IP from one address) in THROTTLE_MINUTES, further attempts
  are refused without checking the password until the window has passed.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

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

from models import audit, db, utcnow
from models.audit import count_recent
from models.users import User, UserError, authenticate, set_password, user_for_reset

from .errors import security_headers

auth = Blueprint(
    "auth", __name__, template_folder="templates", static_folder="static", static_url_path="/console-static"
)
THROTTLE_MINUTES = 15
THROTTLE_PER_EMAIL = 5
THROTTLE_PER_IP = 20
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with the Secure flag set for requests over HTTPS. Twilio's
    webhooks, the JSON API and the probes carry no session: they get none to read or write."""

    SESSIONLESS = ("/twilio/", "/api/", "/metrics", "/livez", "/healthz")

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


# --- who is signed in --------------------------------------------------------------------------


def load_user() -> None:
    """Set `g.user` from the session, or None when it is absent, expired or no longer valid."""
    g.user = None
    if request.endpoint == "auth.static":
        return
    user_id, stamp, started = session.get("uid"), session.get("stamp"), session.get("since", 0)
    if user_id is None:
        return
    max_age = current_app.config["CONSOLE_SESSION_HOURS"] * 3600
    user = db.session.get(User, user_id)
    if user is None or not user.active or stamp != user.session_stamp or time.time() - started > max_age:
        session.pop("uid", None)
        session.pop("stamp", None)
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


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """A `before_request` hook for the console's blueprints: 400 for a state change whose
    token is missing or wrong."""
    if request.method not in UNSAFE_METHODS:
        return
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        current_app.logger.warning("CSRF check failed for %s %s from %s", request.method, request.path, client_ip())
        abort(400, description="This form has expired or did not come from the console. Reload the page and try again.")


auth.before_request(load_user)
auth.before_request(check_csrf)
auth.after_request(security_headers)


# --- signing in and out ---------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("console.inbox")


def throttled(email: str, ip: str | None) -> bool:
    since = utcnow() - timedelta(minutes=THROTTLE_MINUTES)
    if count_recent(db.session, "sign_in_failed", since, target=f"user {email}") >= THROTTLE_PER_EMAIL:
        return True
    return ip is not None and count_recent(db.session, "sign_in_failed", since, ip=ip) >= THROTTLE_PER_IP


def start_session(user: User) -> None:
    session.clear()
    session.permanent = True
    session["uid"], session["stamp"], session["since"] = user.id, user.session_stamp, int(time.time())
    csrf_token()


@auth.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if request.method == "GET":
        if g.get("user"):
            return redirect(safe_next(request.args.get("next")))
        return render_template("sign_in.html", email="", next=request.args.get("next", ""))
    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")
    next_url = request.form.get("next", "")
    ip = client_ip()
    if throttled(email, ip):
        current_app.logger.warning("sign-in refused for %s from %s: too many failures", email, ip)
        audit(db.session, None, "sign_in_throttled", f"user {email}", ip=ip)
        db.session.commit()
        message = f"Too many failed sign-ins. Wait {THROTTLE_MINUTES} minutes and try again, or ask an admin."
        return render_template("sign_in.html", email=email, next=next_url, error=message), 429
    user = authenticate(db.session, email, password)
    if user is None:
        current_app.logger.warning("failed sign-in for %s from %s", email, ip)
        audit(db.session, None, "sign_in_failed", f"user {email}", ip=ip)
        db.session.commit()
        return render_template(
            "sign_in.html", email=email, next=next_url, error="That email and password do not match an active account."
        ), 401
    user.last_sign_in_at = utcnow()
    audit(db.session, user, "sign_in", f"user {user.email}", ip=ip)
    db.session.commit()
    start_session(user)
    return redirect(safe_next(next_url))


@auth.post("/sign-out")
def sign_out():
    if g.get("user"):
        record("sign_out", f"user {g.user.email}")
        db.session.commit()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.sign_in"))


@auth.route("/reset/<token>", methods=["GET", "POST"])
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
    db.session.commit()
    session.clear()
    flash("Your password is set. Sign in with it.")
    return redirect(url_for("auth.sign_in"))
