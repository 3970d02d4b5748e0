"""`flask line`: load and sync the line's script, and play a call without a phone."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from config import TWILIO_API
from facts import write_path
from models import db
from models.drafts import (
    differences,
    draft_document,
    live_document,
    normal_document,
    put_live,
    save_draft,
    with_prompts_of,
)
from models.line import ScriptError, line_script, load_script, read_script_file

from .caller import (
    CallPlayer,
    LineFacts,
    Menu,
    Phone,
    Request,
    Response,
    Script,
    SimulatedCall,
    Take,
    TwilioAccount,
    UnexpectedReply,
    new_sid,
    play,
)
from .dev_media import comment_audio, keep_recording, serves_recordings, wav_seconds
from .menu import HANG_UP, NO_KEY

line_cli = AppGroup("line", help="The line's script, and trying the line without a phone.")


def _read(path: str | None) -> dict:
    """The checked script file; refused when a topic offers call-backs and the line has no
    CALLBACK_KEY to keep callers' numbers with."""
    try:
        data = read_script_file(path or current_app.config["LINE_CONFIG"])
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None
    offering = [t["slug"] for t in data["topics"] if t.get("callback")]
    if offering and not current_app.config["CALLBACK_KEY"]:
        raise click.ClickException(NO_CALLBACK_KEY.format(topics=", ".join(offering)))
    return data


NO_CALLBACK_KEY = (
    "topics {topics} offer call-backs, but CALLBACK_KEY is not set: callers' numbers would have no key to be"
    " kept with. Set CALLBACK_KEY (see .env.example) or set callback: false."
)


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
@click.option("--publish", is_flag=True, help="Publish it too: callers hear it within LINE_CACHE_SECONDS.")
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def sync(path: str | None, publish: bool, dry_run: bool) -> None:
    """Make the script file the draft (replacing the draft's changes), matching topics by
    slug; with --publish, put it live as well (audited, kept as a version). A topic the
    file lacks is switched off, never deleted. The file has no recorded prompts: the draft
    keeps its own (with --publish, the live script keeps its own)."""
    data = _read(path)
    if load_script(db.session, data):
        db.session.commit()
        click.echo("Loaded the script into an empty line.")
        return
    live = live_document(db.session)
    document = with_prompts_of(normal_document(data), live if publish else draft_document(db.session))
    changes = differences(live, document)
    for change in changes:
        click.echo(str(change))
    if dry_run:
        db.session.rollback()
        click.echo(f"{len(changes)} difference(s) from the live script (dry run: nothing changed).")
        return
    if publish:
        published = put_live(db.session, document, "system:cli")
        db.session.commit()
        line_script(current_app).forget()
        click.echo(f"Published as version {published.version}." if published else "The line already matches the file.")
        return
    save_draft(db.session, document)
    db.session.commit()
    click.echo(
        f"The draft is the file: {len(changes)} difference(s) from the live script. Publish it in the console "
        "(Publish) or with `flask line sync --publish`."
        if changes
        else "The live script already matches the file; the draft is the live script."
    )


DEFAULT_COMMENTS = {
    "en-US": "This is a test comment.",
    "es-US": "Este es un comentario de prueba.",
    "ht": "Sa a se yon kòmantè pou fè tès.",
}


class CommandLineCaller(Script):
    """`flask line call`'s caller: presses the keys given, then lets each menu time out; at
    every `<Record>` records a comment of `seconds`. In development it is real audio (the
    comment spoken, or a tone) kept for the line's stand-in for Twilio's media
    (ivr/dev_media.py), so that the worker copies it and the console plays it."""

    def __init__(self, keys: list[str], seconds: int, transcript: str | None, config) -> None:
        super().__init__(keys)
        self.seconds, self.transcript, self.config = seconds, transcript, config
        self.audio: list[Path] = []

    def take(self, menu: Menu) -> Take:
        text = self.transcript or DEFAULT_COMMENTS.get(menu.language, DEFAULT_COMMENTS["en-US"])
        sid, seconds = new_sid("RE"), self.seconds
        if seconds and serves_recordings(self.config):  # 0 s: Twilio heard nothing, kept nothing
            audio = comment_audio(text, menu.language, seconds)
            self.audio.append(keep_recording(self.config, sid, audio))
            seconds = wav_seconds(audio)
        return Take(seconds, transcript=text, recording_sid=sid)


