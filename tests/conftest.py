"""Fixtures: the app on a real, migrated database (SQLite always; PostgreSQL too when
TEST_DATABASE_URL is set), a Twilio stand-in that signs webhooks exactly as Twilio does,
and a real gunicorn serving the line for tests that need processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from twilio.request_validator import RequestValidator

from app import create_app
from config import PROJECT_DIR, normalize_database_url
from facts import write_path
from models import db, summary
from models.calls import verify_call_topics
from models.line import load_script, read_script_file

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "1" * 32
SECRETS = {"APP_ENV": "test", "SECRET_KEY": "test-secret", "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
PG_URL = os.environ.get("TEST_DATABASE_URL")
DATABASES = ["sqlite"] + (["postgresql"] if PG_URL else [])


def line_env(database_url: str, instance: Path, **extra: str) -> dict[str, str]:
    return {**SECRETS, "DATABASE_URL": database_url, "INSTANCE_DIR": str(instance), **extra}


def migrate_to_head(database_url: str, instance: Path) -> None:
    app = create_app(line_env(database_url, instance))
    with app.app_context():
        upgrade(directory=str(PROJECT_DIR / "migrations"))
        db.engine.dispose()


@pytest.fixture(autouse=True)
def no_replayer_outlives_its_test():
    """A spool replayer or write-behind thread left running would write one test's facts into
    the next test's database."""
    yield
    from facts.journal import WriteBehind
    from facts.spool import Replayer

    WriteBehind.stop_all()
    Replayer.stop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    path = folder / "template.db"
    migrate_to_head(f"sqlite:///{path}", folder)
    return path


@pytest.fixture(scope="session")
def pg_migrated(tmp_path_factory) -> str | None:
    """Empty the test PostgreSQL database's schema and migrate it from nothing, once."""
    if not PG_URL:
        return None
    engine = create_engine(normalize_database_url(PG_URL), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate_to_head(PG_URL, tmp_path_factory.mktemp("pg"))
    return PG_URL


def empty_pg(url: str) -> None:
    """Every table as the migrations left it: emptied, but for the counter they start."""
    engine = create_engine(normalize_database_url(url))
    with engine.begin() as conn:
        kept = ("alembic_version", "recording_numbers")
        tables = (
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND NOT tablename = ANY(:kept)"),
                {"kept": list(kept)},
            )
            .scalars()
            .all()
        )
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE recording_numbers SET next_number = 1"))
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path) -> str:
    """A migrated, empty database for one test: a copy of the SQLite template, or the
    PostgreSQL test database with every table emptied."""
    if request.param == "sqlite":
        path = tmp_path / "line.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_migrated")
    empty_pg(url)
    return url


@pytest.fixture
def settings(database_url, tmp_path) -> dict[str, str]:
    """The environment the line runs with in this test; tests may add to it before `app`."""
    return line_env(database_url, tmp_path / "instance")


@pytest.fixture
def app(settings):
    app = create_app(settings)
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
    yield app
    write_path(app).replayer.stop()
    with app.app_context():
        db.session.remove()
        # Whatever the test did, the summaries must still agree with the facts.
        assert verify_call_topics(db.session) + summary.verify(db.session) == []
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Reply:
    """A TwiML reply, parsed, with what a test asks of it."""

    def __init__(self, response) -> None:
        self.status = response.status_code
        self.body = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
        assert self.status == 200, f"{self.status}: {self.body[:300]}"
        ctype = response.headers.get("Content-Type", "")
        assert ctype.startswith(("text/xml", "application/xml")), ctype
        self.root = ET.fromstring(self.body)
        assert self.root.tag == "Response"

    @property
    def said(self) -> str:
        return " ".join(el.text or "" for el in self.root.iter("Say"))

    def says(self) -> list[ET.Element]:
        return list(self.root.iter("Say"))

    @property
    def gather(self) -> ET.Element | None:
        return self.root.find("Gather")

    @property
    def record(self) -> ET.Element | None:
        return self.root.find("Record")

    @property
    def redirect(self) -> str | None:
        el = self.root.find("Redirect")
        return el.text if el is not None else None

    @property
    def hangs_up(self) -> bool:
        return self.root.find("Hangup") is not None

    @property
    def action(self) -> str:
        verb = self.gather if self.gather is not None else self.record
        assert verb is not None, self.body
        return verb.get("action")


class Twilio:
    """Signs and sends webhooks the way Twilio does, to the test client or to a real server."""

    def __init__(self, send, base: str = "http://localhost", token: str = TOKEN) -> None:
        self.send, self.base, self.validator = send, base, RequestValidator(token)
        self.calls = 0

    def url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else self.base + path_or_url

    def post(self, path_or_url: str, params: dict, signature: str | None = None, headers: dict | None = None):
        url = self.url(path_or_url)
        sig = self.validator.compute_signature(url, params) if signature is None else signature
        return self.send(url, params, {"X-Twilio-Signature": sig, **(headers or {})})

    def call(self, **params) -> Caller:
        self.calls += 1
        return Caller(self, **params)


