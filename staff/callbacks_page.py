"""Call-back requests in the console, for staff with the call-back role only (`User.callbacks`,
given on the Staff page or with `flask users callbacks EMAIL on`): the numbers, decrypted for
the page and never stored in the clear, with the comment each was asked after. Every view of
the list is in the audit log, naming the requests shown; so is marking one done (once: marking
a request done again says who did and when, and changes and audits nothing)."""

from __future__ import annotations

from functools import wraps

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from models import Recording, db
from models.callbacks import list_requests, mark_done

from .auth import record
from .console import all_topics, console, local_time, topic_names
from .params import ROW_ID_IN_PATH, choice


def callback_role_required(view):
    """Staff with the call-back role only: anyone else signed in gets 403."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not g.user.callbacks:
            abort(403, description="Only staff with the call-back role see call-back requests.")
        return view(*args, **kwargs)

    return wrapped


@console.get("/callbacks")
@callback_role_required
def callbacks():
    """The open requests, or all with `done=yes` (the page's own link); any other `done` is 400."""
    config = current_app.config
    include_done = choice(request.args.get("done"), "done", ("yes",)) == "yes"
    if not config["CALLBACK_KEY"]:
        flash("CALLBACK_KEY is not set: the line takes no call-back requests and cannot show any.", "error")
        return render_template("callbacks.html", rows=[], references={}, include_done=include_done, names={})
    rows = list_requests(db.session, config["CALLBACK_KEY"], include_done=include_done)
    sids = [r.recording_sid for r in rows if r.recording_sid]
    references = {
        rec.recording_sid: rec.reference
        for rec in (db.session.scalars(select(Recording).where(Recording.recording_sid.in_(sids))) if sids else [])
    }
    record("callback_view", "callbacks", shown=[r.id for r in rows], include_done=include_done)
    db.session.commit()
    return render_template(
        "callbacks.html",
        rows=rows,
        references=references,
        include_done=include_done,
        names=topic_names(all_topics()),
    )


@console.post(f"/callbacks/<{ROW_ID_IN_PATH}:request_id>/done")
@callback_role_required
def callback_done(request_id: int):
    """Mark a request done (audited), once; 404 for no such request."""
    row, marked = mark_done(db.session, request_id, by=g.user)
    if row is None:
        abort(404, description="There is no such call-back request.")
    if not marked:
        flash(f"That request was already marked done, by {row.done_by_label}, {local_time(row.done_at)}.")
        db.session.rollback()
        return redirect(url_for("console.callbacks"))
    record("callback_done", f"callback {row.id}")
    db.session.commit()
    flash("Marked done.")
    return redirect(url_for("console.callbacks"))
