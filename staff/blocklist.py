"""The block list in the console (admins): add a number with a reason and an optional last
day, lift it; each change is in the audit log. The line reads the list through a cache that
refreshes every BLOCK_LIST_CACHE_SECONDS (models/blocklist.py): a change reaches every web
process within that many seconds."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for

from models import db
from models.base import utcnow
from models.blocklist import BlockedNumber, BlockError, block_list, block_number, lift_block, list_entries

from .auth import admin_required, record
from .console import console
from .params import BadParameter
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
    except (BlockError, BadParameter, OverflowError) as exc:
        db.session.rollback()
        flash(str(exc) if not isinstance(exc, OverflowError) else "That day is outside the calendar.", "error")
        return blocklist_page(400)
    db.session.flush()
    record("block_add", f"blocked {entry.id}", number_ends=entry.number_hint, reason=entry.reason, expires=str(expires))
    db.session.commit()
    block_list(current_app).forget()
    flash(f"Calls from the number ending {entry.number_hint} hear the block message within {delay_text()}.")
    return redirect(url_for("console.blocked_numbers"))


@console.post("/admin/blocked/<int:entry_id>/lift")
@admin_required
def lift(entry_id: int):
    entry = db.session.get(BlockedNumber, entry_id) or abort(404, description="There is no such entry.")
    lift_block(entry, by=g.user)
    record("block_lift", f"blocked {entry.id}", number_ends=entry.number_hint)
    db.session.commit()
    block_list(current_app).forget()
    flash(f"The number ending {entry.number_hint} is no longer blocked (within {delay_text()}).")
    return redirect(url_for("console.blocked_numbers"))


def delay_text() -> str:
    return f"{current_app.config['BLOCK_LIST_CACHE_SECONDS']:g} seconds"
