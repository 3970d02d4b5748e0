"""The durable local spool: where a webhook's facts wait while the database is away.

With write-behind (facts/journal.py, the default) every webhook's facts first go to its
process's journal, `<host>-<pid>-<n>.journal`, held under an exclusive `flock` for as long as
the process lives; a batch the database does not take is renamed to a spool file, and the
journal of a process that died (its lock is free) is replayed like one.

Without it, a webhook that cannot write appends its facts as one JSON line to this process's spool file,
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
import weakref
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError

from .identity import DatabaseStamp, stamp_of
from .record import Fact, line_of, loads
from .threads import start_named
from .writer import apply

log = logging.getLogger(__name__)
REPLAY_BATCH = 200  # spooled transactions written per database transaction


def is_locked(path: Path) -> bool:
    """Whether a live process holds the file's lock (a write-behind journal in use)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # gone: nothing to take
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


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
    set_aside: int = 0  # files written for another database


class Spool:
    """The spool folder of one database: its files carry the database's stamp
    (facts/identity.py), and only those are replayed."""

    def __init__(self, directory: str | Path, stamp: DatabaseStamp) -> None:
        self.dir = Path(directory)
        self.stamp = stamp
        self._lock = threading.Lock()

    @property
    def aside(self) -> Path:
        """Where files written for another database are set aside."""
        return self.dir / "other-databases"

    @property
    def path(self) -> Path:
        return self.dir / f"{self.stamp.current}~{socket.gethostname()}-{os.getpid()}.jsonl"

    def append(self, facts: list[Fact]) -> None:
        """Append one transaction's facts durably: on return they are on disk."""
        self.append_lines([line_of(facts)])

    def append_lines(self, lines: list[bytes]) -> None:
        """Append transactions already written as lines, with one fsync for them all."""
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
                        os.write(fd, b"".join(lines))
                        os.fsync(fd)
                        return
                finally:
                    os.close(fd)

    def waiting(self) -> list[Path]:
        """Every file waiting to be replayed, for this database or not: spooled facts,
        replays that stopped, and the write-behind journals of processes that died (a live
        one holds its journal's lock)."""
        if not self.dir.is_dir():
            return []
        return sorted(
            p
            for p in self.dir.iterdir()
            if (p.suffix in (".jsonl", ".replaying") and p.name != "rejected.jsonl")
            or (p.suffix == ".journal" and not is_locked(p))
        )

    def files(self) -> list[Path]:
        """The files waiting to be replayed into this database."""
        return [p for p in self.waiting() if self.stamp.owns(p.name)]

    def foreign(self) -> list[Path]:
        """Files written for another database (or for none known): waiting here, or set aside."""
        here = [p for p in self.waiting() if not self.stamp.owns(p.name)]
        return here + (sorted(self.aside.iterdir()) if self.aside.is_dir() else [])

    def set_aside_foreign(self) -> list[Path]:
        """Move the files written for another database out of the replay's way; return them."""
        moved = []
        for path in self.waiting():
            if self.stamp.owns(path.name):
                continue
            self.aside.mkdir(parents=True, exist_ok=True)
            target = self.aside / path.name
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue
            log.warning(
                "spool: %s was written for another database (stamp %s, this one %s); set aside in %s",
                path.name,
                stamp_of(path.name),
                self.stamp.current,
                self.aside,
            )
            moved.append(target)
        return moved

    def depth(self) -> int:
        """How many transactions wait in the spool (whole lines: a torn last line is none)."""
        total = 0
        for path in self.files():
            try:
                with path.open("rb") as f:
                    total += sum(chunk.count(b"\n") for chunk in iter(lambda f=f: f.read(1 << 20), b""))
            except FileNotFoundError:
                continue
        return total

    def replay(self, session) -> ReplayReport:
        """Write every transaction spooled for this database, `REPLAY_BATCH` to a database
        transaction; set aside the files written for another."""
        report = ReplayReport()
        try:
            self.stamp.learn(session.connection())
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            if not database_unavailable(exc):
                raise
            report.stopped = f"{type(exc).__name__}: the database is unavailable"
            return report
        self._sweep_unfinished_journals()
        report.set_aside = len(self.set_aside_foreign())
        for path in self.files():
            if report.stopped:
                break
            self._replay_file(path, session, report)
        return report

    def replay_into_this_database(self, path: Path, session) -> ReplayReport:
        """Write one file's transactions into this database, whatever it was written for (an
        operator's decision: `flask spool replay --into-this-database FILE`)."""
        report = ReplayReport()
        self._replay_file(Path(path), session, report)
        return report

    def _sweep_unfinished_journals(self, older_than: float = 60.0) -> None:
        """Delete journals a process died while making (`*.making`: created, not yet locked and
        named, so empty), once no process holds them and they are a minute old."""
        if not self.dir.is_dir():
            return
        for path in self.dir.glob("*.making"):
            try:
                stale = time.time() - path.stat().st_mtime > older_than
            except FileNotFoundError:
                continue
            if stale and not is_locked(path):
                path.unlink(missing_ok=True)

    def _claim(self, path: Path) -> tuple[int, Path] | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            # A spool file is only appended to for a moment: wait for that. A journal or a replay
            # held by a live process is that process's to finish.
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if path.suffix == ".jsonl" else fcntl.LOCK_NB))
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
            try:
                # A journal is made at its full size: the zeros after its last line are not lines.
                lines = path.read_bytes().rstrip(b"\0").split(b"\n")
            except FileNotFoundError:
                return  # another replayer wrote and deleted it just before we locked it
            readable: list[tuple[bytes, list[Fact]]] = []
            for number, raw in enumerate(lines):
                if not raw.strip():
                    continue
                try:
                    readable.append((raw, loads(raw.decode())))
                except ValueError:
                    if number == len(lines) - 1:
                        report.torn += 1  # died mid-append: never acknowledged
                        continue
                    self._reject(raw, "unreadable")
                    report.rejected += 1
            for start in range(0, len(readable), REPLAY_BATCH):
                if not self._write(session, readable[start : start + REPLAY_BATCH], report):
                    return  # keep the file; what was written will be rewritten harmlessly
            path.unlink()
        finally:
            os.close(fd)

    def _write(self, session, lines: list[tuple[bytes, list[Fact]]], report: ReplayReport) -> bool:
        """Write the lines in one transaction; if the database rejects that, line by line,
        setting aside the lines it rejects. False when the database is unavailable."""
        try:
            apply(session, *(facts for _, facts in lines))
            session.commit()
            report.written += len(lines)
            return True
        except Exception as exc:  # noqa: BLE001 - each line's fate is decided here
            session.rollback()
            if database_unavailable(exc):
                report.stopped = f"{type(exc).__name__}: the database is unavailable"
                return False
            if len(lines) > 1:
                return all(self._write(session, [line], report) for line in lines)
            log.exception("spool: the database rejected a spooled transaction; kept in rejected.jsonl")
            self._reject(lines[0][0], type(exc).__name__)
            report.rejected += 1
            return True

    def _reject(self, raw: bytes, why: str) -> None:
        with (self.dir / "rejected.jsonl").open("ab") as f:
            f.write(raw.rstrip(b"\n") + f"  # {why}\n".encode())


