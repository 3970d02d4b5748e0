"""The review of the console's counts page: its table adds up (calls that chose at least one
topic, calls that chose none and blocked calls make all the calls; the topic rows may overlap),
its CSV carries what the page shows (the rows, then each row's flagged calls and call-backs,
named as the API's CSV names them), and `district` is refused as the API refuses it, whatever
`show` is, on the page, its CSV and its refresh (and on the inbox, a line with no district).

Calls are played by the simulated caller through the line's signed webhooks; the block list is
filled from its console page; the budget offers call-backs as tests/test_flags.py sets it to."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace

from ivr.caller import Phone, Script, Take
from ivr.menu import ANOTHER_TOPIC_KEY, END_CALL_KEY
from tests.console_support import leave_comment

from .conftest import CALLER, LINE
from .test_districts import AFTER_LANGUAGE_CALLS, DISTRICT, plays, set_line
from .test_flags import offer_callbacks

BLOCKED_NUMBER = "+15035550166"
ANN, BEN, CAY = "+15035550171", "+15035550172", "+15035550173"
TABLE_COLUMNS = ["topic", "name", "calls", "callers", "comments", "support", "oppose", "other"]
VOICES_COLUMNS = [*TABLE_COLUMNS[:5], "per_caller_support", "per_caller_oppose", "per_caller_other"]
TWO_DISTRICTS = {"mayor": ["97201", "97202", "97299"], "commissioner-1": ["97201"]}
BAD_DISTRICTS = ["zzz", "nope", "\x00", "a\x00b", "may\x01or", "x" * 65]


def table(page) -> dict[str, list[str]]:
    """The counts table as shown: row key (topic slug, "(routed)", "(none)", "(blocked)",
    "(all)") -> the cells after the name."""
    rows = {}
    for key, cells in re.findall(
        r'<tr class="[^"]*" data-topic="([^"]+)">(.*?)</tr>', page.get_data(as_text=True), re.S
    ):
        rows[key] = re.findall(r'<td class="num">([^<]*)</td>', cells)
    return rows


def flags_table(page) -> dict[str, list[str]]:
    """The second table, "Flagged calls and call-backs": key -> [calls, flagged, call-backs]."""
    body = page.get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-flags-topic="([^"]+)"><th scope="row">[^<]*</th>(.*?)</tr>', body, re.S))
    return {key: re.findall(r'<td class="num">([^<]*)</td>', cells) for key, cells in rows.items()}


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def block_from_the_console(admin, number: str) -> None:
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": number, "reason": "the review's flood"}).status_code == 302


def play_the_reviewers_day(app, sign_in, twilio) -> None:
    """Two calls from a blocked number, one call that comments on the budget then on transit,
    one on the budget that asks for a call back, one short (flagged) comment on housing and
    one call that chooses nothing."""
    block_from_the_console(sign_in("admin"), BLOCKED_NUMBER)
    for _ in range(2):
        assert twilio.play(Script(["1", "1", "1"], [Take()]), Phone(BLOCKED_NUMBER), blocked=True).blocked
    two_topics = ["1", "1", "1", ANOTHER_TOPIC_KEY, "2", "2", END_CALL_KEY]  # budget: support; transit: oppose
    twilio.play(Script(two_topics, [Take(seconds=9), Take(seconds=9)]), replace(CALLER, number=ANN))
    offer_callbacks(app)  # the budget offers a call back
    line = replace(LINE, callbacks=frozenset({"budget"}))
    twilio.play(Script(["1", "1", "1", "1", "2"], [Take(seconds=9)]), replace(CALLER, number=BEN), line=line)
    leave_comment(twilio, "3", None, seconds=1, From=CAY)  # housing (no position): one second, flagged
    nothing = twilio.call(From="+15035550174")
    nothing.dial()
    nothing.press("1")
    nothing.hang_up()


# --- fault 1: the table adds up -----------------------------------------------------------------


def test_the_counts_table_adds_up_to_all_calls_with_the_blocked_ones(app, sign_in, twilio, api):
    play_the_reviewers_day(app, sign_in, twilio)
    page = sign_in("staff").get("/counts")
    assert page.status_code == 200
    rows = table(page)
    #                           calls callers comments support oppose other
    assert rows["budget"] == ["2", "2", "2", "2", "0", "0"]
    assert rows["transit"] == ["1", "1", "1", "0", "1", "0"]
    assert rows["housing"] == ["1", "1", "1", "0", "0", "0"]
    assert rows["(routed)"] == ["3", "", "", "", "", ""]  # Ann's call once, though it chose two topics
    assert rows["(none)"] == ["1", "", "", "", "", ""]
    assert rows["(blocked)"] == ["2", "", "", "", "", ""]
    assert rows["(all)"] == ["6", "5", "4", "2", "1", "0"]
    assert list(rows)[-4:] == ["(routed)", "(none)", "(blocked)", "(all)"]
    # The rows that add up do; the topic rows do not (Ann's call is under the budget and transit).
    partition = sum(int(rows[key][0]) for key in ("(routed)", "(none)", "(blocked)"))
    assert partition == int(rows["(all)"][0])
    topic_rows = sum(int(cells[0]) for key, cells in rows.items() if not key.startswith("("))
    assert topic_rows == int(rows["(routed)"][0]) + 1
    body = page.get_data(as_text=True)
    assert "Blocked calls" in body and "add up to “All calls”" in body and "counts once under each" in body
    # The API is what it was, and says the same.
    counts = api("/api/v1/counts").get_json()
    assert set(counts) == {"calls", "unrouted", "topics", "flagged", "blocked"}
    assert (counts["calls"], counts["unrouted"], counts["blocked"]) == (6, 1, 2)


def test_the_table_adds_up_inside_a_district_and_with_one_voice_per_caller(app, sign_in, twilio, api):
    line = set_line(app, "after_language", {"district": DISTRICT})
    plays(twilio, line, AFTER_LANGUAGE_CALLS)
    staff = sign_in("staff")
    for query, api_params in (("show=inside", {"district": "district"}), ("show=voices", {})):
        rows = table(staff.get(f"/counts?{query}"))
        api_counts = api("/api/v1/counts", **api_params).get_json()
        assert rows["(all)"][0] == str(api_counts["calls"])
        assert rows["(none)"][0] == str(api_counts["unrouted"]) and rows["(blocked)"][0] == str(api_counts["blocked"])
        parts = sum(int(rows[key][0]) for key in ("(routed)", "(none)", "(blocked)"))
        assert parts == api_counts["calls"], (query, rows)


# --- fault 2: the CSV carries what the page shows ------------------------------------------------


def test_the_counts_csv_has_the_rows_shown_then_flagged_and_callbacks(app, sign_in, twilio, api):
    play_the_reviewers_day(app, sign_in, twilio)
    staff = sign_in("staff")
    api_rows = {row[0]: row for row in csv_rows(api("/api/v1/counts.csv"))[1:]}
    api_header = csv_rows(api("/api/v1/counts.csv"))[0]
    for query, columns in (("", TABLE_COLUMNS), ("?show=voices", VOICES_COLUMNS)):
        page = staff.get(f"/counts{query}")
        link = re.search(r'href="(/counts\.csv[^"]*)"', page.get_data(as_text=True)).group(1).replace("&amp;", "&")
        rows = csv_rows(staff.get(link))
        assert rows[0] == [*columns, "flagged", "callbacks"]  # the old columns first, then the API's names
        by_key = {row[0]: row for row in rows[1:]}
        assert {key: row[2:-2] for key, row in by_key.items()} == table(page)  # the rows shown
        assert list(by_key) == list(table(page))  # in the order shown
        second = flags_table(page)
        for key, row in by_key.items():
            if key in api_rows:  # a topic: as the second table and the API's CSV have it
                flagged, callbacks = api_header.index("flagged"), api_header.index("callbacks")
                assert row[-2:] == second[key][1:] == [api_rows[key][flagged], api_rows[key][callbacks]]
        assert by_key["budget"][-2:] == ["0", "1"] and by_key["housing"][-2:] == ["1", "0"]
        assert by_key["(all)"][-2:] == second["(all)"][1:] == ["1", "1"]
        assert by_key["(blocked)"][2] == second["(blocked)"][0] == "2" and by_key["(blocked)"][-2:] == ["", ""]
        assert by_key["(routed)"][-2:] == by_key["(none)"][-2:] == ["", ""]


def test_the_counts_csv_inside_the_district_is_the_rows_shown(app, sign_in, twilio, api):
    line = set_line(app, "after_language", {"district": DISTRICT})
    plays(twilio, line, AFTER_LANGUAGE_CALLS)
    staff = sign_in("staff")
    page = staff.get("/counts?show=inside&district=district")
    rows = csv_rows(staff.get("/counts.csv?show=inside&district=district"))
    assert rows[0] == [*TABLE_COLUMNS, "flagged", "callbacks"]
    assert {row[0]: row[2:-2] for row in rows[1:]} == table(page)
    api_csv = csv_rows(api("/api/v1/counts.csv", district="district"))
    flagged, callbacks = api_csv[0].index("flagged"), api_csv[0].index("callbacks")
    inside = {row[0]: [row[flagged], row[callbacks]] for row in api_csv[1:]}
    assert {row[0]: row[-2:] for row in rows[1:] if row[0] in inside} == inside


# --- fault 3: `district` is refused as the API refuses it ----------------------------------------


def test_a_district_the_line_does_not_have_is_400_whatever_show_is(app, sign_in, api):
    set_line(app, "after_language", TWO_DISTRICTS)
    staff = sign_in("staff")
    for value in BAD_DISTRICTS:
        assert api("/api/v1/counts", district=value).status_code == 400, value  # the rule followed
        for show in ("", "all", "inside", "voices"):
            for path, extra in (("/counts", {}), ("/counts", {"partial": "1"}), ("/counts.csv", {})):
                response = staff.get(path, query_string={"district": value, "show": show, **extra})
                body = response.get_data(as_text=True)
                assert response.status_code == 400, (path, show, value, response.status_code)
                assert "commissioner-1, mayor" in body and "Traceback" not in body, (path, show, value, body[:300])
    unknown = staff.get("/counts", query_string={"district": "zzz"}).get_data(as_text=True)
    assert "The line has no district &#39;zzz&#39; (its districts: commissioner-1, mayor)." in unknown
    control = staff.get("/counts.csv", query_string={"district": "\x00"}).get_data(as_text=True)
    assert "control character" in control and "commissioner-1, mayor" in control


def test_a_district_the_line_has_is_taken_whatever_show_is(app, sign_in):
    set_line(app, "after_language", TWO_DISTRICTS)
    staff = sign_in("staff")
    for show in ("", "all", "inside", "voices"):
        for value in ("mayor", " commissioner-1 ", "", " "):
            for path in ("/counts", "/counts.csv"):
                response = staff.get(path, query_string={"district": value, "show": show})
                assert response.status_code == 200, (path, show, value, response.get_data(as_text=True)[:300])
    inside = staff.get("/counts?show=inside&district=commissioner-1").get_data(as_text=True)
    assert "Inside commissioner-1" in inside


def test_a_line_with_no_district_refuses_any_district(app, sign_in, api):
    staff = sign_in("staff")
    assert api("/api/v1/counts", district="district").status_code == 400  # the API's rule
    for value in ("district", "zzz", "\x00"):
        for show in ("", "all", "voices"):
            for path in ("/counts", "/counts.csv"):
                response = staff.get(path, query_string={"district": value, "show": show})
                body = response.get_data(as_text=True)
                assert response.status_code == 400, (path, show, value)
                assert "The line has no district" in body, body[:300]
    for value in ("", " "):
        assert staff.get("/counts", query_string={"district": value}).status_code == 200


def test_the_inbox_refuses_a_district_filter_it_cannot_use(app, sign_in):
    staff = sign_in("staff")
    nowhere = staff.get("/inbox?district=inside")
    assert nowhere.status_code == 400 and "The line has no district" in nowhere.get_data(as_text=True)
    assert staff.get("/inbox?district=").status_code == 200
    set_line(app, "after_language", TWO_DISTRICTS)
    for value in ("zzz", "\x00", "mayor"):
        response = staff.get("/inbox", query_string={"district": value})
        assert response.status_code == 400 and "mayor:inside" in response.get_data(as_text=True), value
    assert staff.get("/inbox?district=mayor:inside").status_code == 200
