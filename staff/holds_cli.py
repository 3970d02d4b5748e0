"""`flask holds`: list, place and release legal holds from the command line (the console's
admin page does the same). What a hold does is in `models/holds.py`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from models import db
from models.holds import HoldError, LegalHold, list_holds, place_hold, release_hold

from .holds import MAX_NOTE, covered_now, last_day, read_hold, scope_text, status_text
from .params import BadParameter, text

holds_cli = AppGroup("holds", help="Legal holds: records the line must keep.")

OPTION_FOR = {"comments": "--comment"}  # read_hold's names for values, where the option differs
BY_HELP = "Who places or releases it (your name or email); kept as cli:<BY> in the hold and the audit log."


def _person(by: str) -> str:
    try:
        who = text(by, "--by", 200)
    except BadParameter as exc:
        raise click.BadParameter(str(exc), param_hint="--by") from None
    if not who:
        raise click.BadParameter("say who you are", param_hint="--by")
    return f"cli:{who}"


def _describe(hold: LegalHold, zone: str) -> str:
    ends = "until released"
    if hold.released_at:
        ends = f"released {hold.released_at:%Y-%m-%d %H:%M} UTC by {hold.released_by_label}"
        ends += f" ({hold.release_note})" if hold.release_note else ""
    elif hold.expires_at:
        ends = f"{'expired after' if status_text(hold) == 'expired' else 'in force through'} {last_day(hold, zone)}"
    return (
        f"#{hold.id} {status_text(hold)}: {hold.reason}\n"
        f"    covers {scope_text(db.session, hold, zone)} ({covered_now(db.session, hold)} comment(s) now)\n"
        f"    placed {hold.placed_at:%Y-%m-%d %H:%M} UTC by {hold.placed_by_label}; {ends}"
    )


@holds_cli.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also the released and expired holds.")
def holds_list(show_all: bool) -> None:
    """The holds in force (with --all, every hold ever placed)."""
    zone = current_app.config["LINE_TIMEZONE"]
    holds = list_holds(db.session, include_released=show_all)
    if not holds:
        click.echo("No legal holds." if show_all else "No legal hold is in force.")
    for hold in holds:
        click.echo(_describe(hold, zone))


@holds_cli.command("add")
@click.option("--reason", required=True, help="Why the records must be kept (the case, the request).")
@click.option("--by", required=True, help=BY_HELP)
@click.option("--from", "first", help="First day of the window (YYYY-MM-DD, in LINE_TIMEZONE).")
@click.option("--to", "last", help="Last day of the window, included.")
@click.option("--topic", "topics", multiple=True, help="A topic's slug (repeat for several).")
@click.option("--comment", "comments", multiple=True, help="A comment's reference number (repeat for several).")
@click.option("--expires", help="The last day the hold is in force (default: until released).")
def holds_add(
    reason: str,
    by: str,
    first: str | None,
    last: str | None,
    topics: tuple[str, ...],
    comments: tuple[str, ...],
    expires: str | None,
) -> None:
    """Place a legal hold on a window of days, on topics (within a window if given), or on
    single comments."""
    actor = _person(by)
    zone = current_app.config["LINE_TIMEZONE"]
    try:
        new = read_hold(
            db.session,
            zone,
            reason=reason,
            first=first,
            last=last,
            topics=list(topics),
            comments=list(comments),
            expires=expires,
        )
        hold = place_hold(db.session, new, actor)
    except BadParameter as exc:
        raise click.BadParameter(str(exc), param_hint=OPTION_FOR.get(exc.name, f"--{exc.name}")) from None
    except HoldError as exc:
        raise click.UsageError(str(exc)) from None
    db.session.commit()
    click.echo(f"Placed legal hold #{hold.id}.")
    click.echo(_describe(hold, zone))


@holds_cli.command("release")
@click.argument("hold_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--by", required=True, help=BY_HELP)
@click.option("--note", help="Why it is released (kept with the hold).")
def holds_release(hold_id: int, by: str, note: str | None) -> None:
    """Release hold HOLD_ID: what it covered falls under the normal rules again, and the
    originals of transcripts redacted under it (if no other hold covers them) are destroyed."""
    actor = _person(by)
    try:
        note = text(note, "--note", MAX_NOTE)
    except BadParameter as exc:
        raise click.BadParameter(str(exc), param_hint="--note") from None
    hold = db.session.get(LegalHold, hold_id)
    if hold is None:
        raise click.BadParameter(f"there is no legal hold #{hold_id}", param_hint="HOLD_ID")
    try:
        destroyed = release_hold(db.session, hold, actor, note)
    except HoldError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"Released legal hold #{hold.id}.")
    if destroyed:
        click.echo(f"Destroyed {destroyed} kept original transcript(s), as their redaction asked.")
