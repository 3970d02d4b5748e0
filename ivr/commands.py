"""`flask line`: load and sync the line's script, and play a call without a phone."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import click
from flask import current_app
from flask.cli import AppGroup

from models import db
from models.line import ScriptError, load_script, read_script_file, sync_script

from .caller import SimulatedCaller

line_cli = AppGroup("line", help="The line's script, and trying the line without a phone.")


def _read(path: str | None) -> dict:
    try:
        return read_script_file(path or current_app.config["LINE_CONFIG"])
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None


@line_cli.command("load")
@click.option("--file", "path", help="The script file (default: LINE_CONFIG).")
def load(path: str | None) -> None:
    """Load the script into an empty line; leave a line that has one untouched."""
    if load_script(db.session, _read(path)):
        db.session.commit()
        click.echo("Loaded the line's script.")
    else:
        click.echo("The line already has a script; `flask line sync` applies file changes.")


@line_cli.command("sync")
@click.option("--file", "path", help="The script file (default: LINE_CONFIG).")
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def sync(path: str | None, dry_run: bool) -> None:
    """Apply the script file to the line, matching topics by slug."""
    changes = sync_script(db.session, _read(path))
    for change in changes:
        click.echo(change)
    if dry_run:
        db.session.rollback()
        click.echo(f"{len(changes)} change(s) would be made (dry run).")
    else:
        db.session.commit()
        click.echo(f"{len(changes)} change(s) made." if changes else "The line already matches the file.")


def _in_process_post(client):
    def post(url, params, headers):
        response = client.post(url, data=params, headers=headers)
        return response.status_code, response.get_data(as_text=True)

    return post


def _http_post(url, params, headers):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@line_cli.command("call")
@click.option("--press", "press_flag", is_flag=True, help="The keys that follow are pressed in order.")
@click.argument("keys", nargs=-1)
@click.option("--url", help="Call a running line at this base URL instead of in this process.")
@click.option("--from", "from_number", default="+15555550100", show_default=True, help="The caller's number.")
@click.option("--seconds", default=12, show_default=True, help="Length of the recorded comment.")
@click.option(
    "--transcript",
    default="This is a test comment.",
    show_default=True,
    help="What Twilio's transcription says (English lines only).",
)
def call(
    press_flag: bool, keys: tuple[str, ...], url: str | None, from_number: str, seconds: int, transcript: str
) -> None:
    """Play a call through the real, signed webhooks and print what the caller hears.

    KEYS are pressed at each menu in turn: `-` lets a menu time out, `hangup` hangs up.
    Example: flask line call --press 1 2 1  (English, topic 2, support)."""
    for key in keys:
        if not (re.fullmatch(r"[0-9*#]", key) or key in ("-", "hangup")):
            raise click.BadParameter(f"{key!r} is not a key: use 0-9, *, #, - or hangup", param_hint="KEYS")
    token = current_app.config["TWILIO_AUTH_TOKEN"]
    if url:
        caller = SimulatedCaller(
            _http_post, token, url, account_sid=current_app.config["TWILIO_ACCOUNT_SID"], from_number=from_number
        )
    else:
        base = current_app.config["PUBLIC_BASE_URL"] or "http://localhost"
        caller = SimulatedCaller(
            _in_process_post(current_app.test_client()),
            token,
            base,
            account_sid=current_app.config["TWILIO_ACCOUNT_SID"],
            from_number=from_number,
        )
    try:
        played = caller.play(list(keys), comment_seconds=seconds, transcript=transcript)
    except (RuntimeError, OSError) as exc:
        raise click.ClickException(f"the line did not answer as Twilio expects: {exc}") from None
    click.echo(f"Call {played.call_sid} from {from_number}:")
    for line in played.heard:
        click.echo(("  " if line.startswith("[") else "  > ") + line)
    click.echo(f"{played.webhooks} webhooks, all answered.")