def _in_process(client):
    def send(request: Request) -> Response:
        answer = client.post(request.url, data=request.params, headers=request.headers())
        return Response(answer.status_code, answer.get_data(as_text=True))

    return send


def _over_http(request: Request) -> Response:
    sent = urllib.request.Request(
        request.url, data=urllib.parse.urlencode(request.params).encode(), headers=request.headers()
    )
    try:
        with urllib.request.urlopen(sent, timeout=15) as answer:
            return Response(answer.status, answer.read().decode())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read().decode(errors="replace"))


@line_cli.command("call")
@click.option("--press", "press_flag", is_flag=True, help="The keys that follow are pressed in order.")
@click.argument("keys", nargs=-1)
@click.option("--url", help="Call a running line at this base URL instead of in this process.")
@click.option("--from", "from_number", default="+15555550100", show_default=True, help="The caller's number.")
@click.option(
    "--seconds",
    default=12,
    show_default=True,
    help="Length of the recorded comment; in development at least as long as its spoken words "
    "(a shorter --transcript makes a shorter one).",
)
@click.option(
    "--transcript",
    help="What the caller says (and Twilio's transcription, on English lines) "
    f"[default: {DEFAULT_COMMENTS['en-US']!r}, or the line's language's].",
)
def call(
    press_flag: bool, keys: tuple[str, ...], url: str | None, from_number: str, seconds: int, transcript: str | None
) -> None:
    """Play a call through the real, signed webhooks, as Twilio would, and print what the
    caller hears.

    KEYS are pressed at each menu in turn; when they run out, menus time out. `-` lets a menu
    time out, `hangup` hangs up. Example: flask line call --press 1 2 1  (English, topic 2,
    support). Where the line asks for a ZIP code, its KEY is the keys pressed there: 97201,
    972# (too short), # (skip). In development (APP_ENV=development, no Twilio account) the comment is real audio
    that the worker copies and the console plays."""
    for key in keys:
        if not (re.fullmatch(r"[0-9*#]|[0-9*]{1,5}#?", key) or key in (NO_KEY, HANG_UP)):
            raise click.BadParameter(
                f"{key!r} is not a key: use 0-9, *, #, up to five keys at a ZIP code (97201, 972#), {NO_KEY} or "
                f"{HANG_UP}",
                param_hint="KEYS",
            )
    if seconds < 0:
        raise click.BadParameter("a comment cannot last less than 0 seconds", param_hint="--seconds")
    config = current_app.config
    script = line_script(current_app).get(db.session)
    api_base = config["TWILIO_API_BASE"] if serves_recordings(config) else TWILIO_API
    account = TwilioAccount(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], api_base)
    base = url or config["PUBLIC_BASE_URL"] or "http://localhost"
    simulated = SimulatedCall(account, base, Phone(from_number))
    caller = CommandLineCaller(list(keys), seconds, transcript, config)
    player = CallPlayer(simulated, LineFacts.from_script(script), caller, keep_heard=True, blocked=None)
    try:
        played = play(player, _over_http if url else _in_process(current_app.test_client()))
    except (UnexpectedReply, OSError) as exc:
        raise click.ClickException(f"the line did not answer as Twilio expects: {exc}") from None
    if not url and not write_path(current_app).flush():  # played in this process: its facts are stored now
        raise click.ClickException(
            "the call's facts are journalled but not yet written; flask spool replay writes them"
        )
    click.echo(f"Call {played.call_sid} from {from_number}:")
    for line in played.heard:
        click.echo(("  " if line.startswith("[") else "  > ") + line)
    click.echo(f"{played.webhooks} webhooks, all answered.")
    if played.blocked:
        click.echo("The number is on the block list: the call is counted as blocked, in no topic.")
        return
    topics = ", ".join(f"{slug} ({stance or 'no position'})" for slug, stance in played.topics.items())
    click.echo(f"Topics chosen: {topics or 'none'}.")
    if script.zip_step != "off":
        click.echo(f"ZIP code entered: {played.entered_zip or 'none (skipped or unreadable: unknown)'}.")
    for comment in played.recordings.values():
        heard = ", ".join(sorted(comment.references)) or "none read back"
        click.echo(f"Comment {comment.recording_sid}: {comment.seconds} s on {comment.topic}, reference {heard}.")
    if caller.audio:
        click.echo(
            f"Its audio is in {caller.audio[0].parent}, served to the line at {config['TWILIO_API_BASE']}: "
            "with the line served there, the worker (flask --app app worker run) copies it and the "
            "console plays it."
        )
