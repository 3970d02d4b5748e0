"""Faults a reviewer found trying the console as an admin: ids beyond the database's integers
in console URLs, a number blocked twice (and a lift that said it was unblocked when it was
not), a block typed in other scripts' digits that never matched, a call-back marked done
twice, and the call-backs page's `done` parameter taken whatever it said."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from ivr.caller import Script, Take
from models import db, utcnow
from models.blocklist import AlreadyBlocked, BlockedNumber, BlockError, block_list, block_number, normalize_number
from models.callbacks import CallbackRequest
from models.calls import number_hash
from models.users import User
from staff.params import MAX_ROW_ID

from .conftest import CALLER, LINE
from .test_console_flags import audit_actions
from .test_flags import offer_callbacks

OTHER = replace(CALLER, number="+15035550200")


def give_callback_role(app, email: str) -> None:
    with app.app_context():
        db.session.execute(update(User).where(User.email == email).values(callbacks=True))
        db.session.commit()


def entries(app, number: str = OTHER.number) -> list[BlockedNumber]:
    """The block list's entries for `number`, oldest first, read as the line hashes `From`."""
    with app.app_context():
        wanted = number_hash(app.config["CALLER_HASH_KEY"], number)
        rows = db.session.scalars(select(BlockedNumber).where(BlockedNumber.caller_hash == wanted))
        return sorted(rows, key=lambda e: e.id)


def hears_the_block(twilio, phone, blocked: bool = True) -> bool:
    """Play a call from `phone`, the caller expecting the block message or not (it fails when
    the line answers otherwise); whether the line blocked it."""
    return twilio.play(Script(["1", "3"], [Take()]), phone, blocked=blocked).blocked


# --- ids beyond the database's integers -----------------------------------------------------------

ID_ROUTES = [
    ("post", "/admin/blocked/{id}/lift"),
    ("post", "/callbacks/{id}/done"),
    ("post", "/admin/prompts/takes/{id}/accept"),
    ("post", "/admin/prompts/takes/{id}/discard"),
    ("get", "/admin/prompts/takes/{id}.wav"),
    ("post", "/admin/users/{id}/disable"),
    ("post", "/admin/script/versions/{id}/publish"),
]


@pytest.mark.parametrize("row_id", [MAX_ROW_ID, MAX_ROW_ID + 1, 99999999999999999999])
def test_an_id_no_row_can_have_is_not_found_on_every_console_route(app, sign_in, row_id):
    """2147483648 is beyond PostgreSQL's integer, 99999999999999999999 beyond SQLite's; the
    largest id a row can have is looked up and not found. A 404 page, never a 500."""
    admin = sign_in("admin")
    give_callback_role(app, "admin@example.org")
    admin.get("/admin/blocked")  # a valid CSRF token for the posts
    for method, path in ID_ROUTES:
        url = path.format(id=row_id)
        response = admin.get(url) if method == "get" else admin.post(url)
        body = response.get_data(as_text=True)
        assert response.status_code == 404, (url, response.status_code, body[:300])
        assert "Traceback" not in body and "Not found" in body, url


# --- one active entry per number ------------------------------------------------------------------


def test_a_number_already_blocked_is_refused_and_the_page_says_until_when(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "(503) 555-0200", "reason": "forty calls"}).status_code == 302
    again = admin.post("/admin/blocked", {"number": "+15035550200", "reason": "again", "last_day": "2999-01-01"})
    said = again.get_data(as_text=True)
    assert again.status_code == 400
    assert "The number ending 0200 is already blocked, with no end" in said and "forty calls" in said
    assert "lift it first" in said
    assert len(entries(app)) == 1 and len(audit_actions(app, "block_add")) == 1
    assert hears_the_block(twilio, OTHER)

    admin.get("/admin/blocked")
    admin.post("/admin/blocked", {"number": "503 555 0300", "reason": "for a while", "last_day": "2999-01-01"})
    again = admin.post("/admin/blocked", {"number": "5035550300", "reason": "again"})
    assert again.status_code == 400 and "already blocked, until 2999-01-0" in again.get_data(as_text=True)


