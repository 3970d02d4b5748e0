"""`python -m bench public`: the cost of a public tally view beside a webhook's, in this process.

Builds ours as `bench inprocess` does (a fresh database, the WSGI callable called directly, no
HTTP), with PUBLIC_TALLY on, plays `--calls` whole signed calls (timing their webhooks: the
webhook's cost), then times GET /public and GET /public/counts.json: served from the cache
(what nearly every view costs while the answer is younger than PUBLIC_CACHE_SECONDS), and
computed afresh (what one view in each process costs every PUBLIC_CACHE_SECONDS). It counts
the statements each kind of view sends the database. Prints one line per measurement.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event
from twilio.request_validator import RequestValidator

from facts import write_path

from .inprocess import WEBHOOKS_PER_CALL, answer, one_call
from .servers import SECRETS, TOKEN, drop_database, fresh_database


def get_environ(path: str, query: str = "") -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "5000",
        "HTTP_HOST": "localhost:5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.input": io.BytesIO(b""),
    }


def view(app, path: str) -> None:
    status = []
    reply = app(get_environ(path), lambda line, headers, exc_info=None: status.append(line))
    try:
        body = b"".join(reply)
    finally:
        getattr(reply, "close", lambda: None)()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{path} answered {status[0]}: {body[:300]!r}")


def timed(action, times: int) -> float:
    """CPU seconds of this process per call of `action`, over `times` calls."""
    started = time.process_time()
    for _ in range(times):
        action()
    return (time.process_time() - started) / times


def build(kind: str, workdir: Path, pg_url: str):
    """Ours with the public tally on, on a fresh database (for PostgreSQL, the one `pg_url`
    names, dropped and made again), its settings in the environment as a deploy gives them."""
    os.environ.update(SECRETS)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["PUBLIC_TALLY"] = "on"
    db = fresh_database(kind, workdir, pg_url)
    os.environ.update(db.env())
    from app import create_app

    return create_app(), db


def main(kind: str, calls: int, views: int, pg_url: str) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="commentline-public-"))
    app, db = build(kind, workdir, pg_url)
    statements = [0]
    try:
        validator = RequestValidator(TOKEN)
        played = [one_call(validator, "budget") for _ in range(calls)]
        started = time.process_time()
        for environs in played:
            for environ in environs:
                answer(app, environ)
        write_path(app).flush()
        webhook = (time.process_time() - started) / (calls * WEBHOOKS_PER_CALL)
        with app.app_context():
            from models import db as database

            engine = database.engine
        event.listen(engine, "before_cursor_execute", lambda *args: statements.__setitem__(0, statements[0] + 1))
        cache = app.extensions["public_cache"]
        print(f"ours ({kind}), {calls} calls: {webhook * 1e6:,.0f} µs of CPU per webhook, writer included")
        for path in ("/public", "/public/counts.json"):
            view(app, path)  # warm: the answer is in the cache
            statements[0] = 0
            cached = timed(lambda path=path: view(app, path), views)
            cached_statements = statements[0] / views
            statements[0] = 0
            fresh_views = max(views // 20, 5)
            fresh = timed(lambda path=path: (cache.clear(), view(app, path)), fresh_views)
            fresh_statements = statements[0] / fresh_views
            print(
                f"GET {path}: {cached * 1e6:,.0f} µs of CPU per view from the cache "
                f"({cached_statements:.2f} statements), {fresh * 1e6:,.0f} µs computed afresh "
                f"({fresh_statements:.0f} statements, once per process every PUBLIC_CACHE_SECONDS)"
            )
    finally:
        if db:
            drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
