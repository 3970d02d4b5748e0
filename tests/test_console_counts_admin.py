"""The counts page and its CSV, topics and wording (edited in the draft, heard on the next call
once published), and the audit log page."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from models import AuditEntry, LineSettings, Topic, db
from tests.console_support import leave_comment


def table(page) -> dict[str, list[str]]:
    """The counts table as shown: topic slug -> the cells after the name."""
    rows = {}
    body = page.get_data(as_text=True)
    for slug, cells in re.findall(r'<tr class="[^"]*" data-topic="([^"]+)">(.*?)</tr>', body, re.S):
        rows[slug] = re.findall(r'<td class="num">([^<]*)</td>', cells)
    return rows


def play_calls(twilio) -> None:
    """Budget: 2 support (one caller twice), 1 oppose; transit: 1 other; one call that chose nothing."""
    leave_comment(twilio, "1", "1", From="+15035550111")
    leave_comment(twilio, "1", "1", From="+15035550111")
    leave_comment(twilio, "1", "2", From="+15035550112")
    leave_comment(twilio, "2", "3", From="+15035550113")
    call = twilio.call(From="+15035550114")
    call.dial()
    call.press("1")
    call.hang_up()


def test_counts_page_shows_what_was_played(sign_in, twilio):
    play_calls(twilio)
    page = sign_in("staff").get("/counts")
    assert page.status_code == 200
    rows = table(page)
    #                    calls callers comments support oppose other
    assert rows["budget"] == ["3", "2", "3", "2", "1", "0"]
    assert rows["transit"] == ["1", "1", "1", "0", "0", "1"]
    assert rows["housing"] == ["0", "0", "0", "0", "0", "0"]
    assert rows["(none)"] == ["1", "", "", "", "", ""]
    assert rows["(all)"] == ["5", "4", "4", "2", "1", "1"]  # every caller of the line, once
    body = page.get_data(as_text=True)
    assert "Calls per hour by topic" in body
    # Each bar is titled "<hour>: <topic> <calls>"; per topic they add up to the table's calls.
    bars = re.findall(r"<title>[^<]*: ([^<]+) (\d+)</title>", body)
    per_topic = {}
    for name, value in bars:
        per_topic[name] = per_topic.get(name, 0) + int(value)
    assert per_topic == {"the proposed city budget": 3, "the new bus routes": 1}
    assert 'data-live-url="/counts?partial=1"' in body


def test_counts_csv_is_exactly_the_table(sign_in, twilio):
    play_calls(twilio)
    staff_client = sign_in("staff")
    page = staff_client.get("/counts")
    link = re.search(r'href="(/counts\.csv[^"]*)"', page.get_data(as_text=True)).group(1).replace("&amp;", "&")
    response = staff_client.get(link)
    assert response.mimetype == "text/csv" and "attachment; filename=counts_" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    header = ["topic", "name", "calls", "callers", "comments", "support", "oppose", "other", "flagged", "callbacks"]
    assert rows[0] == header
    assert {row[0]: row[2:-2] for row in rows[1:]} == table(page)


def test_counts_window_and_partial_refresh(sign_in, twilio):
    play_calls(twilio)
    staff_client = sign_in("staff")
    empty = staff_client.get("/counts?from=2020-01-01&to=2020-01-31")
    assert table(empty)["(all)"][0] == "0" and "Calls per day by topic" in empty.get_data(as_text=True)
    partial = staff_client.get("/counts?partial=1")
    assert "<html" not in partial.get_data(as_text=True) and table(partial)["budget"][0] == "3"
    bad = staff_client.get("/counts?from=2020-02-01&to=2020-01-01")
    assert bad.status_code == 400 and "before the start date" in bad.get_data(as_text=True)
    assert staff_client.get("/counts?from=2020-01-01&to=2020-12-31").status_code == 400  # too many days


def test_counts_print_stylesheet_hides_the_controls(client):
    css = client.get("/console-static/console.css").get_data(as_text=True)
    assert "@media print" in css and ".noprint" in css.split("@media print")[1]


# --- topics and wording ---------------------------------------------------------------------


def topic_form(topic: Topic, **changes) -> dict:
    form = {"digit": topic.digit, "enabled": "on" if topic.enabled else "", "stance": "on" if topic.stance else ""}
    for code, name in topic.names.items():
        form[f"name_{code}"] = name
    for code, prompt in (topic.prompts or {}).items():
        form[f"prompt_{code}"] = prompt
    form.update(changes)
    return {k: v for k, v in form.items() if v != ""}


def topic(app, slug: str) -> Topic:
    with app.app_context():
        return db.session.scalar(select(Topic).where(Topic.slug == slug))


def version(app) -> int:
    with app.app_context():
        return db.session.get(LineSettings, 1).version


def publish(admin) -> None:
    """Publish the draft as an admin does, from the Publish page."""
    admin.get("/admin/script")
    assert admin.post("/admin/script/publish").status_code == 302


def test_renaming_a_topic_takes_effect_on_the_next_call(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    housing = topic(app, "housing")
    before = version(app)
    response = admin.post(f"/admin/topics/{housing.slug}", topic_form(housing, **{"name_en-US": "rents and housing"}))
    assert response.status_code == 302
    assert version(app) == before
    publish(admin)
    assert version(app) == before + 1
    call = twilio.call()
    call.dial()
    assert "For rents and housing, press 3." in call.press("1").said
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "topic_edit"))
        assert entry.target == "topic housing" and entry.actor_label == "admin@example.org"
        assert entry.detail["before"]["name"]["en-US"] == "housing"
        assert entry.detail["after"]["name"]["en-US"] == "rents and housing"


def test_switching_off_and_reordering_topics(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    transit = topic(app, "transit")
    admin.post(f"/admin/topics/{transit.slug}", topic_form(transit, enabled=""))
    for _ in range(2):  # above transit, then above budget
        admin.post("/admin/topics/housing/move", {"direction": "up"})
    publish(admin)
    call = twilio.call()
    call.dial()
    menu = call.press("1").said
    assert "bus routes" not in menu
    assert menu.index("For housing, press 3.") < menu.index("For the proposed city budget, press 1.")
    # Its counts stay: the switched-off topic is still in the table.
    assert "the new bus routes (switched off)" in admin.get("/counts").get_data(as_text=True)


def test_topic_prompt_per_language(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    budget = topic(app, "budget")
    admin.post(
        f"/admin/topics/{budget.slug}", topic_form(budget, **{"prompt_es-US": "Para el presupuesto, marque uno."})
    )
    publish(admin)
    call = twilio.call()
    call.dial()
    assert "Para el presupuesto, marque uno." in call.press("2").said


def test_adding_a_topic_and_refusing_a_clash(app, sign_in, twilio):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    clash = admin.post(
        "/admin/topics",
        {
            "slug": "parks",
            "digit": "1",
            "enabled": "on",
            "name_en-US": "parks",
            "name_es-US": "parques",
            "name_ht": "pak",
        },
    )
    assert clash.status_code == 400 and "already used" in clash.get_data(as_text=True)
    before = version(app)
    added = admin.post(
        "/admin/topics",
        {
            "slug": "parks",
            "digit": "4",
            "enabled": "on",
            "stance": "on",
            "name_en-US": "parks",
            "name_es-US": "parques",
            "name_ht": "pak",
        },
    )
    assert added.status_code == 302 and version(app) == before
    publish(admin)
    assert version(app) == before + 1
    call = twilio.call()
    call.dial()
    assert "For parks, press 4." in call.press("1").said
    assert "If you support parks" in call.press("4").said
    with app.app_context():
        assert db.session.scalar(select(AuditEntry.target).where(AuditEntry.action == "topic_add")) == "topic parks"


def test_general_topic_cannot_be_switched_off(app, sign_in):
    admin = sign_in("admin")
    admin.get("/admin/topics")
    general = topic(app, "general")
    response = admin.post(f"/admin/topics/{general.slug}", topic_form(general, enabled=""))
    assert response.status_code == 400 and topic(app, "general").enabled


def test_editing_the_wording_keeps_placeholders(app, sign_in, twilio):
    admin = sign_in("admin")
    page = admin.get("/admin/topics").get_data(as_text=True)
    assert "Thank you for calling the public comment line." in page
    with app.app_context():
        wording = dict(db.session.get(LineSettings, 1).wording["en-US"])
    broken = admin.post("/admin/wording/en-US", {**wording, "topic_option": "Press {digit}."})
    assert broken.status_code == 400 and "{digit}, {topic}" in broken.get_data(as_text=True)
    greeting = "Welcome to the city's comment line. This call is recorded."
    assert admin.post("/admin/wording/en-US", {**wording, "greeting": greeting}).status_code == 302
    publish(admin)
    assert greeting in twilio.call().dial().said
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "wording_edit"))
        assert entry.detail["changes"]["greeting"]["after"] == greeting


def test_admins_edit_the_call_back_and_block_list_wording_too(app, sign_in, twilio):
    """Every line callers can hear is on the wording form, those the ZIP step, the call-back
    offer and the block list add included."""
    admin = sign_in("admin")
    page = admin.get("/admin/topics").get_data(as_text=True)
    for key in ("zip_prompt", "zip_retry", "callback_offer", "callback_taken", "blocked"):
        assert f'name="{key}"' in page
    with app.app_context():
        wording = dict(db.session.get(LineSettings, 1).wording["en-US"])
    assert wording["blocked"] == "This line cannot take your call. Goodbye."
    turned_away = "The comment line cannot take calls from this number. Goodbye."
    assert admin.post("/admin/wording/en-US", {**wording, "blocked": turned_away}).status_code == 302
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "wording_edit")).one()
        assert list(entry.detail["changes"]) == ["blocked"]  # the rest, sent as shown, is unchanged
    publish(admin)
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "+15035550188", "reason": "a test"}).status_code == 302
    assert turned_away in twilio.call(From="+15035550188").dial().said


# --- the audit log page -----------------------------------------------------------------------


def test_audit_log_page_lists_and_filters(app, sign_in, twilio):
    _, _, reference = leave_comment(twilio, text="hello")
    staff_client = sign_in("staff")
    staff_client.get("/inbox")
    staff_client.post("/inbox/review", {"ref": reference})
    admin = sign_in("admin")
    page = admin.get("/admin/audit").get_data(as_text=True)
    assert "staff@example.org" in page and f"comment {reference}" in page and ">review<" in page
    only = admin.get("/admin/audit?action=review").get_data(as_text=True)
    assert f"comment {reference}" in only and ">sign_in<" not in only
    by_target = admin.get(f"/admin/audit?target=comment+{reference}").get_data(as_text=True)
    assert ">review<" in by_target


def test_topics_page_before_the_script_is_loaded(app, sign_in):
    admin = sign_in("admin")
    with app.app_context():
        db.session.execute(db.text("DELETE FROM line_settings"))
        db.session.commit()
    response = admin.get("/admin/topics")
    assert response.status_code == 409 and "flask line load" in response.get_data(as_text=True)
