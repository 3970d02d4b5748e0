"""Part 2: a million calls in the database, fast, then the counts and the staff inbox timed as
the client sees them (the inbox signed in as a staff account, as a browser is); and a web
worker's memory after 100,000 calls.

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
import re
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import psycopg
import yaml

from config import DEFAULT_LINE_CONFIG
from models.base import utcnow
from models.line import districts_of
from models.recordings import reference_for

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
from .servers import OURS, SECRETS, TOKEN, Database, Server, api_token, flask, staff_account

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
    "entered_zip",
    "zip_step",
    "stir_verstat",
    "caller_withheld",
    "blocked",
)
# The ZIP codes bulk callers enter (75% of calls; the others skip): a third of those inside
# the benchmark's district (DISTRICT_ZIPS, bench/line-district.yaml), the rest spread over
# the region's other codes. Drawn from a random generator of their own.
DISTRICT_ZIPS = ("97201", "97204")
OTHER_ZIPS = tuple(f"972{n:02d}" for n in range(40) if f"972{n:02d}" not in DISTRICT_ZIPS)
# Repeat callers: 3% of the calls come from 300 numbers (about 100 calls each at a million,
# 40 on the decision day: the `repeat` flag); one call in 500 starts a burst, 4-8 calls from
# one new number within 5 minutes (the `burst` flag). SHAKEN/STIR verdicts, withheld numbers
# (2%), blocked calls (0.5%) and call-back requests (1% of the routed calls) as a line sees them.
HEAVY_NUMBERS, HEAVY_SHARE = 300, 0.03
BURST_SHARE, BURST_CALLS, BURST_MINUTES = 0.002, (4, 8), 5
VERSTATS = (("TN-Validation-Passed-A", 0.85), ("No-TN-Validation", 0.05), ("TN-Validation-Failed-B", 0.02))
CALLBACK_COLUMNS = ("call_sid", "step", "topic_id", "number_sealed", "requested_at")
CHOICE_COLUMNS = ("call_sid", "step", "kind", "topic_id", "language", "stance", "chosen_at")
CALL_TOPIC_COLUMNS = ("call_sid", "topic_id", "stance", "stance_step")
RECORDING_COLUMNS = (
    "id",
    "number",
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
SEARCH_WORD = "library"  # in one of the TEXTS, so in about a quarter of the transcripts
STAFF_EMAIL = "bench-staff@example.org"
# What every timed inbox page must show: the inbox, listing at least one comment.
INBOX_PAGE = ("<h1>Inbox</h1>", '<a class="ref"')


def generate(n_calls: int, topic_ids: dict[str, int], now: datetime, seed: int = 7):
    """Yield ("table", row) for `n_calls` calls spread over the last DAYS days: repeat callers,
    bursts, withheld and unverified numbers, blocked calls, ZIP codes entered (a share inside
    the district) and call-back requests in the mix the constants above describe."""
    rng = random.Random(seed)
    zip_rng = random.Random(seed + 1)
    mix = random.Random(seed + 2)  # who calls and how: repeat callers, bursts, verdicts
    key = SECRETS["SECRET_KEY"].encode()
    stance_slugs = {"budget", "transit"}
    slugs = list(topic_ids)
    weights = [40, 30, 15, 15][: len(slugs)] + [5] * max(0, len(slugs) - 4)
    peak_start = (now - timedelta(days=PEAK_DAY)).replace(hour=0, minute=0, second=0, microsecond=0)
    span = DAYS * 86400
    recording_id = 0
    burst: list = []  # (number, start, calls left) of the burst under way
    for i in range(n_calls):
        if rng.random() < 0.4:
            started = peak_start + timedelta(seconds=rng.random() * 86400)
        else:
            started = now - timedelta(seconds=60 + rng.random() * span)
        sid = f"CA{i:032x}"
        number = f"+1503{rng.randrange(600_000):07d}"
        if burst:
            number, burst_start, left = burst
            started = min(burst_start + timedelta(seconds=mix.random() * BURST_MINUTES * 60), now)
            burst[:] = [number, burst_start, left - 1] if left > 1 else []
        elif mix.random() < BURST_SHARE:
            burst[:] = [f"+1971{i:07d}", started, mix.randint(*BURST_CALLS) - 1]
            number = burst[0]
        elif mix.random() < HEAVY_SHARE:
            number = f"+1360{mix.randrange(HEAVY_NUMBERS):07d}"
        withheld = mix.random() < 0.02
        digest = None if withheld else hmac.new(key, number.encode(), hashlib.sha256).hexdigest()
        draw, verstat = mix.random(), None
        for name, share in VERSTATS:
            if draw < share:
                verstat = name
                break
            draw -= share
        blocked = mix.random() < 0.005
        language = "en-US" if rng.random() < 0.7 else "es-US"
        duration = rng.randint(20, 400)
        entered = None
        if zip_rng.random() < 0.75:
            entered = zip_rng.choice(DISTRICT_ZIPS) if zip_rng.random() < 1 / 3 else zip_rng.choice(OTHER_ZIPS)
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
                None if blocked else entered,
                None if blocked or entered is None else 2,
                verstat,
                withheld,
                blocked,
            ),
        )
        if blocked:
            continue  # heard the block list's message and hung up
        step = 1
        at = started + timedelta(seconds=8)
        yield "choices", (sid, step, "language", None, language, None, at)
        if entered is not None:
            step += 1  # the ZIP step (after the language)
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
                if seconds and mix.random() < 0.03:
                    seconds = 1  # a short comment
                status = "completed" if seconds else "absent"
                at += timedelta(seconds=seconds + 5)
                yield (
                    "recordings",
                    (
                        recording_id,
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
            if mix.random() < 0.01:
                step += 1
                yield "callback_requests", (sid, step, topic_ids[slug], None, at)


TABLES = {
    "calls": CALL_COLUMNS,
    "choices": CHOICE_COLUMNS,
    "call_topics": CALL_TOPIC_COLUMNS,
    "recordings": RECORDING_COLUMNS,
    "transcriptions": TRANSCRIPTION_COLUMNS,
    "callback_requests": CALLBACK_COLUMNS,
}


def as_sqlite(value):
    """A value as SQLAlchemy stores it in SQLite (datetimes as text, microseconds always)."""
    return value.isoformat(" ", timespec="microseconds") if isinstance(value, datetime) else value


def query(db: Database, sql: str) -> list[tuple]:
    """The rows `sql` reads from the benchmark's database."""
    if db.kind == "sqlite":
        with closing(sqlite3.connect(db.url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(db.url) as conn:
        return conn.execute(sql).fetchall()


def topic_ids_of(db: Database) -> dict[str, int]:
    return dict(query(db, "SELECT slug, id FROM topics ORDER BY position"))


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
            conn.execute("UPDATE recording_numbers SET next_number = (SELECT max(number) + 1 FROM recordings)")
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
        conn.execute("UPDATE recording_numbers SET next_number = (SELECT max(number) + 1 FROM recordings)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return counts


async def timed_gets(
    server: Server,
    path: str,
    params: dict,
    fresh: Driver,
    record: Record,
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    expect: tuple[str, ...] = (),
    n: int = REQUESTS,
    budget: float = BUDGET_SECONDS,
) -> dict:
    """`n` GETs of `path`, each after a fresh first webhook (so nothing can be cached); fewer
    (at least 3) when they have taken more than `budget` seconds in all: such a figure is far
    off its target, and the report gives n. Each GET carries `headers` (e.g. the API's bearer
    token) and `cookies` (e.g. a staff session from `sign_in`). Raises RuntimeError when an
    answer is not 200 (redirects are not followed) or lacks one of the strings in `expect`."""
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
            async with session.get(url, headers=headers, cookies=cookies, allow_redirects=False) as response:
                body = await response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {url} answered {response.status}")
            missing = [s for s in expect if s.encode() not in body]
            if missing:
                raise RuntimeError(f"GET {url} answered a page without {missing[0]!r}")
        fresh.session = None
    return {
        "n": len(times),
        "p50_ms": pct(times, 0.5) * 1000,
        "p95_ms": pct(times, 0.95) * 1000,
        "max_ms": max(times) * 1000,
    }


def url_rules(db: Database) -> dict[str, str]:
    """The app's URL rule for each endpoint (e.g. "console.inbox"), as `flask routes` lists them."""
    rules = {}
    for line in flask(db, "routes", "--sort", "endpoint").splitlines()[2:]:
        endpoint, *_, rule = line.split()
        rules[endpoint] = rule
    return rules


async def sign_in(server: Server, sign_in_path: str, inbox_path: str, email: str, password: str) -> dict[str, str]:
    """Sign in as a browser does: GET the sign-in form, POST it back with its CSRF token, keep
    the cookies. Returns the cookies for `timed_gets`. Raises RuntimeError when the sign-in is
    refused or the inbox at `inbox_path` then answers anything but the inbox page."""
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies from 127.0.0.1, as a browser does
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(server.base + sign_in_path) as response:
            form = await response.text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if response.status != 200 or token is None:
            raise RuntimeError(f"GET {sign_in_path} answered {response.status} without a sign-in form")
        fields = {"csrf_token": token[1], "email": email, "password": password, "next": ""}
        async with session.post(server.base + sign_in_path, data=fields, allow_redirects=False) as response:
            if response.status != 302:
                raise RuntimeError(f"signing in as {email} answered {response.status}, not a redirect")
        async with session.get(server.base + inbox_path, allow_redirects=False) as response:
            page = await response.text()
        if response.status != 200 or INBOX_PAGE[0] not in page:
            raise RuntimeError(f"signed in as {email}, GET {inbox_path} answered {response.status}, not the inbox")
    return {cookie.key: cookie.value for cookie in jar}


def inbox_pages(db: Database, day: str) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """The inbox pages to time, by name: (query, what the page must then show besides a list of
    comments). Each check proves the filter was taken (a filter the inbox rejects is dropped
    with a message, and the page would list every comment)."""
    (number,) = query(db, "SELECT min(number) FROM recordings WHERE duration > 0")[0]
    reference = reference_for(number)
    return {
        "unfiltered": ({}, ()),
        "one topic": ({"topic": "transit"}, ('<option value="transit" selected>',)),
        "one whole day": ({"from": day, "to": day}, (f'name="from" value="{day}"',)),
        f"search {SEARCH_WORD!r}": ({"q": SEARCH_WORD}, tuple(t for t in TEXTS if SEARCH_WORD in t)),
        "search a reference number": ({"q": reference}, (f"#{reference}</a>",)),
    }


def count_windows(now: datetime, peak) -> dict[str, dict]:
    """The windows the counts are timed for, by name: the calendar ones (all time, a UTC day,
    an ISO week from Monday, a month), whose target is 100 ms, and others (1 s)."""
    monday = peak - timedelta(days=peak.weekday())
    month = peak.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    seven = peak - timedelta(days=3)
    if seven.weekday() == 0:
        seven -= timedelta(days=1)  # seven days that are not a calendar week
    return {
        "all time": {},
        "a UTC day": {"since": peak.isoformat(), "until": (peak + timedelta(days=1)).isoformat()},
        "a calendar week": {"since": monday.isoformat(), "until": (monday + timedelta(days=7)).isoformat()},
        "a month": {"since": month.isoformat(), "until": next_month.isoformat()},
        "last hour": {"since": (now - timedelta(hours=1)).isoformat(timespec="seconds") + "Z"},
        "an afternoon": {"since": f"{peak.isoformat()}T13:00:00Z", "until": f"{peak.isoformat()}T17:00:00Z"},
        "seven days": {"since": seven.isoformat(), "until": (seven + timedelta(days=7)).isoformat()},
    }


CALENDAR_WINDOWS = ("all time", "a UTC day", "a calendar week", "a month")


def line_district(script_path: str) -> str | None:
    """The name of the first district of the line's script file (None when it has none)."""
    with open(script_path, encoding="utf-8") as file:
        districts = districts_of((yaml.safe_load(file) or {}).get("districts"))
    return min(districts) if districts else None


def run_bulk(
    db: Database, workdir: Path, line: LineFacts, *, n_calls: int, workers: int, threads: int, say=print
) -> dict:
    now = utcnow()
    started = time.perf_counter()
    rows = fill(db, n_calls, now)
    kept_seconds = None
    if "rebuild" in flask(db, "counts", "--help"):
        # The summaries are made from the facts just written (minutes at a million calls),
        # and (where the rebuild does it) every past day's kept figures counted.
        rebuilt = flask(db, "counts", "rebuild", timeout=3600)
        said = re.search(r"figures of all time were counted again in ([0-9.]+) s", rebuilt)
        kept_seconds = float(said.group(1)) if said else None
    if db.kind == "postgresql":
        # The load's and the rebuild's pages written out now, not while the reads are timed (a
        # line that took a month to reach a million calls has no such backlog).
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    fill_seconds = time.perf_counter() - started
    say(f"  {db.kind}: filled {rows} in {fill_seconds:.1f} s")
    if kept_seconds is not None:
        say(f"  {db.kind}: the rebuild counted the past days' kept figures in {kept_seconds:.1f} s")
    api = api_token(db, "bench-bulk")
    peak = (now - timedelta(days=PEAK_DAY)).date()
    windows = count_windows(now, peak)
    district = line_district(os.environ.get("LINE_CONFIG") or DEFAULT_LINE_CONFIG)
    timings: dict[str, dict] = {}
    server = Server(OURS, db, workdir / f"gunicorn-bulk-{db.kind}.log", workers=workers, threads=threads)
    record = Record()
    try:
        fresh = Driver(server.base, TOKEN, line, seed=99, run_id="bulk")
        bearer = {"Authorization": f"Bearer {api}"}
        for name, params in windows.items():
            for inside in (None, district) if district else (None,):
                key = f"counts, {name}" + (f", district={inside}" if inside else "")
                asked = {**params, "district": inside} if inside else params
                timings[key] = asyncio.run(timed_gets(server, "/api/v1/counts", asked, fresh, record, headers=bearer))
                say(f"  {db.kind}: {key}: p95 {timings[key]['p95_ms']:.0f} ms")
        comments = {"unfiltered": {}, "topic": {"topic": "transit"}, "window": windows["a UTC day"]}
        for name, params in comments.items():
            key = f"API comments first page, {name}"
            timings[key] = asyncio.run(timed_gets(server, "/api/v1/comments", params, fresh, record, headers=bearer))
            say(f"  {db.kind}: {key}: p95 {timings[key]['p95_ms']:.0f} ms")
        rules = url_rules(db)
        inbox = rules["console.inbox"]
        password = staff_account(db, STAFF_EMAIL)
        staff = asyncio.run(sign_in(server, rules["auth.sign_in"], inbox, STAFF_EMAIL, password))
        for name, (params, shows) in inbox_pages(db, peak.isoformat()).items():
            key = f"inbox first page, {name}"
            timings[key] = asyncio.run(
                timed_gets(server, inbox, params, fresh, record, cookies=staff, expect=INBOX_PAGE + shows)
            )
            say(f"  {db.kind}: {key}: p95 {timings[key]['p95_ms']:.0f} ms")
        total = asyncio.run(fetch_counts(server.base, api))
    finally:
        server.stop()
    return {
        "rows": rows,
        "fill_seconds": fill_seconds,
        "kept_seconds": kept_seconds,
        "timings": timings,
        "calls_after": total["calls"],
        "fresh_webhooks": len(record.calls),
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
