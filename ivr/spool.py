"""The durable local spool: where a webhook's facts wait while the database is away.

A webhook that cannot write appends its facts as one JSON line to this process's spool file,
flushes and fsyncs it, and only then answers Twilio. A replayer (a thread in each web process,
`flask spool replay`, and the worker) writes the spooled facts with the same idempotent
statements and deletes what it has written. A line replayed twice changes nothing, so a crash
at any point costs at most a repeat, never a loss or a double count.

Files: `<SPOOL_DIR>/<host>-<pid>.jsonl`, appended under an exclusive `flock`. A replayer takes
a file by locking it and renaming it to `*.replaying` (a writer that opened the old name sees
the inode change and reopens), then keeps the lock until it has written and deleted it.
A torn last line (the process died mid-append) was never acknowledged to Twilio, which
retries it; it is skipped. A line the database rejects for a reason other than being
unavailable is moved to `rejected.jsonl` and logged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError

from models.facts import Fact, apply, dumps, loads

log = logging.getLogger(__name__)


def database_unavailable(exc: Exception) -> bool:
    """Whether an error means the database could not be reached or was locked (try later),
    rather than that it refused these facts."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


@dataclass
class ReplayReport:
    written: int = 0
    rejected: int = 0
    torn: int = 0
    stopped: str | None = None  # why replay stopped early (the database is away again)


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.dir / f"{socket.gethostname()}-{os.getpid()}.jsonl"

    def append(self, facts: list[Fact]) -> None:
        """Append one transaction's facts durably: on return they are on disk."""
        line = (dumps(facts) + "\n").encode()
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    try:
                        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                    except FileNotFoundError:
                        same = False
                    if same:  # not taken by a replayer while we waited for the lock
                        os.write(fd, line)
                        os.fsync(fd)
                        return
                finally:
                    os.close(fd)

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(
            p for p in self.dir.iterdir() if p.suffix in (".jsonl", ".replaying") and p.name != "rejected.jsonl"
        )

    def depth(self) -> int:
        """How many transactions wait in the spool."""
        total = 0
        for path in self.files():
            try:
                with path.open("rb") as f:
                    total += sum(1 for _ in f)
            except FileNotFoundError:
                continue
        return total

    def replay(self, session) -> ReplayReport:
        """Write every spooled transaction, one database transaction each."""
        report = ReplayReport()
        for path in self.files():
            if report.stopped:
                break
            self._replay_file(path, session, report)
        return report

    def _claim(self, path: Path) -> tuple[int, Path] | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if path.suffix == ".replaying" else 0))
        except BlockingIOError:
            os.close(fd)
            return None  # another replayer has it
        if path.suffix == ".replaying":
            return fd, path
        claimed = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.replaying")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            os.close(fd)
            return None
        return fd, claimed

    def _replay_file(self, path: Path, session, report: ReplayReport) -> None:
        claimed = self._claim(path)
        if claimed is None:
            return
        fd, path = claimed
        try:
            lines = path.read_bytes().split(b"\n")
            for number, raw in enumerate(lines):
                if not raw.strip():
                    continue
                try:
                    facts = loads(raw.decode())
                except ValueError:
                    if number == len(lines) - 1:
                        report.torn += 1  # died mid-append: never acknowledged
                        continue
                    self._reject(raw, "unreadable")
                    report.rejected += 1
                    continue
                try:
                    apply(session, facts)
                    session.commit()
                    report.written += 1
                except Exception as exc:  # noqa: BLE001 - each line's fate is decided here
                    session.rollback()
                    if database_unavailable(exc):
                        report.stopped = f"{type(exc).__name__}: the database is unavailable"
                        return  # keep the file; what was written will be rewritten harmlessly
                    log.exception("spool: the database rejected a spooled transaction; kept in rejected.jsonl")
                    self._reject(raw, type(exc).__name__)
                    report.rejected += 1
            path.unlink()
        finally:
            os.close(fd)

    def _reject(self, raw: bytes, why: str) -> None:
        with (self.dir / "rejected.jsonl").open("ab") as f:
            f.write(raw.rstrip(b"\n") + f"  # {why}\n".encode())


class Breaker:
    """After the database fails, skip it for `cool_off` seconds and spool straight away, so
    that callers are not kept waiting on connection time-outs one request after another."""

    def __init__(self, cool_off: float = 2.0) -> None:
        self.cool_off = cool_off
        self._open_until = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self) -> None:
        self._open_until = time.monotonic() + self.cool_off

    def reset(self) -> None:
        self._open_until = 0.0


class Replayer:
    """A daemon thread in a web process that empties the spool once the database is back."""

    def __init__(self, app, spool: Spool, breaker: Breaker, every: float = 2.0) -> None:
        self.app, self.spool, self.breaker, self.every = app, spool, breaker, every
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._last_look = 0.0

    def look(self) -> None:
        """Cheap, time-gated check from the request path: start the thread if there is work."""
        now = time.monotonic()
        if now - self._last_look < 5 or (self._thread and self._thread.is_alive()):
            return
        self._last_look = now
        if self.spool.files():
            self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._thread and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="spool-replayer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from models import db

        while self.spool.files():
            time.sleep(self.every)
            if not self.breaker.closed():
                continue
            with self.app.app_context():
                try:
                    report = self.spool.replay(db.session)
                finally:
                    db.session.remove()
            if report.written or report.rejected:
                log.info("spool: wrote %d spooled transaction(s), rejected %d", report.written, report.rejected)
            if report.stopped:
                self.breaker.trip()
