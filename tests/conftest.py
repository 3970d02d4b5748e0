"""Fixtures: the app on a real, migrated database (SQLite always; PostgreSQL too when
TEST_DATABASE_URL is set), Twilio as the simulated caller (ivr/caller.py) plays it, and a
real gunicorn serving the line for tests that need processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from twilio.request_validator import RequestValidator

from app import create_app
from config import DEFAULT_LINE_CONFIG, PROJECT_DIR, normalize_database_url
from facts import write_path
from ivr.caller import (
    THE_LINE,
    CallPlayer,
    LineFacts,
    Mind,
    Phone,
    PlayedCall,
    Recording,
    Request,
    Response,
    SimulatedCall,
    TwilioAccount,
    kind_of,
    new_sid,
    play,
)
from ivr.caller import Reply as TwiML
from ivr.menu import FINISH_KEY
from ivr.trial import TRIAL_HEADER, trial_mark
from models import db, summary
from models.calls import verify_call_topics
from models.line import load_script, read_script_file

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "1" * 32
SECRETS = {"APP_ENV": "test", "SECRET_KEY": "test-secret", "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
# The tests' caller, and what a caller knows of the line as shipped.
CALLER = Phone("+15035550100", "PORTLAND", "OR", "97201", "US")
LINE = LineFacts.from_file(DEFAULT_LINE_CONFIG)
TWILIO_ACCOUNT = TwilioAccount(ACCOUNT, TOKEN)
PG_URL = os.environ.get("TEST_DATABASE_URL")
# Every process the suite starts (gunicorn, `flask`) reads no `.flaskenv` or `.env` a developer
# keeps in this folder: each test gives its processes the settings it means them to have.
os.environ["FLASK_SKIP_DOTENV"] = "1"
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
    """The environment the line runs with in this test; tests may add to it before `app`.
    Webhooks take the path production takes: journalled, then written behind in batches (the
    `twilio` fixture waits for each webhook's facts to be written before it returns; batches
    are not held open to gather more, since a test plays one webhook at a time)."""
    return line_env(database_url, tmp_path / "instance", WRITE_BEHIND="1", WRITE_BEHIND_GATHER_MS="0")


@pytest.fixture
def app(settings):
    app = create_app(settings)
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
    yield app
    write_path(app).flush()  # what the test's webhooks journalled, written before the check
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


class Reply(TwiML):
    """A TwiML reply, parsed, with what a test asks of it; its status and type checked."""

    def __init__(self, response) -> None:
        self.status = response.status_code
        body = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
        assert self.status == 200, f"{self.status}: {body[:300]}"
        ctype = response.headers.get("Content-Type", "")
        assert ctype.startswith(("text/xml", "application/xml")), ctype
        super().__init__(body)


class Twilio:
    """Twilio, to the test client or to a real server: each request is made by the simulated
    caller (ivr/caller.py), with exactly the parameters Twilio sends, and signed as Twilio
    signs it. `send(url, params, headers)` delivers one and returns the HTTP response."""

    def __init__(self, send, base: str = "http://localhost", token: str = TOKEN, account: str = ACCOUNT) -> None:
        self.send, self.base = send, base
        self.account = TwilioAccount(account, token)
        self.validator = RequestValidator(token)

    def url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else self.base + path_or_url

    def post(self, path_or_url: str, params: dict, signature: str | None = None, headers: dict | None = None):
        """POST `params` as they are (signed, unless `signature` is given): for requests
        Twilio would not make."""
        url = self.url(path_or_url)
        sig = self.validator.compute_signature(url, params) if signature is None else signature
        return self.send(url, params, {"X-Twilio-Signature": sig, **(headers or {})})

    def deliver(self, request: Request):
        return self.send(request.url, request.params, request.headers())

    def respond(self, request: Request) -> Response:
        """Deliver `request` and give what came back as the simulated caller reads it."""
        answer = self.deliver(request)
        body = answer.get_data(as_text=True) if hasattr(answer, "get_data") else answer.text
        return Response(answer.status_code, body)

    def call(self, call_sid: str | None = None, **params) -> Caller:
        return Caller(self, call_sid, **params)

    def play(
        self,
        mind: Mind,
        phone: Phone = CALLER,
        *,
        call_sid: str | None = None,
        line: LineFacts | None = None,
        **options,
    ) -> PlayedCall:
        """Play a whole call as `mind` decides (ivr.caller.CallPlayer); what was played."""
        simulated = SimulatedCall(self.account, self.base, phone, call_sid=call_sid)
        player = CallPlayer(simulated, line or LINE, mind, **options)
        return play(player, self.respond)


class Caller:
    """One call taken step by step: each step is the request Twilio makes for it (made by
    `ivr.caller.SimulatedCall`), following the last reply. `params` override the call's
    parameters: `From` (and its location), `To`, `CallSid`, or any other Twilio adds."""

    def __init__(self, twilio: Twilio, call_sid: str | None = None, **params) -> None:
        self.twilio = twilio
        call_sid = call_sid or params.pop("CallSid", None)
        phone = CALLER
        if "From" in params:
            number = params.pop("From")
            phone = Phone(number) if Phone(number).withheld else replace(CALLER, number=number)
        line = Phone(params.pop("To")) if "To" in params else THE_LINE
        self.simulated = SimulatedCall(twilio.account, twilio.base, phone, call_sid=call_sid, line=line, extra=params)
        self.sid = self.simulated.sid
        self.reply: Reply | None = None

    @property
    def params(self) -> dict[str, str]:
        """The call's parameters as every voice request carries them, but `CallStatus`."""
        return {k: v for k, v in self.simulated.call_parameters().items() if k != "CallStatus"}

    def send(self, request: Request) -> Reply:
        self.reply = Reply(self.twilio.deliver(request))
        return self.reply

    def post(self, url: str, **extra) -> Reply:
        """A voice request to `url` with the call's parameters and `extra`, as the test makes it."""
        return self.send(self.simulated.request(kind_of(url), url, {**self.params, **extra}))

    def dial(self) -> Reply:
        return self.send(self.simulated.voice())

    def press(self, digits: str) -> Reply:
        """Press keys at the menu the last reply offers."""
        return self.send(self.simulated.gather(self.reply.action, digits))

    def wait(self) -> Reply:
        """Press nothing: Twilio falls through to the redirect after the menu."""
        assert self.reply.redirect, self.reply.body
        return self.send(self.simulated.redirect(self.reply.redirect))

    def speak(self, seconds: int = 12, sid: str | None = None, digits: str = FINISH_KEY) -> tuple[Reply, str]:
        """Record a comment at the `<Record>` the last reply holds; return the reply and its sid."""
        record = self.reply.record
        assert record is not None, self.reply.body
        recording = Recording(sid or new_sid("RE"), seconds)
        return self.send(self.simulated.record_action(record.get("action"), recording, digits)), recording.sid

    def recording_status(self, sid: str, status: str = "completed", seconds: int = 12) -> Reply:
        url = self.twilio.url("/twilio/recording-status")
        return self.send(self.simulated.recording_status(url, Recording(sid, seconds, status)))

    def transcription(self, sid: str, text: str = "I support it.", status: str = "completed") -> Reply:
        recording = Recording(sid, 0, transcript=text, transcription_status=status)
        return self.send(self.simulated.transcription(self.twilio.url("/twilio/transcription"), recording))

    def hang_up(self, duration: int = 30, status: str = "completed") -> Reply:
        """Twilio's call status callback: the call ended."""
        return self.send(self.simulated.call_status(duration, status))


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
    return TWILIO_ACCOUNT.recording_url(sid)


@pytest.fixture
def twilio(app) -> Twilio:
    return in_process_twilio(app)


def in_process_twilio(app, *, trial: bool = False, **kwargs) -> Twilio:
    """Twilio, posting to the app's test client; each webhook's facts are written (by the
    write-behind writer, as in production) before the next request, so that a test reads what
    it played. `trial`: every webhook carries the mark the console's "Try the line" sends
    (a test call, on the live script)."""
    client = app.test_client()

    def send(url, params, headers):
        if trial:
            headers = {**headers, TRIAL_HEADER: trial_mark(app.config["SECRET_KEY"], "live", params["CallSid"])}
        response = client.post(url, data=params, headers=headers)
        write_path(app).flush()
        return response

    return Twilio(send, **kwargs)


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
