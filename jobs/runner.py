"""The worker: claims due jobs from the `jobs` table one at a time, runs them while a
heartbeat keeps their lease, and records each outcome.

A job body is a function of (app, job) registered with `@job(kind)`. It must land its effects
once however often it runs: it checks what is already done, writes to deterministic storage
keys, and updates rows by their Twilio key. It raises RetryLater for a failure worth another
try, GiveUp for one that no retry can fix; any other exception is retried too. After the last
try the job ends `failed`, and the kind's `give_up` hook records why on the comment.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from facts import write_path
from models import db
from models.jobs import Claimed, claim, enqueue, fail, finish, has_due, renew_lease

log = logging.getLogger("jobs")
runs = logging.getLogger("jobs.runs")  # one line as each try starts and ends: the run log


class RetryLater(Exception):
    """This try failed but a later one may not; `after` overrides the backoff (seconds)."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class GiveUp(Exception):
    """No retry can help: the job ends failed now, with this reason."""


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[Flask, Claimed], object]
    give_up: Callable[[Flask, Claimed, str], None] | None = None


KINDS: dict[str, Kind] = {}


def job(name: str, give_up: Callable[[Flask, Claimed, str], None] | None = None):
    """Register the decorated function as the body of jobs of kind `name`."""

    def register(run):
        KINDS[name] = Kind(name, run, give_up)
        return run

    return register


def queue(session, config, kind: str, key: str, **kwargs) -> None:
    """Queue `kind` work on `key` with the configured number of tries (see models.jobs.enqueue)."""
    if kind not in KINDS:
        raise ValueError(f"no job kind {kind!r}")
    enqueue(session, kind, key, max_attempts=config["JOB_MAX_ATTEMPTS"], **kwargs)


def backoff(config, attempt: int) -> float:
    """Seconds before try `attempt + 1`: doubling from JOB_BACKOFF_SECONDS, capped, ±20 %."""
    base = config["JOB_BACKOFF_SECONDS"] * 2 ** (attempt - 1)
    return min(base, config["JOB_BACKOFF_MAX_SECONDS"]) * random.uniform(0.8, 1.2)


class Heartbeat:
    """Renews a running job's lease every third of it, on its own connection, until stopped."""

    def __init__(self, engine, job_id: int, worker: str, lease: float) -> None:
        self.engine, self.job_id, self.worker, self.lease = engine, job_id, worker, lease
        self.stopped = threading.Event()
        self.lost = False
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.lease / 3):
            try:
                with self.engine.begin() as conn:
                    if not renew_lease(conn, self.job_id, self.worker, self.lease):
                        self.lost = True
                        log.warning("job %s: lease lost; another worker may run it", self.job_id)
                        return
            except SQLAlchemyError:
                log.exception("job %s: could not renew the lease", self.job_id)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


SPOOL_LOOK_SECONDS = 2


