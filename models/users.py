"""Staff accounts for the console: an email, a role (staff or admin) and a password kept only
as a salted scrypt hash. Accounts are disabled, never deleted, so the audit log can always
name who did what.

`session_stamp` changes whenever the password is set or the account is disabled: a browser
session carries the stamp it was signed in with and stops working when they differ.

Each signed-in browser also has a `StaffSession` row, keyed by the SHA-256 of a random key its
cookie carries: signing out deletes the row (a password change or a disable deletes all the
account's rows), so a copy of the cookie stops working at once, whatever it says.

`SignInLimit` rows count failed sign-ins per address, per account and per pair of both, for
the throttle in staff/throttle.py.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column, object_session
from werkzeug.security import check_password_hash, generate_password_hash

from .base import db, utcnow

ROLES = ("staff", "admin")
MIN_PASSWORD_LENGTH = 12
RESET_LINK_HOURS = 24
# Checked against when an email is unknown, so that a wrong email takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone's")


class UserError(ValueError):
    """The account cannot be made or changed as asked; the message says why, for staff."""


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="staff")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The call-back role: sees the numbers of callers who asked for a call back.
    callbacks: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    session_stamp: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(16))
    reset_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    reset_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def label(self) -> str:
        return self.email


class StaffSession(db.Model):
    """One signed-in browser. Its cookie carries a random key; this row keeps only the key's
    SHA-256. The session is valid while the row exists."""

    __tablename__ = "staff_sessions"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SignInLimit(db.Model):
    """Failed sign-ins counted for one key: "address <ip>", "account <email>" or
    "pair <ip> <email>". `first_at` starts the current window, `last_at` is the last failure
    (rows untouched for a day are deleted)."""

    __tablename__ = "sign_in_limits"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime] = mapped_column(index=True)


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def check_new_password(password: str, email: str = "") -> None:
    """Raise UserError when `password` is too weak to keep."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if email and password.strip().lower() == normalize_email(email):
        raise UserError("A password cannot be the email address.")


def generate_password() -> str:
    """A random password to show once: five groups of four, easy to read out and type."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(5))


def set_password(user: User, password: str) -> None:
    """Hash and keep `password`; end every session and reset link the account had."""
    check_new_password(password, user.email)
    user.password_hash = generate_password_hash(password)  # scrypt, salted
    user.session_stamp = secrets.token_hex(16)
    user.reset_token_hash = None
    user.reset_expires_at = None
    end_sessions(user)


def create_user(session, email: str, password: str, *, role: str = "staff", name: str | None = None) -> User:
    """Add an account; raise UserError when the email is taken or invalid or the password weak."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 254 or " " in email:
        raise UserError(f"{email!r} is not an email address.")
    if role not in ROLES:
        raise UserError(f"The role must be one of {', '.join(ROLES)}.")
    if find_user(session, email) is not None:
        raise UserError(f"There is already an account for {email}.")
    user = User(email=email, role=role, name=(name or "").strip() or None, active=True)
    set_password(user, password)
    session.add(user)
    session.flush()
    return user


def find_user(session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def authenticate(session, email: str, password: str) -> User | None:
    """The active account with this email and password, or None. Takes the same time whether
    or not the email is known."""
    user = find_user(session, email)
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def disable_user(user: User) -> None:
    """Stop the account from signing in and end its sessions at once."""
    user.active = False
    user.session_stamp = secrets.token_hex(16)
    user.reset_token_hash = None
    user.reset_expires_at = None
    end_sessions(user)


def enable_user(user: User) -> None:
    user.active = True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_reset(user: User, now: datetime | None = None) -> str:
    """Make a one-time reset token (valid RESET_LINK_HOURS) and return it; only its hash is kept.
    The old password keeps working until the link is used."""
    token = secrets.token_urlsafe(32)
    user.reset_token_hash = _digest(token)
    user.reset_expires_at = (now or utcnow()) + timedelta(hours=RESET_LINK_HOURS)
    return token


def user_for_reset(session, token: str, now: datetime | None = None) -> User | None:
    """The active account a reset token was made for, while it is unused and unexpired."""
    if not token:
        return None
    user = session.scalar(select(User).where(User.reset_token_hash == _digest(token)))
    if user is None or not user.active or user.reset_expires_at is None or user.reset_expires_at < (now or utcnow()):
        return None
    return user


def count_admins(session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True)))


# --- signed-in browsers ---------------------------------------------------------------------------


def start_session(session, user: User, now: datetime | None = None) -> str:
    """Record a new signed-in browser for `user`; return the key its cookie is to carry."""
    key = secrets.token_urlsafe(32)
    session.add(StaffSession(key_hash=_digest(key), user_id=user.id, started_at=now or utcnow()))
    return key


def session_is_open(session, user_id: int, key: str | None) -> bool:
    """Whether `key` names a browser still signed in as `user_id`."""
    if not key:
        return False
    row = session.get(StaffSession, _digest(key))
    return row is not None and row.user_id == user_id


def end_session(session, key: str | None) -> None:
    """Sign out the browser whose cookie carries `key` (nothing when there is none)."""
    if key:
        session.execute(delete(StaffSession).where(StaffSession.key_hash == _digest(key)))


def end_sessions(user: User) -> None:
    """Sign out every browser of `user` (an account not yet stored has none)."""
    session = object_session(user)
    if session is not None and user.id is not None:
        session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))


def forget_old_sessions(session, started_before: datetime) -> None:
    """Delete the rows of sessions that have expired anyway."""
    session.execute(delete(StaffSession).where(StaffSession.started_at < started_before))
