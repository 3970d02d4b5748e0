"""The staff side: the web console (sign-in, inbox, counts, admin), the JSON API (bearer
tokens) and their command-line tools."""

from __future__ import annotations

from flask import Flask

from . import admin, blocklist, callbacks_page, counts_page, holds, prompts, recordings, trial  # noqa: F401  (console routes)
from .api import api
from .auth import auth, configure_sessions
from .commands import callbacks_cli, counts_cli, tokens_cli
from .console import console as console_pages
from .errors import register_error_pages
from .holds_cli import holds_cli
from .users_cli import users_cli


def init_app(app: Flask) -> None:
    app.register_blueprint(api)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(counts_cli)
    app.cli.add_command(callbacks_cli)
    configure_sessions(app)
    app.register_blueprint(auth)
    app.register_blueprint(console_pages)
    register_error_pages(app)
    app.cli.add_command(users_cli)
    app.cli.add_command(holds_cli)
