"""Fetching a recording's media from Twilio with the account's credentials.

Only URLs under `TWILIO_API_BASE` (default https://api.twilio.com) are fetched: a webhook's
`RecordingUrl` is never trusted to point anywhere else."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from dataclasses import dataclass

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


def _authorization(config) -> dict[str, str]:
    credentials = f"{config['TWILIO_ACCOUNT_SID']}:{config['TWILIO_AUTH_TOKEN']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


def fetch_media(config, recording_url: str, extension: str = "", timeout: float = 20) -> Media:
    """GET a recording's media (`.wav` by default, `.mp3` with extension) with HTTP Basic auth."""
    url = media_url(config, recording_url, extension)
    request = urllib.request.Request(url, headers=_authorization(config))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Media(response.headers.get("Content-Type", "application/octet-stream"), response.read())
    except urllib.error.HTTPError as exc:
        raise MediaError(f"Twilio answered {exc.code} for {url}", exc.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MediaError(f"could not reach {url}: {exc}") from None


def delete_media(config, recording_url: str, timeout: float = 20) -> bool:
    """DELETE the recording from Twilio (its REST resource, `….json`). True when Twilio
    deleted it, False when it was already gone (404); raises MediaError otherwise."""
    url = media_url(config, recording_url, ".json")
    request = urllib.request.Request(url, method="DELETE", headers=_authorization(config))
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise MediaError(f"Twilio answered {exc.code} to DELETE {url}", exc.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MediaError(f"could not reach {url}: {exc}") from None
