"""Helpers for the console's tests: staff accounts, a client that signs in and sends CSRF tokens
as a browser would, comments left through signed webhooks, real WAV audio, and a loopback
stand-in for Twilio's recording media endpoint."""

from __future__ import annotations

import base64
import io
import math
import re
import struct
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from models import db
from models.users import create_user

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(app, email: str, role: str = "staff", password: str = PASSWORD) -> int:
    with app.app_context():
        user = create_user(db.session, email, password, role=role)
        db.session.commit()
        return user.id


class Console:
    """A browser-like test client: it reads the CSRF token from the last page it got."""

    def __init__(self, client) -> None:
        self.client = client
        self.token: str | None = None

    def get(self, path: str, **kwargs):
        response = self.client.get(path, **kwargs)
        found = CSRF.search(response.get_data(as_text=True)) if response.mimetype == "text/html" else None
        if found:
            self.token = found.group(1)
        return response

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kwargs):
        if csrf and self.token is None:
            self.get("/sign-in")
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.token)
        return self.client.post(path, data=form, **kwargs)

    def sign_in(self, email: str, password: str = PASSWORD):
        self.get("/sign-in")
        response = self.post("/sign-in", {"email": email, "password": password})
        if response.status_code == 302:
            self.get("/inbox")
        return response


def spoken_reference(reply) -> str:
    """The reference number the caller heard, read digit by digit."""
    spoken = re.search(r"(?:reference number is|número de referencia es|referans ou se) ([\d, ]+)\.", reply.said)
    assert spoken, reply.said
    return spoken.group(1).replace(", ", "")


def leave_comment(
    twilio,
    topic: str = "1",
    stance: str | None = "1",
    seconds: int = 12,
    text: str | None = None,
    language: str = "1",
    **call_params,
) -> tuple[object, str, str]:
    """One call that leaves one comment; returns (caller, recording sid, reference heard)."""
    call = twilio.call(**call_params)
    call.dial()
    call.press(language)
    call.press(topic)
    if stance is not None:
        call.press(stance)
    reply, sid = call.speak(seconds=seconds)
    call.recording_status(sid, seconds=seconds)
    if text is not None:
        call.transcription(sid, text)
    call.hang_up()
    return call, sid, spoken_reference(reply)


def wav_bytes(seconds: float = 1.0, rate: int = 8000, pitch: float = 440.0) -> bytes:
    """A real mono 16-bit WAV file holding a tone."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(int(rate * seconds))
        )
        w.writeframes(frames)
    return out.getvalue()


class MediaServer:
    """Twilio's recording media endpoint, on loopback: GET <base>/2010-04-01/Accounts/<AC>/Recordings/<RE>
    with HTTP Basic auth answers a WAV; anything else 401/404. `fail` makes it answer 500."""

    def __init__(self, account: str, token: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"{account}:{token}".encode()).decode()
        self.audio: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.fail = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, self.headers.get("Authorization")))
                if server.fail:
                    return self._answer(500, b"unavailable", "text/plain")
                if self.headers.get("Authorization") != server.expected:
                    return self._answer(401, b"auth", "text/plain")
                sid = self.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".wav")
                if "/Recordings/" not in self.path or sid not in server.audio:
                    return self._answer(404, b"no such recording", "text/plain")
                return self._answer(200, server.audio[sid], "audio/x-wav")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def recording_hits(self, sid: str) -> int:
        return sum(1 for path, _ in self.requests if path.rstrip("/").endswith(sid))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
