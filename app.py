"""The Comment Line application: `gunicorn "app:create_app()"`, `flask --app app ...`."""

from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import facts
import ivr
import jobs
import models
import public
import receipts
import staff
from config import SettingsError, load_settings
from config.logs import configure_logging


def create_app(test_config: dict[str, str] | None = None) -> Flask:
    """Build the app from the environment; `test_config` holds settings (by their environment
    names, see .env.example) that override it. Raises SettingsError, naming the setting,
    when production lacks a secret."""
    settings = load_settings({**os.environ, **(test_config or {})})
    configure_logging(settings["LOG_FORMAT"], settings["LOG_LEVEL"])
    app = Flask(__name__, instance_path=settings["INSTANCE_DIR"])
    app.config.update(settings)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
    models.init_app(app)
    facts.init_app(app)
    ivr.init_app(app)
    staff.init_app(app)
    jobs.init_app(app)
    public.init_app(app)
    receipts.init_app(app)
    return app


__all__ = ["create_app", "SettingsError"]
