"""`flask tokens` for API tokens and `flask counts` to show and verify the counts."""

from __future__ import annotations

import json
import time

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from models import ApiToken, audit, db, summary, utcnow
from models.callbacks import purge_numbers
from models.calls import repair_starts, verify_call_topics
from models.flags import FlagRules
from models.tally import keep_all_time, tally
from models.tokens import create_token

from .windows import BadWindow, parse_window

tokens_cli = AppGroup("tokens", help="Bearer tokens for the JSON API.")
counts_cli = AppGroup("counts", help="The counts, and a check that they agree with the facts.")
callbacks_cli = AppGroup("callbacks", help="Call-back requests: erase numbers past CALLBACK_KEEP_DAYS.")


@callbacks_cli.command("purge")
def callbacks_purge() -> None:
    """Erase the numbers of call-back requests older than CALLBACK_KEEP_DAYS days (the worker
    does it too, every WORKER_SWEEP_SECONDS); the requests stay, so the counts do not change."""
    days = current_app.config["CALLBACK_KEEP_DAYS"]
    erased = purge_numbers(db.session, days)
    if erased:
        audit(db.session, "cli", "callback_purge", "callbacks", erased=erased)
    db.session.commit()
    click.echo(f"Erased {erased} call-back number(s) older than {days} days." if days else "CALLBACK_KEEP_DAYS is 0.")


@tokens_cli.command("create")
@click.argument("name")
def tokens_create(name: str) -> None:
    """Make a token called NAME; it is printed once, as the last line."""
    if db.session.scalar(select(ApiToken).where(ApiToken.name == name)):
        raise click.ClickException(f"a token called {name!r} exists; revoke it or choose another name")
    token = create_token(db.session, name)
    db.session.commit()
    click.echo(f"Token {name!r} created. Keep it secret; it is not shown again:", err=True)
    click.echo(token)


@tokens_cli.command("list")
def tokens_list() -> None:
    """The tokens, with when they were made, last used and revoked."""
    rows = db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    if not rows:
        click.echo("No tokens. Make one with `flask tokens create NAME`.")
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.name}\tcreated {row.created_at:%Y-%m-%d %H:%M}\tlast used {used}\t{state}")


@tokens_cli.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke the token called NAME: it stops working at once."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise click.ClickException(f"no token called {name!r}")
    row.revoked_at = row.revoked_at or utcnow()
    db.session.commit()
    click.echo(f"Token {name!r} revoked.")


@counts_cli.command("show")
@click.option("--since", help="ISO 8601 date or time, in LINE_TIMEZONE unless it has an offset.")
@click.option("--until", help="Exclusive end, as --since.")
def counts_show(since: str | None, until: str | None) -> None:
    """Print the counts as JSON, exactly as the API gives them."""
    try:
        start, end = parse_window(since, until, current_app.config["LINE_TIMEZONE"])
    except BadWindow as exc:
        raise click.BadParameter(str(exc)) from None
    config = current_app.config
    rules = FlagRules.from_config(config)
    result = tally(db.session, start, end, callers_known=config["CALLER_NUMBERS"] != "none", flag_rules=rules)
    click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))


@counts_cli.command("verify")
def counts_verify() -> None:
    """Recompute every summary row from the stored facts and report any difference.
    Exits 1 when there is one."""
    problems = verify_call_topics(db.session) + summary.verify(db.session)
    for problem in problems:
        click.echo(problem)
    if problems:
        raise click.ClickException(f"{len(problems)} difference(s) between the summaries and the facts")
    click.echo("The summaries agree with the facts.")


@counts_cli.command("rebuild")
def counts_rebuild() -> None:
    """Repair what the stored facts can repair (a call's start later than its first keypress),
    then recompute the summaries from the facts, and count again the figures of past days an
    all-time count keeps (for the line and each district), so that its requests need not.
    Says what cannot be repaired. Run it while the line is quiet: webhooks wait for it on SQLite."""
    repaired, without_caller = repair_starts(db.session)
    summary.rebuild(db.session)
    db.session.commit()
    started = time.perf_counter()
    keep_all_time(db.session, current_app)
    kept_seconds = time.perf_counter() - started
    if repaired:
        click.echo(f"{repaired} call(s) started later than their first keypress: their start was moved back.")
    if without_caller:
        click.echo(
            f"{without_caller} of them have no caller: it was most likely lost when the call was first stored "
            "from a callback, and no stored fact holds it (replaying the webhooks' journals, if kept, restores it)."
        )
    click.echo("The summaries were rebuilt from the facts.")
    click.echo(
        f"The past days' figures of all time were counted again in {kept_seconds:.1f} s "
        "(kept, unless the database was too busy to take them: then the first request counts them)."
    )
