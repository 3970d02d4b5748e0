"""Error pages for people: a plain page with what went wrong and where to go, never a stack
trace. The webhooks and the JSON API keep their own error replies.

Two kinds of failure are answered here rather than as a 500: a parameter a person typed that
cannot be used (`BadParameter`: 400 with its message), and a database that is not answering
(503, "try again in a minute", while it is away; the pool checks each connection before use,
so a restart of the database itself costs no request)."""

from __future__ import annotations

import secrets
import sqlite3

from flask import current_app, g, jsonify, make_response, render_template, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from .params import BadParameter

TITLES = {
    400: "That request was not understood",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Already changed",
    413: "Too large",
    416: "Outside the recording",
    429: "Too many attempts",
    500: "Something went wrong",
    502: "Twilio did not answer",
    503: "Unavailable",
}
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def wants_html() -> bool:
    return not request.path.startswith(("/api/", "/twilio/"))


DATABASE_AWAY = "The database is not answering just now. Try again in a minute."
RETRY_AFTER_SECONDS = 30


def http_error(error: HTTPException):
    """The error's own headers (`Allow` for 405, `Content-Range` for 416, …) are kept."""
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    if not wants_html():
        if request.path.startswith("/api/"):
            return jsonify(error=error.description), error.code, headers
        return f"{error.code} {error.name}\n", error.code, [*headers, ("Content-Type", "text/plain")]
    response = error_page(error.code, TITLES.get(error.code, error.name), error.description)
    response.headers.extend(headers)
    return response


def bad_parameter(error: BadParameter):
    """A parameter no view caught: 400 with what is wrong with it."""
    return http_error(BadRequest(description=str(error)))


DATABASE_AWAY_ERRORS = (OperationalError, DisconnectionError, PoolTimeout, InterfaceError)
# SQLite calls every error "operational", a bad statement too: only these mean it is away.
SQLITE_AWAY = ("database is locked", "unable to open database file", "disk I/O error")


def lost_database(error: SQLAlchemyError) -> bool:
    """Whether `error` says the database cannot be reached (refused, dropped, timed out,
    locked) rather than that a statement was wrong."""
    if isinstance(error, DisconnectionError | PoolTimeout):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError):
        return not isinstance(error.orig, sqlite3.Error) or any(m in str(error.orig) for m in SQLITE_AWAY)
    return False


def database_away(error: SQLAlchemyError):
    """503 while the database cannot be reached; any other database error is raised on, to
    be a 500 like every unexpected error."""
    if not lost_database(error):
        raise error
    current_app.logger.warning("database unavailable on %s %s: %s", request.method, request.path, error)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not wants_html():
        if request.path.startswith("/api/"):
            return jsonify(error=DATABASE_AWAY), 503, headers
        return f"503 Service Unavailable: {DATABASE_AWAY}\n", 503, {**headers, "Content-Type": "text/plain"}
    try:
        response = error_page(503, TITLES[503], DATABASE_AWAY)
    except SQLAlchemyError:  # the page's header reads the signed-in user, whose row may be gone with the connection
        g.user = None
        response = error_page(503, TITLES[503], DATABASE_AWAY)
    response.headers.update(headers)
    return response


def server_error(error: InternalServerError):
    """Log the cause with a short id, show the person only the id."""
    incident = secrets.token_hex(4)
    current_app.logger.error(
        "error %s on %s %s", incident, request.method, request.path, exc_info=getattr(error, "original_exception", None)
    )
    if not wants_html():
        return f"500 Internal Server Error ({incident})\n", 500, {"Content-Type": "text/plain"}
    message = f"The console could not do that. If it happens again, tell an admin: error {incident}."
    return error_page(500, TITLES[500], message)


def error_page(code: int, title: str, message: str):
    """The error page people see, with the console's security headers (an error outside the
    console's blueprints gets no after-request hook to add them)."""
    page = render_template("error.html", code=code, title=title, message=message, user=g.get("user"))
    return protected(make_response(page, code))


def register_error_pages(app) -> None:
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(InternalServerError, server_error)
    app.register_error_handler(BadParameter, bad_parameter)
    for error in DATABASE_AWAY_ERRORS:
        app.register_error_handler(error, database_away)


def protected(response):
    """A page for people: no framing, no sniffing, scripts and styles only from us."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def security_headers(response):
    """`after_request` of the console's blueprints (sign-in and console), whose every reply,
    error pages included, is protected; the console's are never cached. Error pages outside
    them are protected where they are made. Not an app-wide hook: the webhooks would pay
    for it on every request."""
    if request.blueprint == "console":
        response.headers.setdefault("Cache-Control", "private, no-store")
    return protected(response)
