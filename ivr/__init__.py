"""The telephony side: Twilio's webhooks, the TwiML callers hear, and `flask line`/`flask spool`."""

from __future__ import annotations

import contextlib
import threading

from flask import Flask

from models.line import ScriptCache

from .commands import line_cli, spool_cli
from .health import health
from .metrics import metrics
from .routes import bp
from .spool import Breaker, Replayer, Spool


def init_app(app: Flask) -> None:
    cfg = app.config
    app.extensions["line_script"] = ScriptCache(cfg["LINE_CACHE_SECONDS"], fallback_file=cfg["LINE_CONFIG"])
    spool, breaker = Spool(cfg["SPOOL_DIR"]), Breaker(cfg["DB_COOL_OFF_SECONDS"])
    app.extensions.update(spool=spool, db_breaker=breaker, spool_replayer=Replayer(app, spool, breaker))
    # SQLite has one writer at a time and no queue for the rest: threads of one process take
    # turns here instead of sleeping in SQLite's busy handler.
    sqlite = cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    app.extensions["write_lock"] = threading.Lock() if sqlite else contextlib.nullcontext()
    app.before_request(app.extensions["spool_replayer"].look)
    app.register_blueprint(bp)
    app.register_blueprint(health)
    app.register_blueprint(metrics)
    app.cli.add_command(line_cli)
    app.cli.add_command(spool_cli)
