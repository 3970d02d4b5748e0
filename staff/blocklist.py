"""The block list in the console (admins): add a number with a reason and an optional last
day, lift it; each change is in the audit log. A number already blocked is refused (400) until
its entry is lifted; lifting an entry lifted already (or expired) changes and audits nothing.
The line reads the list through a cache that refreshes every BLOCK_LIST_CACHE_SECONDS
(models/blocklist.py): a change reaches every web process within that many seconds."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for

from models import db
from models.base import utcnow
from models.blocklist import (
    AlreadyBlocked,
    BlockedNumber,
    BlockError,
    active_entry,
    block_list,
    block_number,
    lift_block,
    list_entries,
)

from .auth import admin_required, record
from .console import console, local_time
from .params import ROW_ID_IN_PATH, BadParameter
from .windows import local_midnight, parse_day


def blocklist_page(status: int = 200):
    return render_template(
        "blocklist.html",
        entries=list_entries(db.session),
        now=utcnow(),
        delay=current_app.config["BLOCK_LIST_CACHE_SECONDS"],
    ), status


@console.get("/admin/blocked")
@admin_required
def blocked_numbers():
    return blocklist_page()


@console.post("/admin/blocked")
@admin_required
def block():
    """Block a number; `last_day` (a date, optional) is the last local day it is blocked."""
    config = current_app.config
    try:
        last_day = parse_day(request.form.get("last_day"), "last_day")
        expires = local_midnight(last_day + timedelta(days=1), config["LINE_TIMEZONE"]) if last_day else None
        entry = block_number(
            db.session,
            config["CALLER_HASH_KEY"],
            request.form.get("number", ""),
            request.form.get("reason", ""),
            by=g.user,
            expires_at=expires,
        )
    except AlreadyBlocked as exc:
        db.session.rollback()
        flash(
            f"The number ending {exc.entry.number_hint} is already blocked, {entry_text(exc.entry)}. "
            "To change that entry, lift it first, then block the number again.",
            "error",
        )
        return blocklist_page(400)
    except (BlockError, BadParameter, OverflowError) as exc:
        db.session.rollback()
        flash(str(exc) if not isinstance(exc, OverflowError) else "That day is outside the calendar.", "error")
        return blocklist_page(400)
    record("block_add", f"blocked {entry.id}", number_ends=entry.number_hint, reason=entry.reason, expires=str(expires))
    db.session.commit()
    block_list(current_app).forget()
    flash(f"Calls from the number ending {entry.number_hint} hear the block message within {delay_text()}.")
    return redirect(url_for("console.blocked_numbers"))


@console.post(f"/admin/blocked/<{ROW_ID_IN_PATH}:entry_id>/lift")
@admin_required
def lift(entry_id: int):
    """Lift an active entry (audited). An entry lifted already or expired is left as it is,
    and the page says so; when another entry still blocks the number (one made before the
    list allowed only one), the page says that too."""
    entry = db.session.get(BlockedNumber, entry_id) or abort(404, description="There is no such entry.")
    if not lift_block(db.session, entry, by=g.user):
        if entry.lifted_at is not None:
            flash(
                f"That entry for the number ending {entry.number_hint} was already lifted, "
                f"by {entry.lifted_by_label}, {local_time(entry.lifted_at)}."
            )
        else:
            flash(f"That entry for the number ending {entry.number_hint} had already expired: it blocks nothing.")
        db.session.rollback()
        return redirect(url_for("console.blocked_numbers"))
    record("block_lift", f"blocked {entry.id}", number_ends=entry.number_hint)
    still = active_entry(db.session, entry.caller_hash)
    if still is not None:
        said = (
            f"The entry is lifted, but the number ending {still.number_hint} is still blocked by another, "
            f"{entry_text(still)}: lift that one too to unblock it."
        )
    else:
        said = f"The number ending {entry.number_hint} is no longer blocked (within {delay_text()})."
    db.session.commit()
    block_list(current_app).forget()
    flash(said, "error" if still is not None else "message")
    return redirect(url_for("console.blocked_numbers"))


def entry_text(entry: BlockedNumber) -> str:
    """An active entry as staff are told of it, in the line's time: until when, since when,
    by whom and why."""
    until = f"until {local_time(entry.expires_at)}" if entry.expires_at else "with no end"
    return f"{until} (since {local_time(entry.created_at)}, by {entry.created_by_label}: {entry.reason})"


def delay_text() -> str:
    return f"{current_app.config['BLOCK_LIST_CACHE_SECONDS']:g} seconds"
