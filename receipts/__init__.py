"""Signed daily receipts of the count: a digest of each day's counted facts, chained and
signed, so that any later change to the stored facts shows (receipts/chain.py)."""

from __future__ import annotations

from flask import Flask

from . import publish  # noqa: F401  (registers the publish_receipt job kind)
from .commands import tally_cli


def init_app(app: Flask) -> None:
    app.cli.add_command(tally_cli)
