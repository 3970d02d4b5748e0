"""Fetching a recording's media from Twilio with the account's credentials.

Only URLs under `TWILIO_API_BASE` (default https://api.twilio.com) are fetched: a webhook's
`RecordingUrl` is never trusted to point anywhere else. The credentials go only to that base's
origin (scheme, host and port): Twilio answers a media request with a redirect to a signed
storage URL, which is followed without them; a redirect to anything but HTTP(S), or from HTTPS
down to HTTP, is refused."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_API_BASE = "https://api.twilio.com"


class MediaError(RuntimeError):
    """The media could not be fetched; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Media:
    content_type: str
    data: bytes


def media_url(config, recording_url: str, extension: str = "") -> str:
    """The URL to fetch for a recording, checked to lie under the configured API base."""
    base = (config.get("TWILIO_API_BASE") or DEFAULT_API_BASE).rstrip("/")
    url = recording_url.replace("https://api.twilio.com", base, 1) if base != DEFAULT_API_BASE else recording_url
    if not url.startswith(base + "/"):
        raise MediaError(f"refusing to fetch {recording_url!r}: it is not under {base}")
    return url + extension


def _authorization(config) -> str:
    credentials = f"{config['TWILIO_ACCOUNT_SID']}:{config['TWILIO_AUTH_TOKEN']}".encode()
    return "Basic " + base64.b64encode(credentials).decode()


def origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, the port filled in for http and https; None when the
    URL has no usable one."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname, port


class CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects (as urllib does: GET and HEAD only, at most ten), sending the
    Authorization header only to requests for the API's own origin."""

    def __init__(self, api_origin: tuple, authorization: str) -> None:
        super().__init__()
        self.api_origin, self.authorization = api_origin, authorization

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = origin(newurl)
        downgrade = target is not None and (self.api_origin[0], target[0]) == ("https", "http")
        if target is None or target[0] not in ("http", "https") or downgrade:
            fp.close()
            raise urllib.error.URLError(f"refused to follow a {code} redirect to {newurl!r}")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and target == self.api_origin:
            new.add_unredirected_header("Authorization", self.authorization)
        return new


def _open(config, url: str, method: str, timeout: float):
    """Open `url` with the account's credentials, which follow it only within its origin."""
    authorization = _authorization(config)
    request = urllib.request.Request(url, method=method)
    request.add_unredirected_header("Authorization", authorization)  # not copied to a redirect
    opener = urllib.request.build_opener(CredentialsStayHome(origin(url), authorization))
    return opener.open(request, timeout=timeout)


def fetch_media(config, recording_url: str, extension: str = "", timeout: float = 20) -> Media:
    """GET a recording's media (`.wav` by default, `.mp3` with extension) with HTTP Basic auth."""
    url = media_url(config, recording_url, extension)
    try:
        with _open(config, url, "GET", timeout) as response:
            return Media(response.headers.get("Content-Type", "application/octet-stream"), response.read())
    except urllib.error.HTTPError as exc:
        raise MediaError(f"Twilio answered {exc.code} for {url}", exc.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MediaError(f"could not reach {url}: {exc}") from None


def delete_media(config, recording_url: str, timeout: float = 20) -> bool:
    """DELETE the recording from Twilio (its REST resource, `….json`). True when Twilio
    deleted it, False when it was already gone (404); raises MediaError otherwise."""
    url = media_url(config, recording_url, ".json")
    try:
        with _open(config, url, "DELETE", timeout):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise MediaError(f"Twilio answered {exc.code} to DELETE {url}", exc.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MediaError(f"could not reach {url}: {exc}") from None
