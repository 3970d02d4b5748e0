"""The telephony side: Twilio's webhooks, the TwiML callers hear, and `flask line`."""

from __future__ import annotations

from flask import Flask

from models.line import ScriptCache

from .commands import line_cli
from .health import health
from .routes import bp


def init_app(app: Flask) -> None:
    app.extensions["line_script"] = ScriptCache(app.config["LINE_CACHE_SECONDS"])
    app.register_blueprint(bp)
    app.register_blueprint(health)
    app.cli.add_command(line_cli)