def test_lifting_says_the_truth_and_a_second_lift_changes_nothing(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    admin.post("/admin/blocked", {"number": "(503) 555-0200", "reason": "forty calls"})
    (entry,) = entries(app)
    lifted = admin.post(f"/admin/blocked/{entry.id}/lift", follow_redirects=True).get_data(as_text=True)
    assert "The number ending 0200 is no longer blocked" in lifted
    assert not hears_the_block(twilio, OTHER, blocked=False)
    (first,) = entries(app)

    admin.get("/admin/blocked")
    again = admin.post(f"/admin/blocked/{entry.id}/lift", follow_redirects=True)
    said = again.get_data(as_text=True)
    assert again.status_code == 200 and "no longer blocked" not in said
    assert "That entry for the number ending 0200 was already lifted, by admin@example.org" in said
    (after,) = entries(app)
    assert (after.lifted_at, after.lifted_by_label) == (first.lifted_at, first.lifted_by_label)
    assert len(audit_actions(app, "block_lift")) == 1

    # Lifted, the number can be blocked again: a new entry.
    assert admin.post("/admin/blocked", {"number": "+15035550200", "reason": "back again"}).status_code == 302
    assert [e.lifted_at is None for e in entries(app)] == [False, True]


def test_an_expired_entry_is_not_active(app, sign_in):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    admin.post("/admin/blocked", {"number": "(503) 555-0200", "reason": "for a day"})
    (entry,) = entries(app)
    with app.app_context():
        db.session.execute(update(BlockedNumber).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    said = admin.post(f"/admin/blocked/{entry.id}/lift", follow_redirects=True).get_data(as_text=True)
    assert "had already expired" in said and "no longer blocked" not in said
    assert entries(app)[0].lifted_at is None and audit_actions(app, "block_lift") == []
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "+15035550200", "reason": "again"}).status_code == 302
    assert len(entries(app)) == 2


def test_lifting_one_of_two_entries_left_from_before_says_the_number_is_still_blocked(app, sign_in, twilio):
    """Two active entries for one number, as the list could hold before it refused a second."""
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    admin.post("/admin/blocked", {"number": "(503) 555-0200", "reason": "forty calls"})
    (first,) = entries(app)
    with app.app_context():
        db.session.add(
            BlockedNumber(
                caller_hash=first.caller_hash,
                number_hint="0200",
                reason="from before",
                created_by_label="someone@example.org",
            )
        )
        db.session.commit()
    said = admin.post(f"/admin/blocked/{first.id}/lift", follow_redirects=True).get_data(as_text=True)
    assert "The entry is lifted, but the number ending 0200 is still blocked by another, with no end" in said
    assert "from before" in said and "no longer blocked" not in said
    block_list(app).forget()
    assert hears_the_block(twilio, OTHER)


def test_every_way_of_adding_an_entry_refuses_a_second_for_a_number(app):
    """The rule is the model's (`block_number`): the console is not the only way in."""
    key = app.config["CALLER_HASH_KEY"]
    with app.app_context():
        block_number(db.session, key, "+15035550200", "first", by="tests")
        db.session.commit()
        with pytest.raises(AlreadyBlocked) as refused:
            block_number(db.session, key, "1 (503) 555-0200", "second", by="tests")
        assert refused.value.entry.reason == "first" and "lift it first" in str(refused.value)
        assert not db.session.new and db.session.scalar(select(func.count()).select_from(BlockedNumber)) == 1
        db.session.rollback()


