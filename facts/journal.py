"""Write-behind: a webhook's facts reach the database in batches, after its reply.

A webhook hands its facts to `WriteBehind.submit`, which appends them as one line to its
thread's journal file and queues them; the reply goes out at once. A writer thread lets a
batch gather for `WRITE_BEHIND_GATHER_MS`, takes everything queued and writes it in one
transaction (facts/writer.py: a fixed number of statements per batch, whatever its size).
A journal file is deleted once every line in it is in the database and it is two seconds old
(its thread then starts a new one), so that a journal replayed after a crash repeats little
that was already written. Journals are named for the host, the process and a random part,
made under a name no replayer takes and renamed once locked.

Why this is safe:
- The journal line is written (to the operating system) before the reply, so a process that
  is killed loses nothing it acknowledged: its journals keep their lines, their `flock`s die
  with it, and any replayer (facts/spool.py: each web process, `flask spool replay`, the worker)
  writes them. With `JOURNAL_FSYNC=1` each line is also fsynced before the reply, so that a
  power cut loses nothing either; whenever the database is known to be away, lines are fsynced
  all the same, since they may wait there for long.
- A batch the database does not take (down, locked too long, or refusing a fact) goes to the
  spool, fsynced; the replayer writes it when it can, setting aside only a line the database
  refuses.
- Every write is idempotent, so a line written twice (a replayer taking a dead process's
  journal, part of which that process had written) changes nothing the second time; and
  what staff changed since (a transcript removed) is not undone by it.

Why per thread: the request threads share no lock on their way to the reply (a shared one
makes them queue behind whichever holds it while the writer has Python's GIL); the queue is a
`deque`, whose appends need none. A journal's own lock is taken by the writer only to delete
it, so that its thread never appends to a file being deleted.

What it costs: the counts lag the calls by one batch (a second; seconds after a
process was killed, until a replayer takes its journals).
"""

from __future__ import annotations

import atexit
import collections
import fcntl
import logging
import mmap
import os
import socket
import threading
import time
import uuid
import weakref
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from . import WritePath
from .record import Fact, line_of
from .spool import Breaker, Replayer, Spool, database_unavailable
from .threads import This, start_named
from .writer import apply, take_numbers

log = logging.getLogger(__name__)
# A thread starts a new journal file at its next webhook once its current one is this old or
# this long; the writer deletes the old one as soon as its last line is written. So a journal
# replayed after a crash repeats at most a few seconds of facts already written.
SEGMENT_SECONDS = 2.0
SEGMENT_LINES = 5000
SEGMENT_BYTES = 1 << 20  # a line that would not fit starts a new journal


