"""The telephony side: Twilio's webhooks, the TwiML callers hear, and `flask line`/`flask spool`."""

from __future__ import annotations

import contextlib

from flask import Flask

from models.line import ScriptCache

from . import dev_media
from .behind import WriteBehind
from .commands import line_cli, spool_cli
from .health import health
from .metrics import meter_webhooks, metrics
from .numbers import Numbers
from .routes import bp
from .spool import Breaker, Replayer, Spool, WriterTurn


def init_app(app: Flask) -> None:
    cfg = app.config
    app.extensions["line_script"] = ScriptCache(cfg["LINE_CACHE_SECONDS"], fallback_file=cfg["LINE_CONFIG"])
    spool, breaker = Spool(cfg["SPOOL_DIR"]), Breaker(cfg["DB_COOL_OFF_SECONDS"])
    replayer = Replayer(app, spool, breaker)
    app.extensions.update(spool=spool, db_breaker=breaker, spool_replayer=replayer, comment_numbers=Numbers())
    if cfg["WRITE_BEHIND"]:
        app.extensions["write_behind"] = WriteBehind(
            app, spool, breaker, replayer, fsync=cfg["JOURNAL_FSYNC"], gather=cfg["WRITE_BEHIND_GATHER_MS"] / 1000
        )
    # SQLite has one writer at a time and no queue for the rest: the web processes' threads
    # take turns here instead of sleeping in SQLite's busy handler.
    url = cfg["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:///"):
        app.extensions["write_lock"] = WriterTurn(url.removeprefix("sqlite:///") + ".writer-lock")
    else:
        app.extensions["write_lock"] = contextlib.nullcontext()
    app.register_blueprint(bp)
    app.register_blueprint(health)
    app.register_blueprint(metrics)
    dev_media.init_app(app)
    app.cli.add_command(line_cli)
    app.cli.add_command(spool_cli)
    meter_webhooks(app)