class Worker:
    """One worker: one job at a time. `kinds` limits it to some kinds of job."""

    def __init__(self, app: Flask, kinds: tuple[str, ...] | None = None, name: str | None = None) -> None:
        self.app, self.kinds = app, kinds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.last_sweep = -float("inf")

    def stop(self, *_args) -> None:
        log.info("worker %s: stopping after the current job", self.name)
        self.stopping.set()

    def run(
        self,
        *,
        burst: bool = False,
        on_finished: Callable[[Claimed, str], None] | None = None,
        sweep: Callable[[], int] | None = None,
    ) -> int:
        """Work until stopped (SIGTERM/SIGINT finish the current job first), or with `burst`
        until no job is due. `sweep` is called every WORKER_SWEEP_SECONDS. Returns the number
        of tries run."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._loop(burst, on_finished, sweep)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, burst: bool, on_finished, sweep) -> int:
        cfg, done = self.app.config, 0
        log.info("worker %s: started (kinds: %s)", self.name, ", ".join(self.kinds or ("all",)))
        spool, last_spool_look = write_path(self.app).spool, -float("inf")
        with self.app.app_context():
            while not self.stopping.is_set():
                if sweep and self._sweep_due():
                    self._guard(sweep)
                if spool is not None and time.monotonic() - last_spool_look >= SPOOL_LOOK_SECONDS:
                    last_spool_look = time.monotonic()
                    if spool.files():  # facts webhooks on this machine kept while the database was away
                        self._guard(lambda: spool.replay(db.session))
                claimed = self._guard(self.claim_next)
                if claimed is None:
                    if burst:
                        break
                    self.stopping.wait(cfg["WORKER_POLL_SECONDS"])
                    continue
                outcome = self._guard(lambda job=claimed: self.run_one(job)) or "unrecorded"
                done += 1
                if on_finished:
                    on_finished(claimed, outcome)
        log.info("worker %s: stopped after %d tries", self.name, done)
        return done

    def _sweep_due(self) -> bool:
        every = self.app.config["WORKER_SWEEP_SECONDS"]
        if not every or time.monotonic() - self.last_sweep < every:
            return False
        self.last_sweep = time.monotonic()
        return True

    def _guard(self, step):
        """Run a queue step; a database failure is logged and the loop goes on after a pause."""
        try:
            return step()
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("worker %s: database error", self.name)
            self.stopping.wait(self.app.config["WORKER_POLL_SECONDS"] or 1)
            return None

    def claim_next(self) -> Claimed | None:
        session = db.session
        try:
            if not has_due(session, self.kinds):
                return None
            claimed = claim(session, self.name, self.app.config["JOB_LEASE_SECONDS"], self.kinds)
            session.commit()
            return claimed
        finally:
            session.rollback()

    def run_one(self, claimed: Claimed) -> str:
        """Run one try of a claimed job and record its outcome: done, retry or failed."""
        kind = KINDS.get(claimed.kind)
        started = time.time()
        self._log_run("start", claimed, started)
        error, retry_in = None, None
        with Heartbeat(db.engine, claimed.id, self.name, self.app.config["JOB_LEASE_SECONDS"]):
            try:
                if kind is None:
                    raise GiveUp(f"no job kind {claimed.kind!r} in this worker")
                kind.run(self.app, claimed)
                db.session.commit()
            except GiveUp as exc:
                error = str(exc)
            except RetryLater as exc:
                error = str(exc)
                retry_in = exc.after if exc.after is not None else backoff(self.app.config, claimed.attempt)
            except Exception as exc:  # a bug or an outage: log it in full, and try again later
                log.exception("job %s (%s %s) raised", claimed.id, claimed.kind, claimed.key)
                error = f"{type(exc).__name__}: {exc}"
                retry_in = backoff(self.app.config, claimed.attempt)
            finally:
                db.session.rollback()
        outcome = self._record(claimed, kind, error, retry_in)
        finished = time.time()
        self._log_run(
            "end",
            claimed,
            finished,
            f" outcome={outcome} seconds={finished - started:.3f}" + (f" error={error}" if error else ""),
        )
        db.session.remove()
        return outcome

    def _log_run(self, event: str, claimed: Claimed, at: float, extra: str = "") -> None:
        """One line of the run log (`jobs.runs`), as each try starts and ends."""
        runs.info(
            "run %s job=%s kind=%s key=%s try=%d/%d worker=%s at=%.6f%s",
            event,
            claimed.id,
            claimed.kind,
            claimed.key,
            claimed.attempt,
            claimed.max_attempts,
            self.name,
            at,
            extra,
        )

    def _record(self, claimed: Claimed, kind: Kind | None, error: str | None, retry_in: float | None) -> str:
        """Write a try's outcome, unless this worker lost the job's lease meanwhile ("lost")."""
        session = db.session
        if error is None:
            held = finish(session, claimed.id, self.name)
        elif retry_in is not None and not claimed.last_try:
            held = fail(session, claimed.id, self.name, error, retry_in)
        else:
            held = fail(session, claimed.id, self.name, error, None)
        session.commit()
        if not held:
            return "lost"
        if error is None:
            return "done"
        if retry_in is not None and not claimed.last_try:
            return f"retry in {retry_in:.1f}s"
        if kind and kind.give_up:
            try:
                kind.give_up(self.app, claimed, error)
                session.commit()
            except Exception:
                session.rollback()
                log.exception("job %s: could not record why it failed", claimed.id)
        return "failed"