class Segment:
    """One request thread's journal file, locked for as long as its process lives. Only its
    thread appends (`lines`); only the writer counts what is done with them (`accounted`).

    The file is made at its full size (`SEGMENT_BYTES`, its blocks allocated, so that a full
    disk refuses a new journal rather than a line) and mapped into memory: appending a line is
    a copy into the page cache, which the kernel writes back to the file whether or not this
    process lives on, as it would a `write()`'s. A `write()` per webhook cost 15-25 µs of
    kernel time in a busy worker; the copy costs a few. After the last line the file holds
    zeros, which the spool's replay drops (facts/spool.py)."""

    def __init__(self, directory: Path, stamp: str, durable: bool = False) -> None:
        self.pid = os.getpid()
        # A name no other process has used, made and locked under a name no replayer takes,
        # then renamed: a replayer never sees it unlocked, and nobody appends to an old one.
        # It starts with the stamp of the database it is written for (facts/identity.py).
        stem = f"{stamp}~{socket.gethostname()}-{self.pid}-{uuid.uuid4().hex[:12]}"
        making = directory / f"{stem}.making"
        self.fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.fd, 0, SEGMENT_BYTES)
            else:  # macOS, for development: a sparse file, its blocks not reserved
                os.ftruncate(self.fd, SEGMENT_BYTES)
            self.map = mmap.mmap(self.fd, SEGMENT_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(self.fd)
            making.unlink(missing_ok=True)
            raise
        self.path = directory / f"{stem}.journal"
        os.rename(making, self.path)
        if durable:  # the file's name must survive a power cut too, not only its lines
            folder = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self.started = time.monotonic()
        self.lines = self.accounted = self.size = 0
        self.lock = threading.Lock()  # its thread appending, or the writer deleting it
        self.gone = False  # deleted by the writer: its thread starts a new one

    def old(self) -> bool:
        return self.lines >= SEGMENT_LINES or time.monotonic() - self.started >= SEGMENT_SECONDS

    def fits(self, line: bytes) -> bool:
        return self.size + len(line) <= SEGMENT_BYTES

    def append(self, line: bytes, sync: bool) -> None:
        end = self.size + len(line)
        self.map[self.size : end] = line
        if sync:
            os.fsync(self.fd)  # the mapped pages are the file's page cache: fsync writes them
        self.size = end
        self.lines += 1

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self.map.close()
        os.close(self.fd)


class WriteBehind(WritePath):
    """The write path that journals a webhook's facts and writes them in batches."""

    running: weakref.WeakSet[WriteBehind] = weakref.WeakSet()

    def __init__(
        self,
        app,
        spool: Spool,
        breaker: Breaker,
        replayer: Replayer,
        turn,
        *,
        fsync: bool = False,
        gather: float = 0.05,
    ) -> None:
        super().__init__(app, spool, breaker, replayer, turn)
        self.fsync, self.gather = fsync, gather
        self._queue: collections.deque[tuple[Segment, bytes, list[Fact]]] = collections.deque()
        self._wake = threading.Event()
        self._local = threading.local()
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        self._busy = self._stopping = False
        self._open: dict[Segment, None] = {}  # the writer's: journals it has taken lines from
        self._thread: threading.Thread | None = None

    def take_number(self, recording_sid: str) -> int | None:
        """This process's number for the recording, from a block taken in advance (the writer
        takes the next when this one runs low; this thread, only when it ran out)."""
        number = self.numbers.for_recording(recording_sid, self._take_block)
        if self.numbers.running_low() and not self._wake.is_set():
            self._wake.set()
        return number

    def _take_block(self, count: int) -> list[int] | None:
        return self.write_now(lambda c: take_numbers(c, count), where="comment numbers")

    def _take_numbers_ahead(self) -> None:
        """The writer's: take this process's next block of comment numbers when it runs low,
        in a transaction of its own (so a request thread seldom waits for one)."""
        if self._stopping:
            return
        size = self.numbers.next_block()  # 0 unless running low
        if not size:
            return
        with self.app.app_context():
            numbers = self._take_block(size)
        if numbers:
            self.numbers.add(numbers)

    def submit(self, facts: list[Fact]) -> None:
        """Journal the facts (on return they survive this process) and queue them."""
        if self._pid != This.pid:
            self._start()
        if self._stopping:  # the process is ending: straight to the spool
            self.spool.append(facts)
            return
        line = line_of(facts)
        if len(line) > SEGMENT_BYTES:  # never seen: Twilio's parameters are far shorter
            self.spool.append(facts)
            return
        sync = self.fsync or not self.breaker.closed()
        while True:
            segment = getattr(self._local, "segment", None)
            try:
                if segment is None or segment.pid != This.pid or segment.old() or not segment.fits(line):
                    # The old one is the writer's to delete.
                    stamp = self.spool.stamp.current
                    segment = self._local.segment = Segment(self.spool.dir, stamp, durable=self.fsync)
                with segment.lock:  # taken by the writer only to delete it, once all of it is written
                    if segment.gone:
                        self._local.segment = None
                        continue
                    segment.append(line, sync)
            except OSError:  # the disk refused the journal: the spool (fsynced), or an error
                log.exception("write-behind: the journal could not be written; spooling")
                self.spool.append(facts)
                return
            break
        self._queue.append((segment, line, facts))
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until what was submitted before this call has been written (or spooled)."""
        deadline = time.monotonic() + timeout
        while self._queue or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        """Write what is queued and stop the writer (at the process's exit)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=30)

    @classmethod
    def stop_all(cls) -> None:
        for behind in list(cls.running):
            behind.close()

    def _start(self) -> None:
        """First use in this process (a fork gets its own journals and writer)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue.clear()
            self._open, self._busy, self._stopping = {}, False, False
            self.spool.dir.mkdir(parents=True, exist_ok=True)
            self._thread = start_named(self._run, "write-behind")
            self._pid = os.getpid()
            WriteBehind.running.add(self)
            atexit.register(self.close)

    def _run(self) -> None:
        while not (self._stopping and not self._queue):
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._queue and not self._stopping:
                time.sleep(self.gather)  # let more webhooks join the batch
            self._busy = True
            try:
                batch = []
                while self._queue:
                    batch.append(self._queue.popleft())
                if batch:
                    self._write(batch)
                self._release()
                self._take_numbers_ahead()
            except Exception:  # noqa: BLE001 - a writer that died would leave every later line unwritten
                log.exception("write-behind: the writer failed; its lines stay in the journals")
            finally:
                self._busy = False
        self._release(final=True)

    def _write(self, batch: list[tuple[Segment, bytes, list[Fact]]]) -> None:
        from models import db

        written = False
        if self.breaker.closed():
            try:
                with self.app.app_context(), self.turn, db.engine.begin() as connection:
                    apply(connection, *(facts for _, _, facts in batch))
                    self.spool.stamp.learn(connection)
                written = True
            except SQLAlchemyError as exc:
                if database_unavailable(exc) and "database is locked" not in str(exc):
                    self.breaker.trip()
                log.warning("write-behind: %d webhook(s) not written (%s); spooled", len(batch), type(exc).__name__)
            except Exception:  # noqa: BLE001 - the thread must live on; the lines are kept
                log.exception("write-behind: %d webhook(s) not written; spooled", len(batch))
        if not written:
            try:
                self.spool.append_lines([line for _, line, _ in batch])
            except OSError:  # the journals keep them: replayed when this process ends
                log.exception("write-behind: %d webhook(s) could not be spooled either", len(batch))
                return
            self.replayer.start()
        for segment, _, _ in batch:
            segment.accounted += 1
            self._open[segment] = None

    def _release(self, final: bool = False) -> None:
        """Delete the journals whose every line is written and which their thread has left or
        which are old enough to leave (at the end, all that are written)."""
        for segment in list(self._open):
            if segment.accounted < segment.lines or not (final or segment.old()):
                continue
            with segment.lock:
                if segment.accounted < segment.lines:
                    continue  # its thread appended meanwhile
                segment.gone = True
            try:
                segment.delete()
            except OSError:
                log.exception("write-behind: could not delete the journal %s", segment.path)
            del self._open[segment]


__all__ = ["WriteBehind", "Segment"]
