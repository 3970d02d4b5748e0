"""Legal holds in the console (admins): place one, list them, release one. Also how a hold is
read from what a person typed and how it is described, shared with `flask holds`
(`staff/holds_cli.py`). What a hold does is in `models/holds.py`."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from models import Recording, Topic, db
from models.holds import (
    MAX_COMMENTS,
    MAX_REASON,
    HoldError,
    LegalHold,
    NewHold,
    covers_recording,
    list_holds,
    place_hold,
    release_hold,
)
from models.recordings import recording_for_reference

from .auth import admin_required, client_ip
from .console import all_topics, console, topic_names
from .params import BadParameter, row_id, text
from .windows import local_midnight, parse_day, parse_days

MAX_NOTE = 500
_SEPARATORS = re.compile(r"[\s,;]+")


# --- reading and describing a hold --------------------------------------------------------------


def read_hold(
    session,
    zone: str,
    *,
    reason: str | None,
    first: str | None = None,
    last: str | None = None,
    topics: list[str] = (),
    comments: list[str] = (),
    expires: str | None = None,
) -> NewHold:
    """A hold from what a person typed: local days `first`..`last` (both included), topic slugs,
    reference numbers (or RecordingSids; a value may hold several, separated by spaces or
    commas), and the last local day `expires` the hold is in force (none: until released).
    Raises BadParameter saying which value is wrong."""
    reason = text(reason, "reason", MAX_REASON) or ""
    days = parse_days(first, last, zone)
    known = {topic.slug: topic.id for topic in session.scalars(select(Topic))}
    topic_ids = []
    for slug in topics:
        slug = (slug or "").strip()
        if slug and slug not in known:
            raise BadParameter("topic", f"There is no topic {slug[:64]!r}; the topics are {', '.join(sorted(known))}.")
        if slug:
            topic_ids.append(known[slug])
    references = [part for value in comments for part in _SEPARATORS.split(value or "") if part]
    if len(references) > MAX_COMMENTS:
        raise BadParameter("comments", f"A hold names at most {MAX_COMMENTS} comments; place several.")
    sids = []
    for reference in references:
        found = recording_for_reference(session, reference) if len(reference) <= 64 else None
        if found is None:
            raise BadParameter("comments", f"No comment has the reference number {reference[:64]!r}.")
        sids.append(found.recording_sid)
    last_day = parse_day(expires, "expires")
    return NewHold(
        reason=reason,
        since=days.since,
        until=days.until,
        topic_ids=topic_ids,
        recording_sids=sids,
        expires_at=local_midnight(last_day + timedelta(days=1), zone) if last_day else None,
    )


def _local_day(moment: datetime, zone: str) -> date:
    return moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).date()


def window_text(since: datetime | None, until: datetime | None, zone: str) -> str:
    """[since, until) as the local days it covers: "2026-01-01 to 2026-03-31"."""
    first = _local_day(since, zone).isoformat() if since else None
    last = _local_day(until - timedelta(microseconds=1), zone).isoformat() if until else None
    if first and last:
        return f"{first} to {last}" if first != last else first
    return f"from {first} on" if first else f"up to {last}"


def last_day(hold: LegalHold, zone: str) -> str | None:
    """The last local day a hold with an expiry is in force, as typed when it was placed."""
    return _local_day(hold.expires_at - timedelta(microseconds=1), zone).isoformat() if hold.expires_at else None


def scope_text(session, hold: LegalHold, zone: str) -> str:
    """What the hold covers, as a person reads it."""
    if hold.scope == "comments":
        sids = [c.recording_sid for c in hold.comments]
        found = session.scalars(select(Recording).where(Recording.recording_sid.in_(sids))).all()
        return "comments " + ", ".join(sorted(r.reference for r in found))
    window = window_text(hold.since, hold.until, zone) if hold.since or hold.until else None
    if hold.scope == "topics":
        slugs = dict(session.execute(select(Topic.id, Topic.slug)).all())
        named = ", ".join(sorted(slugs.get(t.topic_id, str(t.topic_id)) for t in hold.topics))
        return f"topics {named}" + (f", {window}" if window else "")
    return f"every comment, {window}"


def covered_now(session, hold: LegalHold) -> int:
    """How many comments the hold's scope takes in today."""
    query = select(func.count()).select_from(Recording).join(LegalHold, covers_recording())
    return session.scalar(query.where(LegalHold.id == hold.id))


def status_text(hold: LegalHold) -> str:
    if hold.released_at is not None:
        return "released"
    return "in force" if hold.active() else "expired"


# --- the admin page ------------------------------------------------------------------------------


def holds_page(form: dict | None = None, status: int = 200):
    zone = current_app.config["LINE_TIMEZONE"]
    holds = list_holds(db.session)
    shown = [
        {
            "hold": hold,
            "status": status_text(hold),
            "covers": scope_text(db.session, hold, zone),
            "count": covered_now(db.session, hold),
            "last_day": last_day(hold, zone),
        }
        for hold in holds
    ]
    return render_template("holds.html", holds=shown, topics=all_topics(), names=topic_names(), form=form or {}), status


@console.get("/admin/holds")
@admin_required
def holds():
    return holds_page()


@console.post("/admin/holds")
@admin_required
def place():
    """Place a hold from the form; a value that cannot be used is a 400 saying which."""
    form = {
        "reason": request.form.get("reason", ""),
        "from": request.form.get("from", ""),
        "to": request.form.get("to", ""),
        "topics": request.form.getlist("topic"),
        "comments": request.form.get("comments", ""),
        "expires": request.form.get("expires", ""),
    }
    try:
        new = read_hold(
            db.session,
            current_app.config["LINE_TIMEZONE"],
            reason=form["reason"],
            first=form["from"],
            last=form["to"],
            topics=form["topics"],
            comments=[form["comments"]],
            expires=form["expires"],
        )
        hold = place_hold(db.session, new, g.user, ip=client_ip())
    except (BadParameter, HoldError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return holds_page(form, 400)
    db.session.commit()
    flash(f"Placed legal hold #{hold.id}: {scope_text(db.session, hold, current_app.config['LINE_TIMEZONE'])}.")
    return redirect(url_for("console.holds"))


@console.post("/admin/holds/<hold_id>/release")
@admin_required
def release(hold_id: str):
    """Release a hold, with an optional note; 404 for no such hold, 409 when already released."""
    number = row_id(hold_id, "hold", "There is no such legal hold.")
    found = db.session.get(LegalHold, number) if number is not None else None
    if found is None:
        abort(404, description="There is no such legal hold.")
    try:
        note = text(request.form.get("note"), "note", MAX_NOTE)
        destroyed = release_hold(db.session, found, g.user, note, ip=client_ip())
    except (BadParameter, HoldError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return holds_page(status=409 if isinstance(exc, HoldError) else 400)
    db.session.commit()
    gone = f" {destroyed} kept original transcript(s) were destroyed, as their redaction asked." if destroyed else ""
    flash(f"Released legal hold #{found.id}.{gone}")
    return redirect(url_for("console.holds"))
