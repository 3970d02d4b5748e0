"""The check every `/twilio/*` request passes first: Twilio's `X-Twilio-Signature`."""

from __future__ import annotations

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator


def is_valid_signature(token: str, url: str, params, signature: str | None) -> bool:
    """Whether `signature` is what Twilio computes for this URL and form with `token`.

    Twilio signs the exact URL it requested; the URL with the default port added or removed
    is accepted too, as Twilio's own validator does."""
    if not signature or not token:
        return False
    return RequestValidator(token).validate(url, params, signature)


def public_base_url() -> str:
    """The scheme, host and mount point Twilio used to reach us.

    `PUBLIC_BASE_URL` when set; otherwise the request's own, which reflects
    `X-Forwarded-*` when `TRUSTED_PROXIES` enables werkzeug's ProxyFix."""
    base = current_app.config["PUBLIC_BASE_URL"]
    if base:
        return base
    return request.host_url.rstrip("/") + request.script_root


def requested_url() -> str:
    """The full URL Twilio requested, query string included, exactly as it was sent."""
    query = request.query_string.decode("latin-1")
    return public_base_url() + request.path + (f"?{query}" if query else "")


def require_twilio_signature() -> None:
    """For every webhook, before anything else it does: 403 unless the request is signed with
    our Auth Token."""
    ok = is_valid_signature(
        current_app.config["TWILIO_AUTH_TOKEN"],
        requested_url(),
        request.form,
        request.headers.get("X-Twilio-Signature"),
    )
    if not ok:
        current_app.logger.warning("rejected unsigned or wrongly signed webhook to %s", request.path)
        abort(403, description="The request is not signed with this line's Twilio Auth Token.")
