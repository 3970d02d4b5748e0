"""`python -m bench writer`: the write-behind writer's cost per webhook, by batch size.

Plays `--calls` whole calls through the line's real webhooks in this process, signed as Twilio
signs them (the same eight webhooks per call as `bench inprocess`), on a line whose database is
away, so that each webhook's facts land in the spool exactly as its journal line would hold
them. Then, for each `--batch` size, it writes those facts into a fresh database with
`facts.writer.write`, in batches of that many webhooks, one transaction each, in one thread
(nothing else running in the process), after a warm-up of a tenth of them. It prints the
writer's CPU per webhook (the thread's, the database driver's work included) and, apart, the
commit's; on PostgreSQL, when its server runs on this machine, also the CPU of the backend
process that served the writer's connection (the same two cores do that work under load).

Under load a web worker's writer takes whatever its threads journalled in the last
`WRITE_BEHIND_GATHER_MS`: at 500 webhooks a second per worker, 250 at 500 ms and 500 at
1,000 ms (the default). A batch costs nearly the same whatever its size, so this is where
the gather time shows. One thread and no HTTP make the figure steadier than the load's,
though still CPU time on a shared machine (±10 %).

`--pages` (SQLite) counts instead what each batch changes on disk: the database pages that
differ after it (each one a frame its commit writes to the write-ahead log, and a checkpoint
copies back), by the table or index they belong to. Nothing is timed then: between batches
the log is copied back, so that the database file alone holds every page.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from twilio.request_validator import RequestValidator

from facts import write_path
from facts.record import loads
from facts.writer import write

from .inprocess import answer, one_call
from .servers import TOKEN, drop_database, fresh_database, proc_cpu_seconds


@dataclass
class WriterCost:
    """CPU seconds per webhook: the writer's thread (the driver's work included), of which
    committing, and PostgreSQL's backend for the connection (None on SQLite, or when the server
    is not on this machine: its process cannot be read)."""

    writing: float
    committing: float
    backend: float | None


def spooled_webhooks(calls: int, kind: str, pg_url: str, workdir: Path) -> list[list]:
    """Each webhook's facts, in the order answered, for `calls` whole calls."""
    from app import create_app

    db = fresh_database(kind, workdir, pg_url, name="_capture")
    try:
        app = create_app({**db.env(), "WRITE_BEHIND": "0", "DB_COOL_OFF_SECONDS": "86400", "LOG_LEVEL": "ERROR"})
        path = write_path(app)
        app.test_client().get("/livez")  # the script is read while the database is here
        with app.app_context():
            from models import db as session_db
            from models.line import line_script

            line_script(app).get(session_db.session)
        path.breaker.trip()  # the database is away: every webhook's facts go to the spool
        validator = RequestValidator(TOKEN)
        for _ in range(calls):
            for environ in one_call(validator, "budget"):
                answer(app, environ)
        webhooks = []
        for spooled in sorted(path.spool.files()):
            webhooks += [loads(raw.decode()) for raw in spooled.read_bytes().split(b"\n") if raw.strip()]
        return webhooks
    finally:
        drop_database(db)


