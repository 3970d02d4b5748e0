"""Error pages for people: a plain page with what went wrong and where to go, never a stack
trace. The webhooks and the JSON API keep their own error replies."""

from __future__ import annotations

import secrets

from flask import current_app, g, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

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


def http_error(error: HTTPException):
    if not wants_html():
        if request.path.startswith("/api/"):
            return jsonify(error=error.description), error.code
        return f"{error.code} {error.name}\n", error.code, {"Content-Type": "text/plain"}
    return error_page(error.code, TITLES.get(error.code, error.name), error.description)


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
