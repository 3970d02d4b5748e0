"""The check every `/twilio/*` request passes first: Twilio's `X-Twilio-Signature`."""

from __future__ import annotations

from flask import Request, abort, current_app
from twilio.request_validator import RequestValidator


def is_valid_signature(token: str, url: str, params, signature: str | None) -> bool:
    """Whether `signature` is what Twilio computes for this URL and form with `token`.

    Twilio signs the exact URL it requested; the URL with the default port added or removed
    is accepted too, as Twilio's own validator does."""
    if not signature or not token:
        return False
    return RequestValidator(token).validate(url, params, signature)


def public_base_url(config, request: Request) -> str:
    """The scheme, host and mount point Twilio used to reach us.

    `PUBLIC_BASE_URL` when set; otherwise the request's own, which reflects
    `X-Forwarded-*` when `TRUSTED_PROXIES` enables werkzeug's ProxyFix."""
    return config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/") + request.script_root


def require_twilio_signature(config, request: Request, base: str) -> None:
    """For every webhook, before anything else it does: 403 unless the request is signed with
    our Auth Token for the URL Twilio requested (`base`, then the path and query string
    exactly as they were sent)."""
    query = request.query_string.decode("latin-1")
    url = base + request.path + (f"?{query}" if query else "")
    signature = request.headers.get("X-Twilio-Signature")
    if not is_valid_signature(config["TWILIO_AUTH_TOKEN"], url, request.form, signature):
        current_app.logger.warning("rejected unsigned or wrongly signed webhook to %s", request.path)
        abort(403, description="The request is not signed with this line's Twilio Auth Token.")