def writer_cost(webhooks: list[list], batch: int, kind: str, pg_url: str, workdir: Path) -> WriterCost:
    """What batches of `batch` webhooks cost, per webhook, written into a fresh database after a
    warm-up of the first tenth."""
    from sqlalchemy import create_engine, text

    db = fresh_database(kind, workdir, pg_url, name="_writer")
    url = db.url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=1, max_overflow=0)  # one connection: one backend to read
    warm, measured = webhooks[: len(webhooks) // 10], webhooks[len(webhooks) // 10 :]
    try:
        for start in range(0, len(warm), batch):
            with engine.begin() as connection:
                write(connection, warm[start : start + batch])
        backend = None
        if kind == "postgresql":
            with engine.connect() as connection:
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            backend = pid if is_local_backend(pid) else None
        backend_before = proc_cpu_seconds(backend) if backend else 0.0
        writing = committing = 0.0
        for start in range(0, len(measured), batch):
            with engine.connect() as connection:
                began = time.thread_time()
                write(connection, measured[start : start + batch])
                written = time.thread_time()
                connection.commit()
                writing += time.thread_time() - began
                committing += time.thread_time() - written
        n = len(measured)
        backend_cpu = (proc_cpu_seconds(backend) - backend_before) / n if backend else None
        return WriterCost(writing / n, committing / n, backend_cpu)
    finally:
        engine.dispose()
        drop_database(db)


SHOWN_BTREES = 12  # `--pages` names the tables and indexes that change most; the rest in one line


@dataclass
class PagesChanged:
    """What batches changed on disk, per batch on average: database pages in all, and by the
    table or index (SQLite's b-tree name) they belong to."""

    pages: float
    by_btree: dict[str, float]
    page_size: int


def page_digests(path: str) -> tuple[dict[int, int], dict[int, str], int]:
    """After copying the write-ahead log back: a checksum of each page of the database file,
    the b-tree each page belongs to (SQLite's `dbstat`), and the page size."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        try:
            owners = dict(connection.execute("SELECT pageno, name FROM dbstat"))
        except sqlite3.OperationalError as exc:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            raise SystemExit(f"--pages needs SQLite's dbstat table, which this Python's SQLite lacks ({exc})") from None
    finally:
        connection.close()
    data = Path(path).read_bytes()
    digests = {n + 1: zlib.crc32(data[n * size : (n + 1) * size]) for n in range(len(data) // size)}
    return digests, owners, size


def pages_changed(webhooks: list[list], batch: int, workdir: Path) -> PagesChanged:
    """SQLite: the pages each batch of `batch` webhooks changes, written into a fresh database
    after a warm-up of the first tenth (so that the tables are not empty)."""
    from sqlalchemy import create_engine

    db = fresh_database("sqlite", workdir, "", name="_pages")
    path = db.url.removeprefix("sqlite:///")
    engine = create_engine(db.url)
    warm, measured = webhooks[: len(webhooks) // 10], webhooks[len(webhooks) // 10 :]
    try:
        for start in range(0, len(warm), batch):
            with engine.begin() as connection:
                write(connection, warm[start : start + batch])
        engine.dispose()  # its connection would keep the log from being emptied
        changed: Counter[str] = Counter()
        batches = 0
        before, _, size = page_digests(path)
        for start in range(0, len(measured), batch):
            with engine.begin() as connection:
                write(connection, measured[start : start + batch])
            engine.dispose()
            after, owners, size = page_digests(path)
            changed.update(owners.get(n, "(free)") for n, digest in after.items() if before.get(n) != digest)
            before, batches = after, batches + 1
        by_btree = {name: count / batches for name, count in changed.most_common()}
        return PagesChanged(sum(changed.values()) / batches, by_btree, size)
    finally:
        engine.dispose()
        drop_database(db)


def is_local_backend(pid: int) -> bool:
    """Whether PostgreSQL's backend process `pid` runs on this machine (its CPU time readable)."""
    try:
        return "postgres" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return False


def main(kind: str, calls: int, batches: list[int], pg_url: str, pages: bool = False) -> int:
    if pages and kind != "sqlite":
        raise SystemExit("--pages counts SQLite's pages: use it with --db sqlite")
    workdir = Path(tempfile.mkdtemp(prefix="commentline-writer-"))
    try:
        webhooks = spooled_webhooks(calls, kind, pg_url, workdir)
        print(f"{kind}: {len(webhooks):,} webhooks of {calls:,} whole calls")
        for batch in batches:
            if pages:
                found = pages_changed(webhooks, batch, workdir)
                print(
                    f"  batches of {batch:>4}: {found.pages:,.0f} pages changed a batch "
                    f"({found.pages * found.page_size / 2**20:.1f} MiB, {found.pages / batch:.2f} a webhook)"
                )
                named = list(found.by_btree.items())
                for name, count in named[:SHOWN_BTREES]:
                    print(f"      {count:8,.0f}  {name}")
                if rest := named[SHOWN_BTREES:]:
                    print(f"      {sum(count for _, count in rest):8,.0f}  the other {len(rest)} tables and indexes")
                continue
            cost = writer_cost(webhooks, batch, kind, pg_url, workdir)
            backend = "" if cost.backend is None else f"; PostgreSQL's backend {cost.backend * 1e6:5.1f}"
            print(
                f"  batches of {batch:>4}: {cost.writing * 1e6:6.1f} µs of the writer's CPU per webhook "
                f"(committing {cost.committing * 1e6:5.1f}{backend})"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