class WriterTurn:
    """SQLite's one writer at a time, taken in turn by the threads and processes of this
    machine: a thread lock within the process, then an `flock` on a file beside the spool
    across processes. The kernel hands the `flock` to a waiter the moment it is released,
    where SQLite's own busy handler would have the waiter sleep and poll (up to 100 ms a
    time), which is what a caller waiting for a reference number would hear."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> WriterTurn:
        self._thread_lock.acquire()
        try:
            if self._pid != os.getpid():  # first use in this process (a fork opens its own)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


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

    running: weakref.WeakSet[Replayer] = weakref.WeakSet()

    def __init__(self, app, spool: Spool, breaker: Breaker, every: float = 2.0) -> None:
        self.app, self.spool, self.breaker, self.every = app, spool, breaker, every
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
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
            self._stopping.clear()
            self._thread = start_named(self._run, "spool-replayer")
            Replayer.running.add(self)

    def stop(self) -> None:
        """Stop the thread (after the transaction it is writing, if any)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @classmethod
    def stop_all(cls) -> None:
        for replayer in list(cls.running):
            replayer.stop()

    def _run(self) -> None:
        from models import db

        while self.spool.files() and not self._stopping.wait(self.every):
            if not self.breaker.closed():
                continue
            with self.app.app_context():
                try:
                    report = self.spool.replay(db.session)
                except Exception:  # noqa: BLE001 - try again at the next turn; the files stay
                    log.exception("spool: the replay failed; trying again")
                    continue
                finally:
                    db.session.remove()
            if report.written or report.rejected:
                log.info("spool: wrote %d spooled transaction(s), rejected %d", report.written, report.rejected)
            if report.stopped:
                self.breaker.trip()
