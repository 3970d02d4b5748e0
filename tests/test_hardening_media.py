"""The account's credentials go only to Twilio's API (the origin of TWILIO_API_BASE), however
its media redirects; and the audio endpoint answers Range requests through werkzeug's
conditional responses: a normal range, an open one, a suffix, one outside the file, If-Range.

Two real loopback HTTP servers stand in for Twilio's API and for the storage it redirects to."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select, update

from models import AuditEntry, Recording, db
from storage.twilio_media import MediaError, fetch_media
from tests.conftest import ACCOUNT, TOKEN, recording_url
from tests.console_support import leave_comment, spoken_reference, wav_bytes

CREDENTIALS = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
AUDIO = wav_bytes(0.3, pitch=500)


class Loopback:
    """An HTTP server on 127.0.0.1 (its own port) that records each request's path and
    Authorization header and answers with `answer(path, authorization)`: (status, headers, body)."""

    def __init__(self, answer) -> None:
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                authorization = self.headers.get("Authorization")
                server.seen.append((self.path, authorization))
                status, headers, body = answer(self.path, authorization)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def storage_server():
    """The signed storage URL Twilio redirects to: it needs no credentials and answers anyone."""
    server = Loopback(lambda path, auth: (200, {"Content-Type": "audio/x-wav"}, AUDIO))
    yield server
    server.stop()


@pytest.fixture
def twilio_api(settings, storage_server):
    """Twilio's API: with the account's credentials, a recording's media redirects — RE…ELSE to
    the storage server (another port), RE…HOME to its own /media/ path (which needs the
    credentials), RE…FILE to a file: URL, RE…FTP to ftp:. Ask for it before `app`."""

    def answer(path: str, auth: str | None):
        if auth != CREDENTIALS:
            return 401, {}, b"credentials required"
        if path.startswith("/media/"):
            return 200, {"Content-Type": "audio/x-wav"}, AUDIO
        sid = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".wav").removesuffix(".mp3")
        targets = {
            "ELSE": f"{storage_server.base}/bucket/{sid}.wav?X-Amz-Signature=abc",
            "HOME": f"/media/{sid}.wav",
            "FILE": "file:///etc/passwd",
            "FTP": f"ftp://127.0.0.1:{storage_server.httpd.server_address[1]}/{sid}.wav",
        }
        target = next((url for suffix, url in targets.items() if sid.endswith(suffix)), None)
        return (302, {"Location": target}, b"") if target else (404, {}, b"no such recording")

    server = Loopback(answer)
    settings["TWILIO_API_BASE"] = server.base
    yield server
    server.stop()


def media_config(api) -> dict:
    return {"TWILIO_API_BASE": api.base, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}


def sid_ending(suffix: str) -> str:
    return "RE" + "0" * (32 - len(suffix)) + suffix


def test_credentials_are_not_sent_to_where_twilio_redirects(twilio_api, storage_server):
    """What the worker and the console both call."""
    media = fetch_media(media_config(twilio_api), recording_url(sid_ending("ELSE")), ".wav")
    assert media.data == AUDIO
    assert twilio_api.seen == [(f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid_ending('ELSE')}.wav", CREDENTIALS)]
    assert [auth for _, auth in storage_server.seen] == [None]  # followed, without the credentials
    assert storage_server.seen[0][0] == f"/bucket/{sid_ending('ELSE')}.wav?X-Amz-Signature=abc"


def test_credentials_follow_a_redirect_within_twilio(twilio_api, storage_server):
    media = fetch_media(media_config(twilio_api), recording_url(sid_ending("HOME")))
    assert media.data == AUDIO
    assert [auth for _, auth in twilio_api.seen] == [CREDENTIALS, CREDENTIALS]
    assert storage_server.seen == []


@pytest.mark.parametrize("suffix", ["FILE", "FTP"])
def test_a_redirect_out_of_http_is_refused(twilio_api, storage_server, suffix):
    with pytest.raises(MediaError):
        fetch_media(media_config(twilio_api), recording_url(sid_ending(suffix)))
    assert storage_server.seen == []


def test_console_audio_follows_the_redirect_without_credentials(twilio_api, storage_server, app, sign_in, twilio):
    call = twilio.call()
    call.dial()
    call.press("1")  # English
    call.press("3")  # housing: no position asked
    reply, sid = call.speak(sid=sid_ending("ELSE"))
    call.recording_status(sid)
    call.hang_up()
    reference = spoken_reference(reply)
    response = sign_in("staff").get(f"/audio/{reference}")
    assert response.status_code == 200 and response.data == AUDIO
    assert [auth for _, auth in twilio_api.seen] == [CREDENTIALS]
    assert [auth for _, auth in storage_server.seen] == [None]


# --- Range requests on the audio endpoint -------------------------------------------------------


@pytest.fixture
def stored(app, twilio):
    """A comment whose audio is in our storage: (reference, audio bytes, checksum)."""
    _, sid, reference = leave_comment(twilio, "3", None, text="Stored")
    audio = wav_bytes(1.0, pitch=350)
    key = f"recordings/test/{sid}.wav"
    path = Path(app.config["RECORDINGS_DIR"], key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(audio)
    digest = "d" * 64
    with app.app_context():
        db.session.execute(
            update(Recording)
            .where(Recording.recording_sid == sid)
            .values(storage_key=key, content_type="audio/wav", size_bytes=len(audio), checksum=digest)
        )
        db.session.commit()
    return reference, audio, digest


def test_ranges_normal_open_suffix_and_unsatisfiable(app, sign_in, stored):
    reference, audio, _ = stored
    staff = sign_in("staff")
    size = len(audio)

    def get(range_header: str | None):
        return staff.get(f"/audio/{reference}", headers={"Range": range_header} if range_header else {})

    whole = get(None)
    assert whole.status_code == 200 and whole.data == audio and whole.headers["Content-Length"] == str(size)
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Cache-Control"] == "private, no-store"
    middle = get("bytes=1000-4999")
    assert middle.status_code == 206 and middle.data == audio[1000:5000]
    assert middle.headers["Content-Range"] == f"bytes 1000-4999/{size}" and middle.headers["Content-Length"] == "4000"
    open_ended = get("bytes=12000-")
    assert open_ended.status_code == 206 and open_ended.data == audio[12000:]
    assert open_ended.headers["Content-Range"] == f"bytes 12000-{size - 1}/{size}"
    suffix = get("bytes=-300")
    assert suffix.status_code == 206 and suffix.data == audio[-300:]
    assert suffix.headers["Content-Range"] == f"bytes {size - 300}-{size - 1}/{size}"
    outside = get(f"bytes={size}-")
    assert outside.status_code == 416 and outside.headers["Content-Range"] == f"bytes */{size}"
    assert "Outside the recording" in outside.get_data(as_text=True)  # the console's error page
    with app.app_context():
        listened = db.session.scalars(select(AuditEntry.target).where(AuditEntry.action == "listen")).all()
    assert listened == [f"comment {reference}"]  # five requests by one person: one entry


def test_a_stale_if_range_gets_the_whole_recording(sign_in, stored):
    """If-Range names the copy the player has: the same one resumes (206), another one (the
    audio changed since) gets the whole file rather than a piece of the wrong one."""
    reference, audio, digest = stored
    staff = sign_in("staff")
    same = staff.get(f"/audio/{reference}", headers={"Range": "bytes=100-199", "If-Range": f'"{digest}"'})
    assert same.status_code == 206 and same.data == audio[100:200]
    other = staff.get(f"/audio/{reference}", headers={"Range": "bytes=100-199", "If-Range": '"' + "e" * 64 + '"'})
    assert other.status_code == 200 and other.data == audio
