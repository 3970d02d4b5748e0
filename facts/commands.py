"""`flask spool`: the facts that wait on disk while the database is away."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from models import db

from . import write_path

spool_cli = AppGroup("spool", help="Facts that waited on disk while the database was away.")


@spool_cli.command("status")
def spool_status() -> None:
    """How many transactions wait in this machine's spool (spooled, or journalled by a process
    that died), and how many journals running processes are writing."""
    spool = write_path(current_app).spool
    click.echo(f"{spool.depth()} transaction(s) waiting in {spool.dir}")
    live = [p for p in spool.dir.glob("*.journal") if p not in spool.files()] if spool.dir.is_dir() else []
    click.echo(f"{len(live)} journal(s) in use by running web processes (written behind, within seconds)")


@spool_cli.command("replay")
def spool_replay() -> None:
    """Write every spooled transaction to the database now (safe to repeat)."""
    report = write_path(current_app).spool.replay(db.session)
    click.echo(f"wrote {report.written}, rejected {report.rejected}, skipped {report.torn} torn line(s)")
    if report.stopped:
        raise click.ClickException(f"stopped: {report.stopped}; run it again when the database is back")
