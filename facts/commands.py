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
    foreign = spool.foreign()
    if foreign:
        click.echo(f"{len(foreign)} file(s) written for another database, never replayed here:")
        for path in foreign:
            click.echo(f"    {path}")
        click.echo(
            "Replay one into this database only if it belongs here: flask spool replay --into-this-database FILE"
        )


@spool_cli.command("replay")
@click.option(
    "--into-this-database",
    "into_this",
    type=click.Path(exists=True, dir_okay=False),
    help="Write this one file into this database, whatever database it was written for.",
)
def spool_replay(into_this: str | None) -> None:
    """Write every transaction spooled for this database now (safe to repeat); files written
    for another database are set aside, never replayed, unless named with --into-this-database."""
    spool = write_path(current_app).spool
    report = spool.replay_into_this_database(into_this, db.session) if into_this else spool.replay(db.session)
    if report.set_aside:
        click.echo(f"set aside {report.set_aside} file(s) written for another database in {spool.aside}")
    click.echo(f"wrote {report.written}, rejected {report.rejected}, skipped {report.torn} torn line(s)")
    if report.stopped:
        raise click.ClickException(f"stopped: {report.stopped}; run it again when the database is back")
