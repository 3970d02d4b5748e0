"""`python -m bench inprocess`: one server's cost per webhook, without HTTP or other processes.

Builds ours (`app:create_app()`, on a fresh database made as the Procfile's release step makes
it) or the ceiling in this process, and calls its WSGI callable directly with the webhooks of
whole calls, signed as Twilio signs them: the greeting, language, topic, position, recording
status, transcription and `<Record>` action, and the call status callback. It prints the CPU
time of the whole process (so ours' write-behind thread is included: it waits for the last
batch) per webhook, with the garbage collector settled after the warm-up as a gunicorn worker
settles it (the ceiling's too, so that both are measured as they are served).

On a noisy machine CPU time moves by ±10 % from run to run. `--instructions` runs this twice
under valgrind's callgrind (with `--calls` and twice as many calls) and prints the difference
in instructions per webhook, thread by thread: the request path's (the main thread's), with
the collector off while it is counted, is the same from run to run to within a fraction of a
percent, the way to tell whether a change to it made it cheaper. The writer's is printed
apart: its batches gather for a time, so under valgrind they are smaller than at full speed
and its count varies with the machine's load.
"""

from __future__ import annotations

import gc
import io
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from config import PROJECT_DIR, settle_garbage_collector
from facts import write_path

from .servers import CEILING, DEFAULT_PG, SECRETS, TOKEN, drop_database, fresh_database

WARMUP_CALLS = 50
WEBHOOKS_PER_CALL = 8
HOST = "localhost:5000"


def environ_for(validator: RequestValidator, path: str, query: str, params: dict[str, str]) -> dict:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    body = urlencode(params).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "5000",
        "HTTP_HOST": HOST,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_TWILIO_SIGNATURE": validator.compute_signature(url, params),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "body": body,
    }


def one_call(validator: RequestValidator, topic: str) -> list[dict]:
    """The webhooks of a call that chooses English, `topic` (key 1 in config/line.yaml, which
    asks for a position), supports it and leaves a comment, in the order Twilio sends them."""
    call = {
        "CallSid": "CA" + secrets.token_hex(16),
        "AccountSid": SECRETS["TWILIO_ACCOUNT_SID"],
        "From": f"+1503555{secrets.randbelow(10_000):04d}",
        "To": "+15035550199",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "CallStatus": "in-progress",
    }
    sid = "RE" + secrets.token_hex(16)
    recording = {
        **call,
        "RecordingSid": sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{call['AccountSid']}/Recordings/{sid}",
        "RecordingDuration": "12",
    }
    at = f"s=4&l=en&t={topic}&p=support"
    steps = [
        ("/twilio/voice", "", {**call, "CallStatus": "ringing"}),
        ("/twilio/language", "s=1", {**call, "Digits": "1"}),
        ("/twilio/topic", "s=2&l=en", {**call, "Digits": "1"}),
        ("/twilio/stance", f"s=3&l=en&t={topic}", {**call, "Digits": "1"}),
        ("/twilio/recording-status", "", {**recording, "RecordingStatus": "completed"}),
        (
            "/twilio/transcription",
            "",
            {**recording, "TranscriptionSid": "TR" + secrets.token_hex(16), "TranscriptionStatus": "completed"}
            | {"TranscriptionText": "Please keep the library open on Sundays."},
        ),
        ("/twilio/recorded", at, {**recording, "Digits": "#"}),
        ("/twilio/status", "", {**call, "CallStatus": "completed", "CallDuration": "40"}),
    ]
    return [environ_for(validator, path, query, params) for path, query, params in steps]


def answer(app, environ: dict) -> None:
    environ = {**environ, "wsgi.input": io.BytesIO(environ["body"])}
    status = []
    reply = app(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        body = b"".join(reply)
    finally:
        getattr(reply, "close", lambda: None)()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{environ['PATH_INFO']} answered {status[0]}: {body[:300]!r}")


def build(server: str, workdir: Path, kind: str):
    """The WSGI app of `server`, with its settings in the environment as a deploy gives them."""
    os.environ.update(SECRETS)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if server == "ceiling":
        from bench.ceiling import create_app

        return create_app(), None
    db = fresh_database(kind, workdir, os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG), name="_inprocess")
    os.environ.update(db.env())
    from app import create_app

    return create_app(), db


