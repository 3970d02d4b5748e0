"""Staff accounts for the console: an email, a role (staff or admin) and a password kept only
as a salted scrypt hash. Accounts are disabled, never deleted, so the audit log can always
name who did what.

`session_stamp` changes whenever the password is set or the account is disabled: a browser
session carries the stamp it was signed in with and stops working when they differ.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Boolean, String, func, select
from sqlalchemy.orm import Mapped, mapped_column
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
