"""Placing and releasing legal holds: whatever a person types into the console's form or the
`flask holds` options gets a clear answer, never a 500 or a traceback; every hold placed or
released is in the audit log. (What a hold keeps is tested in tests/worker/test_legal_holds.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from flask_migrate import downgrade, upgrade
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from config import PROJECT_DIR
from models import AuditEntry, LegalHold, Recording, db, utcnow
from models.holds import HoldError, NewHold, holds_covering, place_hold, release_hold

from .console_support import leave_comment
from .test_hardening_input import EDGE_VALUES

FIELDS = ("reason", "from", "to", "topic", "comments", "expires")
values = st.one_of(st.sampled_from(EDGE_VALUES), st.text(max_size=30), st.dates().map(str))


@pytest.fixture
def holds_page(app, sign_in, twilio):
    """An admin on the holds page of a line with one comment; `.reference` is its number."""
    _, _, reference = leave_comment(twilio, "3", None)
    admin = sign_in("admin")
    admin.get("/admin/holds")
    admin.reference = reference
    return admin


def page_text(response) -> str:
    return response.get_data(as_text=True)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(form=st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)), hold_id=values)
@example(form={"reason": "Smith", "to": "9999-12-30", "expires": "9999-12-30"}, hold_id=" ")
def test_no_form_value_gets_a_500(holds_page, form, hold_id):
    placed = holds_page.post("/admin/holds", form)
    assert placed.status_code in (302, 400), (form, placed.status_code, page_text(placed)[:400])
    assert "Traceback" not in page_text(placed)
    if placed.status_code == 400:
        assert 'class="flash error"' in page_text(placed)
    released = holds_page.post(f"/admin/holds/{quote(hold_id, safe='') or 'x'}/release", {"note": hold_id})
    assert released.status_code in (302, 308, 400, 404, 405, 409), (hold_id, released.status_code)  # 308: "//"
    assert "Traceback" not in page_text(released)


CASES = [
    ({"reason": "Smith"}, "Say what the hold covers: a date window, topics, or comments by reference number."),
    ({"reason": "x", "from": "2026-01-01"}, "Give the hold&#39;s reason"),
    ({"reason": "Smith", "from": "2026-02-30"}, "from=&#39;2026-02-30&#39; is not a date."),
    ({"reason": "Smith", "from": "2026-03-01", "to": "2026-01-01"}, "The end date is before the start date."),
    ({"reason": "Smith", "topic": "parks"}, "There is no topic &#39;parks&#39;; the topics are budget, general"),
    ({"reason": "Smith", "comments": "1234 5678"}, "No comment has the reference number &#39;1234&#39;."),
    ({"reason": "Smith", "comments": "{ref}", "topic": "budget"}, "A hold names comments, or covers topics and dates"),
    ({"reason": "Smith", "from": "2026-01-01", "expires": "2020-01-01"}, "The hold&#39;s expiry is already past"),
    ({"reason": "Smith\x00", "from": "2026-01-01"}, "reason holds a control character"),
    ({"reason": "S" * 501, "from": "2026-01-01"}, "reason is longer than 500 characters."),
]


@pytest.mark.parametrize(("form", "message"), CASES)
def test_a_form_that_cannot_be_a_hold_says_why_and_keeps_what_was_typed(holds_page, form, message):
    form = {k: v.replace("{ref}", holds_page.reference) for k, v in form.items()}
    response = holds_page.post("/admin/holds", form)
    assert response.status_code == 400
    assert message in page_text(response)
    if form.get("reason", "").isalpha():
        assert f'name="reason" required minlength="3" maxlength="500" value="{form["reason"]}"' in page_text(response)


def test_placing_and_releasing_in_the_console_is_audited(app, holds_page):
    placed = holds_page.post(
        "/admin/holds", {"reason": "Records request 12", "from": "2026-01-01", "to": "2026-03-31", "topic": "housing"}
    )
    assert placed.status_code == 302
    page = page_text(holds_page.get("/admin/holds"))
    assert "Placed legal hold #1: topics housing, 2026-01-01 to 2026-03-31." in page
    assert "when released" in page
    assert holds_page.post("/admin/holds/1/release", {"note": "answered"}).status_code == 302
    again = holds_page.post("/admin/holds/1/release", {})
    assert again.status_code == 409 and "Legal hold #1 was already released on" in page_text(again)
    assert holds_page.post("/admin/holds/99/release", {}).status_code == 404
    assert holds_page.post(f"/admin/holds/{2**40}/release", {}).status_code == 400
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action.like("hold.%"))).all()
        assert [(e.action, e.target, e.actor_label) for e in entries] == [
            ("hold.place", "hold 1", "admin@example.org"),
            ("hold.release", "hold 1", "admin@example.org"),
        ]
        assert entries[0].detail["topics"] and entries[1].detail["note"] == "answered"
        hold = db.session.get(LegalHold, 1)
        assert hold.released_by_label == "admin@example.org" and hold.released_at is not None


def test_staff_who_are_not_admins_cannot_place_holds(sign_in):
    staff = sign_in("staff")
    assert staff.get("/admin/holds").status_code == 403
    assert staff.post("/admin/holds", {"reason": "Smith", "from": "2026-01-01"}).status_code == 403


def test_the_command_line_names_what_is_wrong(app, runner, twilio):
    _, _, reference = leave_comment(twilio, "3", None)

    def holds(*args: str):
        return runner.invoke(args=["holds", *args])

    assert "Missing option '--by'" in holds("add", "--reason", "Smith", "--from", "2026-01-01").output
    nothing = holds("add", "--reason", "Smith", "--by", "ann")
    assert nothing.exit_code == 2 and "Say what the hold covers" in nothing.output
    unknown = holds("add", "--reason", "Smith", "--by", "ann", "--comment", "1234567")
    assert unknown.exit_code == 2 and "Invalid value for --comment: No comment has the reference" in unknown.output
    bad_day = holds("add", "--reason", "Smith", "--by", "ann", "--to", "tomorrow")
    assert bad_day.exit_code == 2 and "Invalid value for --to: to='tomorrow' is not a date." in bad_day.output
    placed = holds("add", "--reason", "Smith", "--by", "ann", "--comment", reference, "--expires", "9999-12-30")
    assert placed.exit_code == 0 and placed.output.startswith("Placed legal hold #1.\n#1 in force: Smith")
    assert "until released" not in placed.output and "; in force through 9999-12-30" in placed.output
    assert holds("release", "2", "--by", "ann").exit_code == 2
    assert "Invalid value for 'HOLD_ID'" in holds("release", "0", "--by", "ann").output
    assert holds("release", "1", "--by", "ann").output == "Released legal hold #1.\n"
    twice = holds("release", "1", "--by", "ann")
    assert twice.exit_code == 1 and "Legal hold #1 was already released on" in twice.output
    assert holds("list").output == "No legal hold is in force.\n"


def test_the_holds_migration_goes_down_and_up(app):
    with app.app_context():
        migrations = str(PROJECT_DIR / "migrations")
        db.session.remove()
        downgrade(directory=migrations, revision="-1")
        upgrade(directory=migrations)
        assert db.session.scalar(select(func.count()).select_from(LegalHold)) == 0


# --- what a hold covers: the SQL condition against a plain reading of the rules ------------------


@pytest.fixture
def comments(app, twilio):
    """Four comments, on four topics, recorded 0, 10, 20 and 30 days ago; their rows."""
    for digit, days in (("1", 0), ("2", 10), ("3", 20), ("9", 30)):
        _, sid, _ = leave_comment(twilio, digit, "1" if digit in "12" else None)
        with app.app_context():
            db.session.execute(
                update(Recording).where(Recording.recording_sid == sid).values(created_at=BASE + timedelta(days=days))
            )
            db.session.commit()
    with app.app_context():
        rows = db.session.scalars(select(Recording).order_by(Recording.id)).all()
        db.session.expunge_all()
        return rows


BASE = datetime(2026, 1, 1, 12)
days_ago = st.one_of(st.none(), st.integers(min_value=-5, max_value=35))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=days_ago,
    end=days_ago,
    topic_picks=st.sets(st.integers(min_value=0, max_value=3)),
    comment_picks=st.sets(st.integers(min_value=0, max_value=3)),
    ended=st.sampled_from(["in force", "released", "expired"]),
)
def test_a_hold_covers_exactly_what_its_scope_says(app, comments, start, end, topic_picks, comment_picks, ended):
    since = BASE + timedelta(days=start) if start is not None else None
    until = BASE + timedelta(days=end) if end is not None else None
    with app.app_context():
        topics = sorted({comments[i].topic_id for i in topic_picks})
        sids = [comments[i].recording_sid for i in sorted(comment_picks)]
        new = NewHold("Smith v. County", since, until, [] if sids else topics, sids)
        try:
            hold = place_hold(db.session, new, "cli:test")
        except HoldError:
            db.session.rollback()
            return
        if ended == "released":
            release_hold(db.session, hold, "cli:test")
        elif ended == "expired":
            hold.expires_at = utcnow() - timedelta(seconds=1)
        db.session.flush()
        for row in comments:
            expected = (
                ended == "in force"
                and (since is None or row.created_at >= since)
                and (until is None or row.created_at < until)
                and (not new.topic_ids or row.topic_id in new.topic_ids)
                and (not sids or row.recording_sid in sids)
            )
            covering = holds_covering(db.session, db.session.get(Recording, row.id))
            assert [h.id for h in covering] == ([hold.id] if expected else []), (row.created_at, row.topic_id)
        db.session.rollback()
