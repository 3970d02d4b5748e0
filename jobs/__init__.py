"""Background work: the job queue's worker, and the jobs that keep every comment's audio and
get it a transcript. Webhooks only call `queue_work`; everything slow runs in `flask worker run`."""

from __future__ import annotations

import logging

from flask import Flask, current_app

from models import db

from . import recordings, transcripts  # noqa: F401  (registers the job kinds)
from .commands import recordings_cli, worker_cli
from .runner import queue

log = logging.getLogger(__name__)


def queue_work(kind: str, key: str) -> bool:
    """Queue work from a webhook, in a transaction of its own after the fact is committed.
    Never raises: a failure is logged (the worker's sweep finds the work later) and the
    caller is answered as usual."""
    try:
        queue(db.session, current_app.config, kind, key)
        db.session.commit()
        return True
    except Exception:  # noqa: BLE001 - whatever it is, the caller must still be answered
        db.session.rollback()
        log.exception("could not queue %s for %s; the worker's sweep will", kind, key)
        return False


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_cli)
    app.cli.add_command(recordings_cli)
