"""Fixtures for the worker's tests: the Twilio stand-in, the line configured to fetch from
it, comments recorded through the signed webhooks, and real worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from config import PROJECT_DIR
from models import Job, Recording, Transcription, db

from .sound import require, silence_wav
from .standin import TwilioStandIn

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-auth-token-0123456789abcdef"
RUN_LINE = re.compile(
    r"run (?P<event>start|end) job=(?P<job>\d+) kind=(?P<kind>\S+) key=(?P<key>\S+) "
    r"try=(?P<attempt>\d+)/\d+ worker=(?P<worker>\S+) at=(?P<at>[\d.]+)"
)


def whisper_model_dir() -> str:
    """The test weights (see tests/whisper_weights.py), or fail under CI / skip elsewhere."""
    folder = os.environ.get("WHISPER_MODEL_DIR") or str(PROJECT_DIR / ".cache" / "whisper-base")
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        require(False, "faster-whisper (pip install -r requirements-whisper.txt)")
    require((Path(folder) / "model.bin").is_file(), f"Whisper test weights in {folder} (make test-weights)")
    return folder


def eventually(check, timeout: float = 30, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def standin():
    server = TwilioStandIn(ACCOUNT, TOKEN)
    yield server
    server.close()


@dataclass
class Line:
    """The line under test, with helpers to record comments and run the worker."""

    app: object
    twilio: object
    standin: TwilioStandIn
    folder: Path
    callers: dict = field(default_factory=dict)  # sid -> the call that recorded it

    def comment(
        self,
        wav: bytes | None = None,
        *,
        language: str = "1",
        seconds: int | None = None,
        mp3: bytes | None = None,
        status: str = "completed",
        serve: bool = True,
    ) -> str:
        """A caller records a comment (language 1 English, 2 Spanish) on the housing topic;
        Twilio holds its media and sends the recording status callback. Returns its sid."""
        wav = wav if wav is not None else silence_wav(3)
        if seconds is None:
            seconds = round(len(wav) / 16000)
        call = self.twilio.call()
        call.dial()
        call.press(language)
        call.press("3")
        _, sid = call.speak(seconds=seconds)
        if serve:
            self.standin.add(sid, wav, mp3)
        if status:
            call.recording_status(sid, status=status, seconds=seconds)
        call.hang_up()
        self.callers[sid] = call
        return sid

    def cli(self, *args: str, code: int = 0):
        result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == code, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
        return result

    def work(self, *args: str):
        """Run the worker in this process until no job is due."""
        return self.cli("worker", "run", "--burst", *args)

    def recording(self, sid: str) -> Recording:
        with self.app.app_context():
            row = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
            db.session.expunge_all()
            return row

    def transcripts(self, sid: str) -> dict[str, Transcription]:
        with self.app.app_context():
            rows = db.session.scalars(select(Transcription).where(Transcription.recording_sid == sid)).all()
            db.session.expunge_all()
            return {row.source: row for row in rows}

    def job(self, kind: str, sid: str) -> Job | None:
        with self.app.app_context():
            row = db.session.scalar(select(Job).where(Job.kind == kind, Job.key == sid))
            db.session.expunge_all()
            return row

    def stored_bytes(self, sid: str) -> bytes:
        from storage import storage_for

        row = self.recording(sid)
        with storage_for(self.app.config).open(row.storage_key) as stored:
            return stored.read()


@pytest.fixture
def line(request, settings, standin, tmp_path):
    """`line(**settings)` starts the line with these settings added, fetching from the stand-in."""

    def start(**extra: str) -> Line:
        settings.update(
            {
                "TWILIO_API_BASE": standin.base,
                "JOB_BACKOFF_SECONDS": "0",
                "JOB_MAX_ATTEMPTS": "4",
                "JOB_LEASE_SECONDS": "5",
                "WORKER_POLL_SECONDS": "0.05",
                "WORKER_SWEEP_SECONDS": "0",
                "TRANSCRIBERS": "*=none",
                "MEDIA_TIMEOUT_SECONDS": "5",
                **extra,
            }
        )
        app = request.getfixturevalue("app")
        return Line(app, request.getfixturevalue("twilio"), standin, tmp_path)

    return start


class WorkerProcess:
    """`flask worker run` in a process of its own, as the Procfile runs it; its log is kept."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "worker") -> None:
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker", "run"],
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def runs(self) -> list[dict]:
        return [m.groupdict() for m in RUN_LINE.finditer(self.log_path.read_text())]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
        return self.process.returncode


@pytest.fixture
def workers(settings, tmp_path):
    """`workers()` starts a worker process on the test's line; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(dict(settings), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
