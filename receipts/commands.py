"""`flask tally`: the signing key, closing a day by hand, checking every receipt, and one day's
facts for anyone to check."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from models import db
from staff import windows

from . import signing
from .chain import close_day, facts_export, verify
from .publish import queue_publication

tally_cli = AppGroup("tally", help="Signed daily receipts of the count.")


@tally_cli.command("keygen")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), help="Append the setting to this file.")
def keygen(env_file: Path | None) -> None:
    """Make a new signing key; print TALLY_SIGNING_KEY=… and the public key."""
    private = signing.new_private_key()
    public = signing.public_raw(signing.private_key(private))
    line = f"TALLY_SIGNING_KEY={private}"
    if env_file is not None:
        with env_file.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        env_file.chmod(0o600)
        click.echo(f"Wrote TALLY_SIGNING_KEY to {env_file}.", err=True)
    else:
        click.echo(line)
    click.echo(
        f"public key {signing.b64(public)} (key id {signing.key_id(public)}), served at /public/tally-key", err=True
    )


def parse_day(text: str) -> date:
    try:
        day = windows.parse_day(text, "--day")
    except windows.BadWindow as exc:
        raise click.BadParameter(f"{text!r} is not a day: {exc}") from None
    if day is None:
        raise click.BadParameter(f"{text!r} is not a day: write it like {windows.DAY_EXAMPLE}")
    return day


def signing_key_or_exit() -> None:
    try:
        signing.private_key(current_app.config["TALLY_SIGNING_KEY"])
    except signing.KeyMissing as exc:
        raise click.ClickException(str(exc)) from None


@tally_cli.command("close")
@click.option("--day", "day_text", required=True, help="The local day (LINE_TIMEZONE), e.g. 2026-11-30.")
@click.option("--why", help="Why, when this amends the day's receipt.")
def close(day_text: str, why: str | None) -> None:
    """Make the day's receipt now: partial for today, final for a day that ended, amended when
    the facts changed since its last one."""
    day = parse_day(day_text)
    signing_key_or_exit()
    try:
        receipt = close_day(db.session, current_app.config, day, why=why)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if receipt is None:
        click.echo(f"{day}: its last receipt still matches the database; nothing made.")
        return
    queue_publication(db.session, current_app.config, receipt)
    db.session.commit()
    click.echo(f"{day}: {receipt.kind} receipt {receipt.hash}")


@tally_cli.command("verify")
def verify_command() -> None:
    """Recompute every receipt from the database and check the chain and the signatures; exit
    1 naming the first day, topic and kind of fact that differs."""
    signing_key_or_exit()
    findings = verify(db.session, current_app.config)
    if not findings:
        click.echo("Every receipt matches the database; the chain and the signatures hold.")
        return
    for finding in findings:
        click.echo(str(finding), err=True)
    click.echo(f"First difference: {findings[0]}", err=True)
    sys.exit(1)


@tally_cli.command("export")
@click.option("--day", "day_text", required=True, help="The local day, e.g. 2026-11-30.")
def export(day_text: str) -> None:
    """Print the day's canonical facts (JSON), as its standing receipt covers them."""
    found = facts_export(db.session, parse_day(day_text))
    if found is None:
        raise click.ClickException(f"{day_text} has no receipt yet (flask tally close --day {day_text})")
    click.echo(json.dumps(found, ensure_ascii=False, sort_keys=True))
