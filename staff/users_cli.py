"""`flask users`: make the first admin and manage accounts from the command line."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select

from models import User, audit, db
from models.users import UserError, create_user, disable_user, enable_user, find_user, generate_password, start_reset

from .auth import NO_LINK_BASE, can_make_links, reset_link

users_cli = AppGroup("users", help="Staff accounts for the console.")


def _read_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """(password, generated?): from standard input, generated, or asked for twice."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if generate:
        return generate_password(), True
    return click.prompt("Password (at least 12 characters)", hide_input=True, confirmation_prompt=True), False


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make an admin (default: staff).")
@click.option("--name", default="", help="The person's name, as shown in the console.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--generate", is_flag=True, help="Generate a password and print it.")
def users_create(email: str, admin: bool, name: str, password_stdin: bool, generate: bool) -> None:
    """Make an account for EMAIL. Asks for a password, reads it with --password-stdin, or
    prints a generated one as the last line."""
    password, generated = _read_password(password_stdin, generate)
    try:
        user = create_user(db.session, email, password, role="admin" if admin else "staff", name=name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    audit(db.session, "cli", "user_create", f"user {user.email}", role=user.role)
    db.session.commit()
    click.echo(f"Made {user.role} account {user.email}.", err=generated)
    if generated:
        click.echo("Its password is shown once:", err=True)
        click.echo(password)


def _user(email: str) -> User:
    user = find_user(db.session, email)
    if user is None:
        raise click.ClickException(f"There is no account for {email}.")
    return user


@users_cli.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Stop EMAIL from signing in; its open sessions end at once."""
    user = _user(email)
    disable_user(user)
    audit(db.session, "cli", "user_disable", f"user {user.email}")
    db.session.commit()
    click.echo(f"Disabled {user.email}.")


@users_cli.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Let a disabled account sign in again."""
    user = _user(email)
    enable_user(user)
    audit(db.session, "cli", "user_enable", f"user {user.email}")
    db.session.commit()
    click.echo(f"Enabled {user.email}.")


@users_cli.command("reset")
@click.argument("email")
@click.option("--password", "new_password", is_flag=True, help="Set a generated password instead of making a link.")
def users_reset(email: str, new_password: bool) -> None:
    """Print a one-time link (valid 24 hours) for EMAIL to choose a password, or with
    --password a new generated password. Either is shown once, as the last line."""
    user = _user(email)
    if not new_password and not can_make_links():
        raise click.ClickException(NO_LINK_BASE)
    if new_password:
        from models.users import set_password

        secret = generate_password()
        set_password(user, secret)
    else:
        secret = reset_link(start_reset(user))
    audit(db.session, "cli", "user_reset", f"user {user.email}", how="password" if new_password else "link")
    db.session.commit()
    click.echo(f"Reset for {user.email}; shown once:", err=True)
    click.echo(secret)


@users_cli.command("list")
def users_list() -> None:
    """Every account, with its role and state."""
    for user in db.session.scalars(select(User).order_by(User.email)):
        state = "active" if user.active else "disabled"
        seen = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
        role = f"{user.role}+callbacks" if user.callbacks else user.role
        click.echo(f"{user.email}\t{role}\t{state}\tlast sign-in {seen}")


@users_cli.command("callbacks")
@click.argument("email")
@click.argument("state", type=click.Choice(["on", "off"]))
def users_callbacks(email: str, state: str) -> None:
    """Give EMAIL the call-back role (on: sees callers' numbers on the Call-backs page), or
    take it away (off)."""
    user = _user(email)
    wanted = state == "on"
    audit(db.session, "cli", "user_callbacks", f"user {user.email}", before=user.callbacks, after=wanted)
    user.callbacks = wanted
    db.session.commit()
    click.echo(f"{user.email}: call-back role {state}.")
