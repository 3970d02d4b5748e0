"""The staff side: the JSON API (bearer tokens) and its command-line tools."""

from __future__ import annotations

from flask import Flask

from .api import api
from .commands import counts_cli, tokens_cli


def init_app(app: Flask) -> None:
    app.register_blueprint(api)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(counts_cli)
