"""Part 2: a million calls in the database, fast, then the counts (and the inbox) timed as the
client sees them; and a web worker's memory after 100,000 calls.

The rows are the ones the line itself writes for such calls: `calls` (keyed hash of the
number, as CALLER_NUMBERS=hash keeps it), `choices` (language, topic, position, with their
steps), `call_topics` (the summary the line writes with each choice), `recordings` and
`transcriptions`. PostgreSQL is filled with COPY, SQLite with executemany in large
transactions (with `synchronous=OFF` for the fill only; the line then serves with its own
settings).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import psycopg

from config import PROJECT_DIR
from models.base import utcnow

from .driver import (
    ACCOUNT_SID,
    Driver,
    LineFacts,
    Record,
    compare_counts,
    expected_counts,
    fetch_counts,
    settled_counts,
)
from .driver import percentile as pct
from .servers import OURS, SECRETS, TOKEN, Database, Server, api_token, flask

CALL_COLUMNS = (
    "call_sid",
    "account_sid",
    "from_number",
    "caller_hash",
    "to_number",
    "from_city",
    "from_state",
    "from_zip",
    "from_country",
    "caller_name",
    "language",
    "started_at",
    "ended_at",
    "duration",
    "status",
)
CHOICE_COLUMNS = ("call_sid", "step", "kind", "topic_id", "language", "stance", "chosen_at")
CALL_TOPIC_COLUMNS = ("call_sid", "topic_id", "stance", "stance_step")
RECORDING_COLUMNS = (
    "id",
    "recording_sid",
    "call_sid",
    "topic_id",
    "stance",
    "language",
    "step",
    "duration",
    "status",
    "finished_by",
    "media_url",
    "created_at",
    "action_at",
    "status_at",
)
TRANSCRIPTION_COLUMNS = (
    "id",
    "recording_sid",
    "source",
    "transcription_sid",
    "language",
    "status",
    "text",
    "created_at",
    "updated_at",
)
DAYS = 30
PEAK_DAY = 3  # days before now: the day of the decision, with 40% of the calls
REQUESTS = 20
BUDGET_SECONDS = 300  # per endpoint; at a million calls on SQLite the counts take 20-70 s each
TEXTS = (
    "I support the new routes, they help me get to work.",
    "Please do not cut the library budget.",
    "We need more affordable housing in this neighborhood.",
    "I oppose this proposal.",
)


def generate(n_calls: int, topic_ids: dict[str, int], now: datetime, seed: int = 7):
    """Yield ("table", row) for `n_calls` calls spread over the last DAYS days."""
    rng = random.Random(seed)
    key = SECRETS["SECRET_KEY"].encode()
    stance_slugs = {"budget", "transit"}
    slugs = list(topic_ids)
    weights = [40, 30, 15, 15][: len(slugs)] + [5] * max(0, len(slugs) - 4)
    peak_start = (now - timedelta(days=PEAK_DAY)).replace(hour=0, minute=0, second=0, microsecond=0)
    span = DAYS * 86400
    recording_id = 0
    for i in range(n_calls):
        if rng.random() < 0.4:
            started = peak_start + timedelta(seconds=rng.random() * 86400)
        else:
            started = now - timedelta(seconds=60 + rng.random() * span)
        sid = f"CA{i:032x}"
        number = f"+1503{rng.randrange(600_000):07d}"
        withheld = rng.random() < 0.05
        digest = None if withheld else hmac.new(key, number.encode(), hashlib.sha256).hexdigest()
        language = "en-US" if rng.random() < 0.7 else "es-US"
        duration = rng.randint(20, 400)
        yield (
            "calls",
            (
                sid,
                ACCOUNT_SID,
                None,
                digest,
                "+15035550199",
                "PORTLAND",
                "OR",
                "97201",
                "US",
                None,
                language,
                started,
                started + timedelta(seconds=duration),
                duration,
                "completed",
            ),
        )
        step = 1
        at = started + timedelta(seconds=8)
        yield "choices", (sid, step, "language", None, language, None, at)
        if rng.random() < 0.12:
            continue  # unrouted: hung up at the topic menu
        chosen = {rng.choices(slugs, weights)[0] for _ in range(2 if rng.random() < 0.1 else 1)}
        for slug in sorted(chosen):
            step += 1
            at += timedelta(seconds=10)
            yield "choices", (sid, step, "topic", topic_ids[slug], None, None, at)
            stance = None
            if slug in stance_slugs and rng.random() < 0.9:
                stance = rng.choice(("support", "oppose", "other"))
                step += 1
                yield "choices", (sid, step, "stance", topic_ids[slug], None, stance, at)
            yield "call_topics", (sid, topic_ids[slug], stance, step if stance else 0)
            step += 1
            if rng.random() < 0.33:
                recording_id += 1
                rsid = f"RE{i:030x}{step:02x}"
                seconds = 0 if rng.random() < 0.05 else rng.randint(3, 120)
                status = "completed" if seconds else "absent"
                at += timedelta(seconds=seconds + 5)
                yield (
                    "recordings",
                    (
                        recording_id,
                        rsid,
                        sid,
                        topic_ids[slug],
                        stance,
                        language,
                        step,
                        seconds,
                        status,
                        "#",
                        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{rsid}",
                        at,
                        at,
                        at,
                    ),
                )
                if language == "en-US" and seconds > 2:
                    yield (
                        "transcriptions",
                        (
                            recording_id,
                            rsid,
                            "twilio",
                            "TR" + rsid[2:],
                            "en-US",
                            "completed",
                            rng.choice(TEXTS),
                            at,
                            at,
                        ),
                    )


TABLES = {
    "calls": CALL_COLUMNS,
    "choices": CHOICE_COLUMNS,
    "call_topics": CALL_TOPIC_COLUMNS,
    "recordings": RECORDING_COLUMNS,
    "transcriptions": TRANSCRIPTION_COLUMNS,
}


def as_sqlite(value):
    """A value as SQLAlchemy stores it in SQLite (datetimes as text, microseconds always)."""
    return value.isoformat(" ", timespec="microseconds") if isinstance(value, datetime) else value


def topic_ids_of(db: Database) -> dict[str, int]:
    if db.kind == "sqlite":
        with sqlite3.connect(db.url.removeprefix("sqlite:///")) as conn:
            return dict(conn.execute("SELECT slug, id FROM topics ORDER BY position"))
    with psycopg.connect(db.url) as conn:
        return dict(conn.execute("SELECT slug, id FROM topics ORDER BY position").fetchall())


def fill(db: Database, n_calls: int, now: datetime) -> dict[str, int]:
    """Insert `n_calls` calls with their facts; return the rows written per table."""
    rows = generate(n_calls, topic_ids_of(db), now)
    counts = dict.fromkeys(TABLES, 0)
    if db.kind == "postgresql":
        buffers: dict[str, list] = {t: [] for t in TABLES}
        with psycopg.connect(db.url) as conn:

            def flush(table: str) -> None:
                with conn.cursor().copy(f"COPY {table} ({', '.join(TABLES[table])}) FROM STDIN") as copy:
                    for row in buffers[table]:
                        copy.write_row(row)
                counts[table] += len(buffers[table])
                buffers[table].clear()

            for table, row in rows:
                buffers[table].append(row)
                if len(buffers[table]) >= 200_000:
                    flush(table)
            for table in TABLES:
                flush(table)
            conn.execute("SELECT setval('recordings_id_seq', (SELECT max(id) FROM recordings))")
            conn.execute("SELECT setval('transcriptions_id_seq', (SELECT max(id) FROM transcriptions))")
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")  # what autovacuum does after a load like this
        return counts
    conn = sqlite3.connect(db.url.removeprefix("sqlite:///"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # the fill only
    sql = {
        t: f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})" for t, cols in TABLES.items()
    }
    buffers = {t: [] for t in TABLES}

    def flush_sqlite(table: str) -> None:
        conn.executemany(sql[table], [tuple(as_sqlite(v) for v in row) for row in buffers[table]])
        counts[table] += len(buffers[table])
        buffers[table].clear()

    with conn:
        for table, row in rows:
            buffers[table].append(row)
            if len(buffers[table]) >= 100_000:
                flush_sqlite(table)
        for table in TABLES:
            flush_sqlite(table)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return counts


async def timed_gets(
    server: Server,
    api: str,
    path: str,
    params: dict,
    fresh: Driver,
    record: Record,
    n: int = REQUESTS,
    budget: float = BUDGET_SECONDS,
) -> dict:
    """`n` GETs of `path`, each after a fresh first webhook (so nothing can be cached); fewer
    (at least 3) when they have taken more than `budget` seconds in all: such a figure is far
    off its target, and the report gives n."""
    times = []
    url = server.base + path + (f"?{urlencode(params)}" if params else "")
    started_all = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        fresh.session = session
        for _ in range(n):
            if len(times) >= 3 and time.perf_counter() - started_all > budget:
                break
            record.calls.append(await fresh.play_call(700, len(record.calls), first_only=True))
            started = time.perf_counter()
            async with session.get(url, headers={"Authorization": f"Bearer {api}"}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {url} answered {response.status}")
            times.append(time.perf_counter() - started)
        fresh.session = None
    return {
        "n": len(times),
        "p50_ms": pct(times, 0.5) * 1000,
        "p95_ms": pct(times, 0.95) * 1000,
        "max_ms": max(times) * 1000,
    }


def inbox_route(db: Database) -> str | None:
    """The staff inbox's URL rule, if this branch has one."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "routes"],
        cwd=PROJECT_DIR,
        env={**os.environ, **db.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        if "inbox" in line.lower():
            return line.split()[-1]
    return None


def run_bulk(
    db: Database, workdir: Path, line: LineFacts, *, n_calls: int, workers: int, threads: int, say=print
) -> dict:
    now = utcnow()
    started = time.perf_counter()
    rows = fill(db, n_calls, now)
    if "rebuild" in flask(db, "counts", "--help"):
        # The summaries are made from the facts just written (minutes at a million calls).
        flask(db, "counts", "rebuild", timeout=3600)
    fill_seconds = time.perf_counter() - started
    say(f"  {db.kind}: filled {rows} in {fill_seconds:.1f} s")
    api = api_token(db, "bench-bulk")
    peak = (now - timedelta(days=PEAK_DAY)).date()
    windows = {
        "all time": {},
        "one whole day": {"since": peak.isoformat(), "until": (peak + timedelta(days=1)).isoformat()},
        "last hour": {"since": (now - timedelta(hours=1)).isoformat(timespec="seconds") + "Z"},
        "one week": {"since": (peak - timedelta(days=3)).isoformat(), "until": (peak + timedelta(days=4)).isoformat()},
        "an afternoon": {"since": f"{peak.isoformat()}T13:00:00Z", "until": f"{peak.isoformat()}T17:00:00Z"},
    }
    timings: dict[str, dict] = {}
    server = Server(OURS, db, workdir / f"gunicorn-bulk-{db.kind}.log", workers=workers, threads=threads)
    record = Record()
    try:
        fresh = Driver(server.base, TOKEN, line, seed=99, run_id="bulk")
        for name, params in windows.items():
            timings[f"counts, {name}"] = asyncio.run(timed_gets(server, api, "/api/v1/counts", params, fresh, record))
            say(f"  {db.kind}: counts, {name}: p95 {timings[f'counts, {name}']['p95_ms']:.0f} ms")
        inbox = inbox_route(db)
        comments = {"unfiltered": {}, "topic": {"topic": "transit"}, "window": windows["one whole day"]}
        for name, params in comments.items():
            key = f"API comments first page, {name}"
            timings[key] = asyncio.run(timed_gets(server, api, "/api/v1/comments", params, fresh, record))
            say(f"  {db.kind}: {key}: p95 {timings[key]['p95_ms']:.0f} ms")
        total = asyncio.run(fetch_counts(server.base, api))
    finally:
        server.stop()
    return {
        "rows": rows,
        "fill_seconds": fill_seconds,
        "timings": timings,
        "calls_after": total["calls"],
        "fresh_webhooks": len(record.calls),
        "inbox": f"the inbox is at {inbox} but needs a staff sign-in, which this benchmark does not do yet: not timed"
        if inbox
        else "no inbox route on this branch (the staff console is built elsewhere): not timed",
    }


def run_memory(
    db: Database,
    workdir: Path,
    line: LineFacts,
    *,
    n_calls: int,
    in_flight: int,
    seed: int,
    chunk: int = 10_000,
    say=print,
) -> dict:
    """One web worker (WEB_WORKERS=1) plays `n_calls` whole calls; its RSS is read as it goes."""
    server = Server(OURS, db, workdir / f"gunicorn-memory-{db.kind}.log", workers=1, threads=4)
    record = Record()
    samples = []
    try:
        (pid,) = server.workers()
        samples.append((0, server.worker_rss()[pid]))
        driver = Driver(server.base, TOKEN, line, in_flight=in_flight, seed=seed, run_id="memory")
        done = 0
        started = time.perf_counter()
        while done < n_calls:
            n = min(chunk, n_calls - done)
            asyncio.run(driver.run(n, 2000 + done // chunk, record))
            done += n
            if server.workers() != [pid]:
                raise RuntimeError("the web worker was replaced during the memory run")
            samples.append((done, server.worker_rss()[pid]))
            say(
                f"  {db.kind}: {done} calls, worker RSS {samples[-1][1] / 2**20:.1f} MB "
                f"({done / (time.perf_counter() - started):.0f} calls/s)"
            )
        api = api_token(db, "bench-memory")
        expected = expected_counts(record.calls, line.slugs)
        shown = asyncio.run(settled_counts(server.base, api, expected))
        problems = compare_counts(expected, shown)
    finally:
        server.stop()
    return {
        "calls": n_calls,
        "rss_mb": [(n, rss / 2**20) for n, rss in samples],
        "final_mb": samples[-1][1] / 2**20,
        "max_mb": max(s[1] for s in samples) / 2**20,
        "errors": record.errors[:20],
        "counts_problems": problems,
    }
