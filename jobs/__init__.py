"""Background work: the job queue's worker, and the jobs that keep every comment's audio and
get it a transcript. Webhooks only queue work (a `job` fact, in the same transaction as the fact
that calls for it); everything slow runs in `flask worker run`."""

from __future__ import annotations

import logging

from flask import Flask

from . import prompts, recordings, transcripts  # noqa: F401  (registers the job kinds)
from .commands import recordings_cli, worker_cli

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_cli)
    app.cli.add_command(recordings_cli)
    app.extensions.setdefault("metrics_gauges", []).append(jobs_waiting)


def jobs_waiting():
    """For /metrics: jobs by kind and state (queued ones are waiting for a worker)."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from models import Job, db

    gauge = GaugeMetricFamily("commentline_jobs", "Background jobs by kind and state", labels=["kind", "state"])
    try:
        rows = db.session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)).all()
    except SQLAlchemyError:
        db.session.rollback()
        return
    for kind, state, count in rows:
        gauge.add_metric([kind, state], count)
    yield gauge