def measure(server: str, calls: int, kind: str, prepared: int = 0, collector: bool = True) -> float:
    """CPU seconds of this process per webhook, over `calls` whole calls after a warm-up
    (`prepared`: make the webhooks of that many calls, so that two runs can spend the same
    on making them). After the warm-up the garbage collector is settled as a gunicorn worker
    settles it once it has loaded the app (`config.settle_garbage_collector`); `collector`
    False then turns it off, for counting instructions: when a collection runs depends on the
    writer thread's allocations too, and moved the request path's count by tens of thousands
    of instructions a webhook from run to run."""

    workdir = Path(tempfile.mkdtemp(prefix="commentline-inprocess-"))
    app, db = build(server, workdir, kind)
    validator = RequestValidator(TOKEN)
    played = [one_call(validator, "budget") for _ in range(WARMUP_CALLS + max(calls, prepared))]
    try:
        for environs in played[:WARMUP_CALLS]:
            for environ in environs:
                answer(app, environ)
        if db:
            write_path(app).flush()
        settle_garbage_collector()
        if not collector:
            gc.disable()
        started = time.process_time()
        for environs in played[WARMUP_CALLS : WARMUP_CALLS + calls]:
            for environ in environs:
                answer(app, environ)
        if db and not write_path(app).flush():
            raise RuntimeError("the write-behind writer did not finish")
        return (time.process_time() - started) / (calls * WEBHOOKS_PER_CALL)
    finally:
        gc.enable()
        if db:
            drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)


def instructions(server: str, calls: int, kind: str) -> tuple[float, float]:
    """Instructions per webhook under callgrind: two runs, `calls` and twice as many, differenced
    (so that start-up, imports, the warm-up and making the webhooks cancel out). Returns (the
    request path: the main thread; the other threads: ours' write-behind writer). The first is
    the same from run to run; the second is not, since the writer's batches gather for a time,
    and how many webhooks that is depends on how fast valgrind runs."""
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    counted = []
    with tempfile.TemporaryDirectory(prefix="commentline-callgrind-") as folder:
        for n in (calls, 2 * calls):
            out = Path(folder) / f"run-{n}"
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
                + [sys.executable, "-m", "bench", "inprocess", "--server", server, "--db", kind, "--calls", str(n)]
                + ["--prepared", str(2 * calls), "--no-collector"],
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                check=True,
            )
            threads = {}
            for part in Path(folder).glob(f"run-{n}-*"):
                found = re.search(r"^(?:summary|totals): (\d+)", part.read_text(errors="replace"), re.MULTILINE)
                threads[int(part.name.rsplit("-", 1)[1])] = int(found.group(1)) if found else 0
            counted.append((threads.pop(1, 0), sum(threads.values())))
    webhooks = calls * WEBHOOKS_PER_CALL
    return (counted[1][0] - counted[0][0]) / webhooks, (counted[1][1] - counted[0][1]) / webhooks


def main(
    server: str, calls: int, kind: str, count_instructions: bool, prepared: int = 0, collector: bool = True
) -> int:
    if server not in ("ours", "ceiling"):
        raise SystemExit(f"unknown server {server!r}: ours or the ceiling ({CEILING})")
    if count_instructions:
        request_path, others = instructions(server, calls, kind)
        print(
            f"{server} ({kind}): {request_path / 1000:,.0f} thousand instructions per webhook in the request path, "
            f"{others / 1000:,.0f} thousand in other threads (the writer)"
        )
    else:
        per_webhook = measure(server, calls, kind, prepared, collector)
        print(f"{server} ({kind}): {per_webhook * 1e6:,.0f} µs of CPU per webhook, writer included")
    return 0
