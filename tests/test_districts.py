"""The ZIP code step, districts and one voice per caller, played as Twilio plays calls: a ZIP
code entered, skipped, mistyped then entered, mistyped twice, at either place in the call;
the counts split by district and counted once per caller, exactly, for calendar windows and
any other, on every database (and with `CALLER_NUMBERS=none`, null, and said why)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from ivr.caller import LineFacts, Phone, Reply, Script, Take, TwilioAccount
from ivr.menu import NO_KEY
from ivr.oracle import compare_counts, expected_counts
from models import AuditEntry, Call, LineSettings, db
from models.line import bump_version, line_script
from models.tally import tally

from .conftest import CALLER

DISTRICT = ["97201", "97202", "97204"]
ANN, BEN, CAY = "+15035550111", "+15035550112", "+15035550113"


def set_line(app, zip_step: str, districts: dict) -> LineFacts:
    """Set where the line asks for the ZIP code and its districts, as `flask line sync` does
    from `config/line.yaml`; what a caller can know of the line now."""
    with app.app_context():
        settings = db.session.get(LineSettings, 1)
        settings.zip_step, settings.districts = zip_step, districts
        bump_version(db.session)
        db.session.commit()
        line_script(app).forget()
        return LineFacts.from_script(line_script(app).get(db.session))


def slugs(line: LineFacts) -> tuple[str, ...]:
    return line.slugs


def caller(number: str) -> Phone:
    return Phone(number, CALLER.city, CALLER.state, CALLER.zip, CALLER.country)


def plays(twilio, line: LineFacts, calls: list[tuple[str, list[str]]]):
    """Play each (number, keys) in turn: the keys at each menu, a 12-second comment at each
    recording prompt; then the call ends."""
    return [
        twilio.play(Script(keys, [Take(12)], more_takes=None, then="2"), caller(number), line=line, keep_heard=True)
        for number, keys in calls
    ]


AFTER_LANGUAGE_CALLS = [
    (ANN, ["1", "97201", "1", "1", "2"]),  # English; ZIP inside; budget; support; end
    (BEN, ["1", "#", "1", "2", "2"]),  # pound: skipped, unknown; budget; oppose
    (CAY, ["1", "972#", "97299", "2", "1", "2"]),  # too short, then a ZIP outside; transit; support
    (BEN, ["1", "12#", "1*3", "1", "3", "2"]),  # mistyped twice: unknown; budget; other
    (CAY, ["1", NO_KEY, "3", "2"]),  # silence: skipped; housing (no position)
    (ANN, ["1", "97202", "1", "2", "2"]),  # Ann again, inside: now oppose
]


def test_zip_code_after_the_language_entered_skipped_mistyped(app, twilio, api):
    line = set_line(app, "after_language", {"district": DISTRICT})
    played = plays(twilio, line, AFTER_LANGUAGE_CALLS)

    assert [p.entered_zip for p in played] == ["97201", None, "97299", None, None, "97202"]
    heard = played[2].heard
    prompt = "Please enter your five-digit ZIP code, or press pound to skip."
    assert prompt in heard and heard.index(prompt) < heard.index("[presses 972#]")
    assert any("not a five-digit ZIP code" in line for line in heard)
    assert "[presses 1*3]" in played[3].heard and played[3].topics == {"budget": "other"}
    with app.app_context():
        stored = dict(db.session.execute(select(Call.call_sid, Call.entered_zip)).all())
        from_zips = set(db.session.scalars(select(Call.from_zip)))
    assert stored == {p.call_sid: p.entered_zip for p in played}
    assert from_zips == {"97201"}  # Twilio's caller ID: kept apart, never a constituent

    districts = {"district": DISTRICT}
    body = api("/api/v1/counts").get_json()
    assert compare_counts(expected_counts(played, slugs(line), districts=districts, voices=True), body) == []
    budget = next(t for t in body["topics"] if t["slug"] == "budget")
    assert budget["per_caller"] == {"support": 0, "oppose": 1, "other": 1}  # Ann's latest, Ben's latest
    assert budget["stance"] == {"support": 1, "oppose": 2, "other": 1}
    assert budget["district"] == {
        "inside": {"calls": 2, "support": 1, "oppose": 1, "other": 0},
        "outside": {"calls": 0, "support": 0, "oppose": 0, "other": 0},
        "unknown": {"calls": 2, "support": 0, "oppose": 1, "other": 1},
    }

    inside = api("/api/v1/counts", district="district").get_json()
    want = expected_counts(played, slugs(line), districts=districts, inside=DISTRICT, voices=True)
    assert compare_counts(want, inside) == []
    assert inside["calls"] == 2 and inside["unrouted"] == 0


def test_zip_code_after_the_first_topic(app, twilio, api):
    line = set_line(app, "after_topic", {"district": DISTRICT})
    played = plays(
        twilio,
        line,
        [
            (ANN, ["1", "1", "97204", "1", "1", "2", "2"]),  # budget, ZIP, support; another: transit, oppose
            (BEN, ["1", "3", "#", "2"]),  # housing, skipped
            (CAY, ["1", "2", "1#", "00000", "1", "2"]),  # transit, mistyped twice, support
        ],
    )
    assert [p.entered_zip for p in played] == ["97204", None, None]
    assert played[0].topics == {"budget": "support", "transit": "oppose"}
    heard = played[0].heard
    # Asked once, after the call's first topic and before its position; not after the second.
    assert heard.count("Please enter your five-digit ZIP code, or press pound to skip.") == 1
    assert heard.index("[presses 97204]") < heard.index("[presses 1]", heard.index("[presses 97204]"))
    body = api("/api/v1/counts").get_json()
    districts = {"district": DISTRICT}
    assert compare_counts(expected_counts(played, slugs(line), districts=districts, voices=True), body) == []
    transit = next(t for t in body["topics"] if t["slug"] == "transit")
    assert transit["district"]["inside"] == {"calls": 1, "support": 0, "oppose": 1, "other": 0}
    assert transit["district"]["unknown"] == {"calls": 1, "support": 1, "oppose": 0, "other": 0}


def test_every_calendar_window_and_any_other_counts_one_voice_per_caller(app, twilio, api):
    line = set_line(app, "after_language", {"district": DISTRICT})
    played = plays(twilio, line, AFTER_LANGUAGE_CALLS)
    want = expected_counts(played, slugs(line), districts={"district": DISTRICT}, voices=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    today = now.date()
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    after_month = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    windows = [
        {},
        {"since": today.isoformat(), "until": (today + timedelta(days=1)).isoformat()},
        {"since": monday.isoformat(), "until": (monday + timedelta(days=7)).isoformat()},
        {"since": first.isoformat(), "until": after_month.isoformat()},
        {"since": (now - timedelta(hours=2)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()},
        {"since": (today - timedelta(days=3)).isoformat(), "until": (now + timedelta(minutes=5)).isoformat()},
        {"since": (now - timedelta(days=40)).isoformat()},
        {"until": (now + timedelta(days=1)).isoformat()},
    ]
    for window in windows:
        body = api("/api/v1/counts", **window).get_json()
        assert compare_counts(want, body) == [], window
    empty = api("/api/v1/counts", since="2020-01-01", until="2020-02-01").get_json()
    assert all(t["per_caller"] == {"support": 0, "oppose": 0, "other": 0} for t in empty["topics"])


def test_several_districts_are_keyed_by_name_in_the_json_and_the_csv(app, twilio, api):
    districts = {"mayor": ["97201", "97202", "97299"], "commissioner-1": ["97201"]}
    line = set_line(app, "after_language", districts)
    played = plays(twilio, line, AFTER_LANGUAGE_CALLS[:3])
    body = api("/api/v1/counts").get_json()
    assert compare_counts(expected_counts(played, slugs(line), districts=districts, voices=True), body) == []
    transit = next(t for t in body["topics"] if t["slug"] == "transit")
    assert set(transit["district"]) == {"mayor", "commissioner-1"}
    assert transit["district"]["mayor"]["inside"]["calls"] == 1
    assert transit["district"]["commissioner-1"]["outside"]["calls"] == 1

    csv = api("/api/v1/counts.csv").get_data(as_text=True).splitlines()
    header = csv[0].split(",")
    assert header[:9] == ["slug", "digit", "name", "calls", "callers", "comments", "support", "oppose", "other"]
    assert header[9:14] == ["flagged", "callbacks", "per_caller_support", "per_caller_oppose", "per_caller_other"]
    assert header[14:18] == ["commissioner-1_inside_calls", "commissioner-1_inside_support"] + [
        "commissioner-1_inside_oppose",
        "commissioner-1_inside_other",
    ]
    assert "mayor_unknown_other" in header and len(header) == 14 + 2 * 12
    row = next(r.split(",") for r in csv[1:] if r.startswith("transit,"))
    assert dict(zip(header, row, strict=True))["mayor_inside_support"] == "1"

    line_info = api("/api/v1/line").get_json()
    assert line_info["asks_zip"] is True and line_info["zip_step"] == "after_language"
    assert line_info["districts"] == [
        {"name": "commissioner-1", "zips": ["97201"]},
        {"name": "mayor", "zips": ["97201", "97202", "97299"]},
    ]
    wrong = api("/api/v1/counts", district="council")
    assert wrong.status_code == 400
    assert "no district 'council'" in wrong.get_json()["error"] and "mayor" in wrong.get_json()["error"]


def test_a_zip_code_yaml_read_as_a_number_is_refused_with_how_to_write_it():
    import yaml

    from models.line import ScriptError, districts_of

    assert districts_of(yaml.safe_load("[97201, '02134']")) == {"district": ["02134", "97201"]}
    with pytest.raises(ScriptError, match=r"1116 is not a five-digit ZIP code \(write ZIP codes in quotes"):
        districts_of(yaml.safe_load("[97201, 02134]"))  # YAML 1.1: a leading 0 is octal
    with pytest.raises(ScriptError, match=r"9720 is not a five-digit ZIP code$"):
        districts_of(["9720"])


def test_a_line_without_districts_or_a_zip_step(app, twilio, api):
    with app.app_context():
        line = LineFacts.from_script(line_script(app).get(db.session))
    assert line.zip_step == "off"
    played = plays(twilio, line, [(ANN, ["1", "1", "1", "2"]), (ANN, ["1", "1", "3", "2"])])
    assert [p.entered_zip for p in played] == [None, None]
    assert not any("ZIP" in heard for p in played for heard in p.heard)
    body = api("/api/v1/counts").get_json()
    assert compare_counts(expected_counts(played, slugs(line), voices=True), body) == []
    assert all(t["district"] is None for t in body["topics"])
    budget = next(t for t in body["topics"] if t["slug"] == "budget")
    assert budget["per_caller"] == {"support": 0, "oppose": 0, "other": 1}
    assert api("/api/v1/line").get_json()["asks_zip"] is False
    assert api("/api/v1/line").get_json()["districts"] == []
    assert api("/api/v1/counts", district="district").status_code == 400


@pytest.fixture
def numbers_not_kept(settings) -> None:
    settings["CALLER_NUMBERS"] = "none"


def test_without_numbers_one_voice_per_caller_is_null(numbers_not_kept, app, twilio, api):
    line = set_line(app, "after_language", {"district": DISTRICT})
    played = plays(twilio, line, AFTER_LANGUAGE_CALLS[:2])
    body = api("/api/v1/counts").get_json()
    want = expected_counts(played, slugs(line), callers_known=False, districts={"district": DISTRICT}, voices=True)
    assert compare_counts(want, body) == []
    assert all(t["per_caller"] is None for t in body["topics"])
    csv = api("/api/v1/counts.csv").get_data(as_text=True).splitlines()
    assert csv[1].split(",")[11:14] == ["", "", ""]  # after flagged and callbacks


def test_a_twilio_reply_to_the_zip_code_is_five_keys_ended_by_pound(app, twilio):
    set_line(app, "after_language", {})
    call = twilio.call()
    call.dial()
    reply: Reply = call.press("1")
    gather = reply.gather
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == ("5", "#")
    assert reply.redirect == gather.get("action")
    again = call.press("4")  # one key, then the timeout: Twilio sends what was pressed
    assert "not a five-digit ZIP code" in again.said and again.menu_path() == "zip"
    onward = call.press("9")  # still not a ZIP code: the call goes on, without one
    assert onward.menu_path() == "topic"
    with app.app_context():
        assert db.session.get(Call, call.sid).entered_zip is None
        assert tally(db.session).calls == 1


def test_star_repeats_the_zip_prompt_and_a_star_inside_an_entry_is_a_miss(app, twilio):
    set_line(app, "after_language", {})
    call = twilio.call()
    call.dial()
    first = call.press("1")
    for _ in range(3):  # star alone: the prompt again, as on every menu, not a miss
        repeated = call.press("*")
        assert repeated.menu_path() == "zip" and "not a five-digit ZIP code" not in repeated.said
        assert repeated.said == first.said
    again = call.press("12*45")
    assert "not a five-digit ZIP code" in again.said and again.menu_path() == "zip"
    assert call.press("1*").menu_path() == "topic"  # a second bad entry: on without one


# --- the console ----------------------------------------------------------------------------------


def counts_table(page) -> dict[str, list[str]]:
    """The counts table as shown: topic slug -> the cells after the name."""
    body = page.get_data(as_text=True)
    return {
        slug: re.findall(r'<td class="num">([^<]*)</td>', cells)
        for slug, cells in re.findall(r'<tr class="[^"]*" data-topic="([^"]+)">(.*?)</tr>', body, re.S)
    }


def test_admins_set_the_zip_step_in_the_console_and_it_is_audited(app, sign_in, twilio):
    staff = sign_in("staff")
    assert staff.post("/admin/line", {"zip_step": "after_topic"}).status_code == 403
    admin = sign_in("admin")
    page = admin.get("/admin/topics").get_data(as_text=True)
    assert "The caller&#39;s ZIP code" in page or "The caller's ZIP code" in page
    assert admin.post("/admin/line", {"zip_step": "sometimes"}).status_code == 400
    assert admin.post("/admin/line", {"zip_step": "after_topic"}).status_code == 302
    with app.app_context():  # in the draft: callers hear it once it is published
        assert db.session.get(LineSettings, 1).zip_step == "off"
        assert db.session.get(LineSettings, 1).draft["zip_step"] == "after_topic"
    assert "zip step" in admin.get("/admin/script").get_data(as_text=True)
    assert admin.post("/admin/script/publish").status_code == 302
    with app.app_context():
        assert db.session.get(LineSettings, 1).zip_step == "after_topic"
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "line_edit"))
        assert entry is not None and entry.detail["before"] == "off" and entry.detail["after"] == "after_topic"
    call = twilio.call()
    call.dial()
    call.press("1")
    assert call.press("1").menu_path() == "zip"  # the next call hears it


def test_the_counts_page_shows_all_calls_inside_the_district_or_one_voice_per_caller(app, sign_in, twilio):
    line = set_line(app, "after_language", {"district": DISTRICT})
    plays(twilio, line, AFTER_LANGUAGE_CALLS)
    staff = sign_in("staff")
    everything = counts_table(staff.get("/counts"))
    assert everything["budget"][:1] + everything["budget"][3:] == ["4", "1", "2", "1"]
    inside = staff.get("/counts?show=inside")
    assert "Inside district" in inside.get_data(as_text=True)
    rows = counts_table(inside)
    assert rows["budget"] == ["2", "1", "2", "1", "1", "0"]  # Ann twice: calls, callers, comments, positions
    assert rows["(all)"][:2] == ["2", "1"]
    voices = counts_table(staff.get("/counts?show=voices"))
    assert voices["budget"][3:] == ["0", "1", "1"]  # Ann's latest (oppose), Ben's (other)
    csv = staff.get("/counts.csv?show=voices").get_data(as_text=True).splitlines()
    assert csv[0].endswith("per_caller_support,per_caller_oppose,per_caller_other,flagged,callbacks")
    assert staff.get("/counts?show=everything").status_code == 400
    assert staff.get("/counts?show=inside&district=council").status_code == 400


def test_the_counts_page_says_why_there_is_no_voice_per_caller(numbers_not_kept, app, sign_in, twilio):
    line = set_line(app, "after_language", {"district": DISTRICT})
    plays(twilio, line, AFTER_LANGUAGE_CALLS[:2])
    page = sign_in("staff").get("/counts?show=voices")
    assert "CALLER_NUMBERS=none" in page.get_data(as_text=True)
    assert counts_table(page)["budget"][3:] == ["", "", ""]


def test_the_inbox_filters_on_the_district(app, sign_in, twilio):
    line = set_line(app, "after_language", {"district": DISTRICT})
    played = plays(twilio, line, AFTER_LANGUAGE_CALLS)
    staff = sign_in("staff")

    def shown(**params) -> set[str]:
        page = staff.get("/inbox", query_string=params)
        assert page.status_code == 200
        return set(re.findall(r'class="ref"[^>]*>#(\d+)<', page.get_data(as_text=True)))

    def references(*indices: int) -> set[str]:
        return {ref for i in indices for refs in played[i].references.values() for ref in refs}

    assert shown(district="inside") == references(0, 5)
    assert shown(district="outside") == references(2)
    assert shown(district="unknown") == references(1, 3, 4)
    assert shown() == references(0, 1, 2, 3, 4, 5)
    assert staff.get("/inbox?district=nowhere").status_code == 400
    assert "ZIP 97299" in staff.get("/inbox?district=outside").get_data(as_text=True)
    reference = next(iter(references(2)))
    assert "ZIP code entered</dt><dd>97299" in staff.get(f"/comments/{reference}").get_data(as_text=True)


def test_flask_line_call_enters_skips_and_mistypes_a_zip_code(app, runner, api):
    set_line(app, "after_language", {"district": DISTRICT})
    entered = runner.invoke(args=["line", "call", "--press", "1", "972#", "97204", "2", "1"])
    assert entered.exit_code == 0, entered.output
    assert "[presses 972#]" in entered.output and "ZIP code entered: 97204." in entered.output
    skipped = runner.invoke(args=["line", "call", "--press", "1", "#", "2", "2"])
    assert "ZIP code entered: none" in skipped.output
    wrong = runner.invoke(args=["line", "call", "--press", "1", "972045"])
    assert wrong.exit_code != 0 and "up to five keys" in wrong.output
    transit = next(t for t in api("/api/v1/counts").get_json()["topics"] if t["slug"] == "transit")
    assert transit["district"]["inside"]["support"] == 1 and transit["district"]["unknown"]["oppose"] == 1


@pytest.mark.parametrize("zip_step", ["after_language", "after_topic"])
def test_the_benchmarks_caller_and_ceiling_take_the_zip_step(app, monkeypatch, tmp_path, zip_step):
    """The benchmark's random callers enter, mistype and skip ZIP codes, and its ceiling
    answers them as the line does (bar the reference number)."""
    import random

    import yaml

    from bench.ceiling import create_app as create_ceiling
    from bench.driver import RandomCaller
    from ivr.caller import CallPlayer, Response, SimulatedCall, play

    script = yaml.safe_load(open(app.config["LINE_CONFIG"], encoding="utf-8"))
    (tmp_path / "line.yaml").write_text(yaml.safe_dump({**script, "zip_step": zip_step}), encoding="utf-8")
    monkeypatch.setenv("LINE_CONFIG", str(tmp_path / "line.yaml"))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", app.config["TWILIO_AUTH_TOKEN"])
    line = set_line(app, zip_step, {})
    ceiling = create_ceiling()

    def sender(client):
        def send(request):
            response = client.post(request.url, data=request.params, headers=request.headers())
            return Response(response.status_code, response.get_data(as_text=True))

        return send

    account = TwilioAccount(app.config["TWILIO_ACCOUNT_SID"], app.config["TWILIO_AUTH_TOKEN"])
    zips = []
    for seed in range(12):
        heard = []
        for target in (app, ceiling):
            call = SimulatedCall(account, "http://localhost", caller(ANN), call_sid=f"CA{seed:032x}")
            mind = RandomCaller(random.Random(seed), line)
            played = play(CallPlayer(call, line, mind, keep_heard=True), sender(target.test_client()))
            heard.append([re.sub(r"\d(, \d)+", "N", said) for said in played.heard])
        zips.append(played.entered_zip)
        assert heard[0] == heard[1]
    assert any(zips) and None in zips