def test_two_additions_for_one_number_at_once_leave_one_active_entry(app):
    """A double submit: the second addition starts while the first is written but not yet
    committed. It waits for the first (its lock), then sees it and is refused."""
    key = app.config["CALLER_HASH_KEY"]
    outcome: list[object] = []

    def second() -> None:
        with app.app_context():
            try:
                block_number(db.session, key, "+15035550200", "second", by="tests")
                db.session.commit()
                outcome.append("added")
            except BlockError as exc:
                db.session.rollback()
                outcome.append(exc)

    with app.app_context():
        block_number(db.session, key, "+15035550200", "first", by="tests")
        other = threading.Thread(target=second)
        other.start()
        other.join(0.5)
        assert other.is_alive() and outcome == []  # waiting for the first to end
        db.session.commit()
    other.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyBlocked), outcome
    assert [e.reason for e in entries(app)] == ["first"]


# --- digits of other scripts ----------------------------------------------------------------------


def test_a_number_typed_in_other_scripts_digits_is_read_as_ascii_digits():
    assert normalize_number("٠١٢٣٤٥٦٧٨٩") == "+10123456789"  # Arabic-Indic
    assert normalize_number("(५०३) ५५५-०१००") == "+15035550100"  # Devanagari
    assert normalize_number("+１ ５０３ ５５５ ０１００") == "+15035550100"  # full width
    assert normalize_number("+1 (503) ۵۵۵-0100") == "+15035550100"  # mixed, Extended Arabic-Indic
    for not_digits in ("+1503555010²", "+1503555010⑤", "503 555 ০১০০ ²"):
        with pytest.raises(BlockError, match="Enter a phone number"):
            normalize_number(not_digits)


def test_a_block_typed_in_arabic_indic_digits_blocks_its_caller(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "٥٠٣٥٥٥٠١٠٠", "reason": "typed in Arabic"}).status_code == 302
    (entry,) = entries(app, CALLER.number)
    assert entry.number_hint == "0100"
    assert hears_the_block(twilio, CALLER)
    # The same number in ASCII is the same entry: compared by hash.
    again = admin.post("/admin/blocked", {"number": "+15035550100", "reason": "again"})
    assert again.status_code == 400 and "already blocked" in again.get_data(as_text=True)


# --- call-backs -----------------------------------------------------------------------------------


def test_a_call_back_marked_done_twice_is_marked_and_audited_once(app, sign_in, twilio):
    offer_callbacks(app)
    line = replace(LINE, callbacks=frozenset({"budget"}))
    twilio.play(Script(["1", "1", "2", "1", "2"], [Take(seconds=9)]), CALLER, line=line)  # asks for a call-back
    admin = sign_in("admin")
    give_callback_role(app, "admin@example.org")
    admin.get("/callbacks")
    with app.app_context():
        request_id = db.session.scalar(select(CallbackRequest.id))
    first = admin.post(f"/callbacks/{request_id}/done", follow_redirects=True).get_data(as_text=True)
    assert "Marked done." in first
    with app.app_context():
        done = db.session.get(CallbackRequest, request_id)
        stored = (done.done_at, done.done_by_label)

    again = admin.post(f"/callbacks/{request_id}/done", follow_redirects=True)
    said = again.get_data(as_text=True)
    assert again.status_code == 200 and "Marked done." not in said
    assert "That request was already marked done, by admin@example.org" in said
    with app.app_context():
        done = db.session.get(CallbackRequest, request_id)
        assert (done.done_at, done.done_by_label) == stored
    assert len(audit_actions(app, "callback_done")) == 1


@pytest.mark.parametrize("value", ["maybe", "%00", "no", "YES"])
def test_the_call_backs_page_refuses_a_done_it_does_not_send(app, sign_in, value):
    admin = sign_in("staff")
    give_callback_role(app, "staff@example.org")
    response = admin.get(f"/callbacks?done={value}")
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "done must be one of: yes." in body and "Traceback" not in body
    assert audit_actions(app, "callback_view") == []  # nothing was shown
    for fine in ("/callbacks", "/callbacks?done=yes", "/callbacks?done="):
        assert admin.get(fine).status_code == 200, fine
