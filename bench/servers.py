"""The benchmark's own databases and servers: made, migrated, served and measured.

The line is prepared by its Procfile's release step (`flask db upgrade`, `flask line load`)
and served by its `web:` command (`gunicorn --config config/gunicorn.py "app:create_app()"`),
with the environment a deploy gives it. The ceiling is served by the same command and config.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from config import PROJECT_DIR

TOKEN = "bench-auth-token-0123456789abcdef"
SECRETS = {
    "APP_ENV": "production",
    "SECRET_KEY": "bench-secret-key",
    "TWILIO_ACCOUNT_SID": "AC" + "b" * 32,
    "TWILIO_AUTH_TOKEN": TOKEN,
}
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# The servers and commands the benchmark starts read no `.flaskenv` or `.env` kept in this
# folder: the figures are the line's defaults, with the settings the benchmark gives.
NO_DOTENV = {"FLASK_SKIP_DOTENV": "1"}
OURS = "app:create_app()"
CEILING = "bench.ceiling:create_app()"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/commentline_bench"


@dataclass
class Database:
    kind: str  # sqlite | postgresql
    url: str
    instance: Path

    def env(self) -> dict[str, str]:
        return {**SECRETS, "DATABASE_URL": self.url, "INSTANCE_DIR": str(self.instance)}


def flask(db: Database, *args: str, timeout: float = 300, stdin: str | None = None) -> str:
    """Run `flask --app app ...` as the release step does, with `stdin` as its standard input
    if given; return its stdout. Raises RuntimeError when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **db.env(), **NO_DOTENV},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def fresh_database(kind: str, workdir: Path, pg_url: str = DEFAULT_PG, name: str = "") -> Database:
    """A new, empty database of `kind` (dropped first if it exists), migrated, with the line's
    script loaded; returns it. PostgreSQL: the database named in `pg_url` (plus `name`)."""
    instance = workdir / f"instance-{kind}{name}"
    shutil.rmtree(instance, ignore_errors=True)
    instance.mkdir(parents=True)
    if kind == "sqlite":
        db = Database(kind, f"sqlite:///{instance / 'bench.db'}", instance)
    elif kind == "postgresql":
        server, _, dbname = pg_url.rpartition("/")
        dbname += name
        with psycopg.connect(server + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        db = Database(kind, f"{server}/{dbname}", instance)
    else:
        raise ValueError(f"unknown database {kind!r}: sqlite or postgresql")
    flask(db, "db", "upgrade")
    flask(db, "line", "load")
    return db


def drop_database(db: Database) -> None:
    if db.kind == "postgresql":
        server, _, dbname = db.url.rpartition("/")
        with psycopg.connect(server + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    shutil.rmtree(db.instance, ignore_errors=True)


def api_token(db: Database, name: str) -> str:
    return flask(db, "tokens", "create", name).strip().splitlines()[-1]


def staff_account(db: Database, email: str) -> str:
    """Make a staff account for `email` as an operator does (`flask users create
    --password-stdin`); return its password, new each time."""
    password = secrets.token_urlsafe(18)
    flask(db, "users", "create", email, "--name", "Benchmark", "--password-stdin", stdin=password + "\n")
    return password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


# What each thread of a gunicorn worker does, by the name the kernel knows it by: the worker's
# first thread runs gunicorn's loop (accepting connections, waiting on kept-alive ones), the
# line names its own background threads (facts/threads.py), and the rest answer requests.
NAMED_THREADS = {"write-behind": "writer", "spool-replayer": "replayer", "webhook-meter": "meter"}
THREAD_KINDS = ("requests", "loop", "writer", "replayer", "meter", "arbiter", "ended")


def thread_cpu_seconds(pid: int) -> Counter[str]:
    """CPU seconds of a worker process's threads, by kind (`THREAD_KINDS`); "ended": threads
    that are gone, whose time only the process's own figure still holds."""
    used: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended while being read
            continue
        kind = "loop" if task.name == str(pid) else NAMED_THREADS.get(name, "requests")
        used[kind] += (int(fields[11]) + int(fields[12])) / TICKS
    used["ended"] = max(0.0, proc_cpu_seconds(pid) - sum(used.values()))
    return used


def ms_per_webhook_by_thread(used: Mapping[str, float], webhooks: int) -> dict[str, float]:
    """CPU seconds by kind of thread as milliseconds a webhook, for each of `THREAD_KINDS`."""
    return {kind: 1000 * used.get(kind, 0.0) / webhooks for kind in THREAD_KINDS}


def proc_rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / TICKS, total / TICKS


class Server:
    """gunicorn serving `app_spec` as the Procfile's `web:` line does, on 127.0.0.1."""

    def __init__(
        self,
        app_spec: str,
        db: Database,
        log: Path,
        *,
        workers: int = 2,
        threads: int = 4,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **db.env(),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_WORKERS": str(workers),
            "WEB_THREADS": str(threads),
            **NO_DOTENV,
            **(extra_env or {}),
        }
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py", app_spec],
            cwd=PROJECT_DIR,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.base + "/livez", timeout=1) as response:
                    if response.status == 200 and len(self.workers()) >= workers:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn ({app_spec}) did not start; see {log}")

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def cpu_seconds_by_thread(self) -> Counter[str]:
        """The CPU seconds of the master and its workers, by kind of thread (`THREAD_KINDS`; the
        master process is "arbiter"); their sum is the server's."""
        used: Counter[str] = Counter({"arbiter": proc_cpu_seconds(self.process.pid)})
        for worker in self.workers():
            used.update(thread_cpu_seconds(worker))
        return used

    def worker_rss(self) -> dict[int, int]:
        return {pid: proc_rss_bytes(pid) for pid in self.workers()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
