"""The telephony side: Twilio's webhooks, the TwiML callers hear, and `flask line`."""

from __future__ import annotations

from flask import Flask

from models.blocklist import init_block_list
from models.line import init_script_cache

from . import dev_media
from .commands import line_cli
from .health import health
from .metrics import meter_webhooks, metrics
from .prompt_audio import prompt_audio
from .routes import bp


def init_app(app: Flask) -> None:
    init_script_cache(app)
    init_block_list(app)
    app.register_blueprint(bp)
    app.register_blueprint(health)
    app.register_blueprint(metrics)
    app.register_blueprint(prompt_audio)
    dev_media.init_app(app)
    app.cli.add_command(line_cli)
    meter_webhooks(app)