class Caller:
    """One call: its standing parameters, and steps that follow the replies."""

    def __init__(self, twilio: Twilio, call_sid: str | None = None, **params) -> None:
        import secrets

        self.twilio = twilio
        self.sid = call_sid or "CA" + secrets.token_hex(16)
        self.params = {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT,
            "From": "+15035550100",
            "To": "+15035550199",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            "FromCity": "PORTLAND",
            "FromState": "OR",
            "FromZip": "97201",
            "FromCountry": "US",
            **params,
        }
        self.reply: Reply | None = None

    def post(self, url: str, **extra) -> Reply:
        self.reply = Reply(self.twilio.post(url, {**self.params, **extra}))
        return self.reply

    def dial(self) -> Reply:
        return self.post("/twilio/voice", CallStatus="ringing")

    def press(self, digits: str) -> Reply:
        """Press keys at the menu the last reply offers."""
        return self.post(self.reply.action, CallStatus="in-progress", Digits=digits)

    def wait(self) -> Reply:
        """Press nothing: Twilio falls through to the redirect after the menu."""
        assert self.reply.redirect, self.reply.body
        return self.post(self.reply.redirect, CallStatus="in-progress")

    def speak(self, seconds: int = 12, sid: str | None = None, digits: str = "#") -> tuple[Reply, str]:
        """Record a comment at the `<Record>` the last reply holds; return the reply and its sid."""
        import secrets

        record = self.reply.record
        assert record is not None, self.reply.body
        sid = sid or "RE" + secrets.token_hex(16)
        reply = self.post(
            record.get("action"),
            CallStatus="in-progress",
            Digits=digits,
            RecordingSid=sid,
            RecordingUrl=recording_url(sid),
            RecordingDuration=str(seconds),
        )
        return reply, sid

    def recording_status(self, sid: str, status: str = "completed", seconds: int = 12) -> Reply:
        return self.post(
            "/twilio/recording-status",
            RecordingSid=sid,
            RecordingUrl=recording_url(sid),
            RecordingStatus=status,
            RecordingDuration=str(seconds),
            RecordingChannels="1",
            RecordingSource="RecordVerb",
        )

    def transcription(self, sid: str, text: str = "I support it.", status: str = "completed") -> Reply:
        return self.post(
            "/twilio/transcription",
            RecordingSid=sid,
            RecordingUrl=recording_url(sid),
            TranscriptionSid="TR" + sid[2:],
            TranscriptionText=text,
            TranscriptionStatus=status,
            TranscriptionUrl=recording_url(sid) + "/Transcriptions",
        )

    def hang_up(self, duration: int = 30, status: str = "completed") -> Reply:
        return self.post(
            "/twilio/status",
            CallStatus=status,
            CallDuration=str(duration),
            Timestamp="Mon, 30 Nov 2026 12:00:00 +0000",
            CallbackSource="call-progress-events",
            SequenceNumber="0",
        )


def eventually(read, done, timeout: float = 30.0, every: float = 0.2):
    """`read()` again and again until `done(what it read)` or `timeout` seconds have passed;
    the last reading. For what the line writes behind its replies (a batch later, or seconds
    after a killed worker's journal is replayed)."""
    deadline = time.monotonic() + timeout
    seen = read()
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(every)
        seen = read()
    return seen


def recording_url(sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"


@pytest.fixture
def twilio(client) -> Twilio:
    return Twilio(lambda url, params, headers: client.post(url, data=params, headers=headers))


@pytest.fixture
def api_token(app) -> str:
    from models.tokens import create_token

    with app.app_context():
        token = create_token(db.session, "tests")
        db.session.commit()
    return token


@pytest.fixture
def api(client, api_token):
    """GET from the JSON API with a valid bearer token."""

    def get(path: str, **params):
        query = f"?{urlencode(params)}" if params else ""
        return client.get(path + query, headers={"Authorization": f"Bearer {api_token}"})

    return get


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedLine:
    """The line under gunicorn, configured as the Procfile runs it, on loopback."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 4) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            **env,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_WORKERS": str(workers),
            "WEB_THREADS": str(threads),
        }
        self.log = Path(env["INSTANCE_DIR"]).parent / f"gunicorn-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:  # a file, not a pipe nobody reads, which would fill up
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py", "app:create_app()"],
                cwd=PROJECT_DIR,
                env=full_env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/livez", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start: " + self.log.read_text()[-2000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def served_line(app, settings):
    """Start gunicorn on the test's database (the script is already loaded), writing behind
    its replies as in production, or, with `write_behind=False`, committing each webhook
    before its reply, for a test that reads the tables right after playing."""
    started: list[ServedLine] = []

    def serve(write_behind: bool = True, **kwargs) -> ServedLine:
        line = ServedLine({**settings, "WRITE_BEHIND": "1" if write_behind else "0"}, **kwargs)
        started.append(line)
        return line

    yield serve
    for line in started:
        line.stop()


# --- the staff console (helpers in tests/console_support.py) ---------------------------------


@pytest.fixture
def media_server(settings):
    """A loopback stand-in for Twilio's recording media; the line's TWILIO_API_BASE points at it.
    Ask for it before `app` (or `client`) so the setting takes."""
    from tests.console_support import MediaServer

    server = MediaServer(ACCOUNT, TOKEN)
    settings["TWILIO_API_BASE"] = server.base
    yield server
    server.stop()


@pytest.fixture
def sign_in(app):
    """`sign_in(role)` makes an account with that role and returns a Console client signed in as it."""
    from tests.console_support import Console, make_user

    def make(role: str = "staff", email: str | None = None):
        email = email or f"{role}@example.org"
        make_user(app, email, role)
        console = Console(app.test_client())
        assert console.sign_in(email).status_code == 302
        return console

    return make
