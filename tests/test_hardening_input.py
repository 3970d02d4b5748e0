"""No parameter a person can type makes the console or the API answer 500: out-of-range dates,
windows that end before they start, huge or negative or non-numeric cursors and ids, text the
database cannot take. Each gets a 400 (or 404) saying what is wrong.

The property test throws arbitrary text and edge values at every GET parameter of every page,
signed in, on SQLite and PostgreSQL; the other tests pin the cases the review found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from models import User, db
from staff.params import ROW_ID_IN_PATH
from tests.console_support import leave_comment, wav_bytes

# Every GET page of the console, the API and the probes: its path (with `{reference}` or `{name}`
# for its path parameter) and the query parameters it reads.
PAGES: dict[str, tuple[str, ...]] = {
    "/api/v1/line": (),
    "/api/v1/counts": ("since", "until", "district"),
    "/api/v1/counts.csv": ("since", "until", "district"),
    "/api/v1/comments": ("topic", "since", "until", "limit", "cursor"),
    "/": (),
    "/inbox": (
        "topic",
        "stance",
        "language",
        "district",
        "from",
        "to",
        "reviewed",
        "transcript",
        "q",
        "before",
        "after",
        "flag",
        "callback",
        "tests",
    ),
    "/comments/{reference}": ("back",),
    "/audio/{reference}": (),
    "/counts": ("from", "to", "by", "every", "partial", "show", "district"),
    "/counts.csv": ("from", "to", "by", "show", "district"),
    "/export": ("from", "to"),
    "/admin/users": (),
    "/admin/topics": (),
    "/admin/script": (),
    "/try": ("script",),
    "/admin/audit": ("action", "who", "target", "before"),
    "/admin/holds": (),
    "/admin/blocked": (),
    "/callbacks": ("done",),
    "/admin/prompts": (),
    "/admin/prompts/takes/{name}.wav": (),
    "/prompts/{name}.wav": (),
    "/sign-in": ("next",),
    "/reset/{name}": (),
    "/console-static/{name}": (),
    "/static/{name}": (),
    "/livez": (),
    "/healthz": (),
    "/metrics": (),
    "/public": ("lang",),
    "/public/counts.json": ("since", "until"),
    "/public/counts.csv": ("since", "until"),
    "/public/check": ("ref", "lang"),
    "/public/tally-key": (),
    "/public/receipts": (),
    "/public/receipts/{name}": (),
    "/public/static/{name}": (),
    "/public/": (),  # any other public URL: the public part's 404
    "/public/{name}": (),
}

EDGE_VALUES = [
    "",
    " ",
    "0",
    "-1",
    "1",
    "²",
    "٣٤",
    "1.5",
    "1e9",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    "9" * 30,
    "9" * 5000,
    "0001-01-01",
    "0001-01-02",
    "0001-01-01T00:00-05:00",
    "0001-01-01T00:00+05:00",
    "0001-01-01T00:00",
    "9999-11-01",  # a Monday and the first of a month: a calendar week and month from it
    "9999-11-29",  # the last Monday there is a whole week after
    "9999-11-30",
    "9999-12-27",  # a Monday with no whole week after it in Python's calendar
    "9999-12-30",
    "9999-12-31",
    "9999-12-31T23:59+14:00",
    "9999-12-31T23:59-14:00",
    "9999-12-31T23:59:59.999999",
    "2026-11-30",
    "2026-11-30T14:00",
    "2026-02-30",
    "20261130",
    "2026-W48-1",
    "999999999999999999.1",
    "1.999999999999",
    "1." + "9" * 13,
    "\x00",
    "a\x00b",
    "RE\x00",
    "RE" + "f" * 32,
    "\x7f\n\t",
    "%",
    "'; --",
    "\\",
    "../../etc/passwd",
    "//example.org",
    "inside",  # `show` and `district` values a page takes (on a line without a district)
    "voices",
    "unknown",
    "district",
    "<script>",
    "ü" * 300,
    "x" * 10000,
    "hour",
    "day",
    "yes",
    "none",
]
RANGES = ["bytes=0-9", "bytes=-5", "bytes=5-", "bytes=999999999-", "bytes=9-0", "bytes=0-1,3-4", "items=0-1", "bytes=x"]

offsets = st.sampled_from(["", "Z", "+00:00", "-05:00", "+05:00", "+14:00", "-12:00", "+05:30"])
instants = st.tuples(st.datetimes(), offsets).map(lambda pair: pair[0].isoformat() + pair[1])
values = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(str),
    instants,
)


@st.composite
def requests_to_pages(draw) -> tuple[str, dict, dict]:
    """(path, query, headers) for one GET: a page, some of its parameters, maybe a Range."""
    path = draw(st.sampled_from(sorted(PAGES)))
    query = (
        draw(st.dictionaries(st.sampled_from(PAGES[path]), values, max_size=len(PAGES[path]))) if PAGES[path] else {}
    )
    if "{" in path:
        name = "reference" if "{reference}" in path else "name"
        path = path.replace("{" + name + "}", quote(draw(st.one_of(st.just("{real}"), values)) or "x", safe=""))
    headers = {"Range": draw(st.sampled_from(RANGES))} if path.startswith("/audio/") and draw(st.booleans()) else {}
    return path, query, headers


@pytest.fixture
def public_tally_on(settings):
    """The public tally switched on, with receipts signed (set before the app is made)."""
    from receipts.signing import new_private_key

    settings.update(PUBLIC_TALLY="on", TALLY_SIGNING_KEY=new_private_key(), PUBLIC_CHECKS_PER_ADDRESS="100000")


@pytest.fixture
def line(public_tally_on, media_server, app, sign_in, twilio, api_token):
    """A line with one comment (its audio at the Twilio stand-in), an admin signed in to the
    console, and a GET that sends the API's bearer token to /api/ paths."""
    _, sid, reference = leave_comment(twilio, text="The budget is fine.")
    media_server.audio[sid] = wav_bytes(0.2)
    admin = sign_in("admin")
    with app.app_context():  # and the call-back role, so that its page is thrown at too
        db.session.execute(update(User).values(callbacks=True))
        db.session.commit()

    def get(path: str, query: dict | None = None, headers: dict | None = None):
        path = path.replace("%7Breal%7D", reference).replace("{real}", reference)
        url = path + ("?" + urlencode(query) if query else "")
        if path.startswith("/api/"):
            headers = {**(headers or {}), "Authorization": f"Bearer {api_token}"}
        return admin.get(url, headers=headers or {})

    get.reference = reference
    return get


def test_every_get_page_is_in_the_property_test(app):
    """A new page must join PAGES, with its parameters, to be covered."""
    pages = {
        rule.rule.replace("<reference>", "{reference}")
        .replace("<token>", "{name}")
        .replace("<name>", "{name}")
        .replace("<path:filename>", "{name}")
        .replace("<path:path>", "{name}")
        .replace("<name>", "{name}")
        .replace(f"<{ROW_ID_IN_PATH}:take_id>", "{name}")
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.endpoint.startswith("twilio")
    }
    assert pages == set(PAGES)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(page_request=requests_to_pages())
@example(page_request=("/api/v1/counts", {"since": "0001-01-01T00:00+05:00"}, {}))
@example(page_request=("/api/v1/comments", {"cursor": "9" * 25}, {}))
@example(page_request=("/api/v1/comments", {"topic": "a\x00b", "limit": "²"}, {}))
@example(page_request=("/inbox", {"to": "9999-12-31", "before": "999999999999999999.1", "q": "a\x00"}, {}))
@example(page_request=("/comments/" + "9" * 30, {}, {}))
@example(page_request=("/audio/%C2%B2", {}, {}))
@example(page_request=("/counts", {"from": "9999-12-31", "every": "9" * 5000}, {}))
@example(page_request=("/counts", {"from": " "}, {}))
@example(page_request=("/admin/audit", {"before": "²", "who": "\x00"}, {}))
def test_no_parameter_gets_a_500(line, page_request):
    path, query, headers = page_request
    response = line(path, query, headers)
    body = response.get_data().decode("utf-8", "replace")
    assert response.status_code < 500, (path, query, headers, response.status_code, body[:500])
    assert "Traceback" not in body
    if path.startswith("/api/") and response.status_code >= 400:
        assert response.is_json and response.json["error"], body[:300]


# --- the cases the review found, one by one ------------------------------------------------------


def assert_400(response, *words: str) -> str:
    """The response is a 400 whose message holds `words`; its text."""
    body = response.get_data(as_text=True)
    assert response.status_code == 400, (response.status_code, body[:300])
    message = response.json["error"] if response.is_json else body
    for word in words:
        assert word in message, (word, message[:500])
    return message


CALENDAR_ENDS = [
    {"since": "0001-01-01T00:00-05:00"},
    {"since": "0001-01-01T00:00+05:00"},
    {"until": "9999-12-31T23:59+14:00"},
    {"until": "9999-12-31T23:59-14:00"},
    {"since": "9999-12-31T23:30"},
    {"until": "9999-12-31"},
]


def test_the_api_answers_400_at_the_ends_of_the_calendar(line):
    for window in CALENDAR_ENDS:
        for path in ("/api/v1/counts", "/api/v1/counts.csv", "/api/v1/comments"):
            assert_400(line(path, window), "outside the calendar", "0001-01-02 to 9999-12-30")


@pytest.fixture
def kiritimati(settings):
    """The line in the earliest time zone (UTC+14): its plain dates start the day before in UTC."""
    settings["LINE_TIMEZONE"] = "Pacific/Kiritimati"


def test_plain_dates_converted_through_the_line_zone_stay_in_the_calendar(kiritimati, line):
    assert_400(line("/api/v1/counts", {"since": "0001-01-01"}), "since='0001-01-01'", "outside the calendar")
    assert_400(line("/inbox", {"from": "0001-01-01"}), "outside the calendar")
    assert_400(line("/counts", {"from": "0001-01-01"}), "outside the calendar")
    assert line("/api/v1/counts", {"since": "0001-01-02", "until": "9999-12-30"}).status_code == 200
    assert line("/inbox", {"from": "0001-01-02", "to": "9999-12-30"}).status_code == 200
    assert line("/counts", {"from": "9999-12-28", "to": "9999-12-30"}).status_code == 200


def test_console_windows_at_the_ends_of_the_calendar(line):
    for path in ("/inbox", "/counts", "/counts.csv", "/export"):
        assert_400(line(path, {"from": "9999-12-31"}), "outside the calendar")
        assert_400(line(path, {"to": "0001-01-01"}), "outside the calendar")
    counts = line("/counts", {"from": "9999-12-30", "to": "9999-12-30", "by": "hour"})
    assert counts.status_code == 200 and "outside" not in counts.get_data(as_text=True)


def test_a_start_after_the_end_is_400_everywhere(line):
    assert_400(line("/api/v1/counts", {"since": "2026-11-03", "until": "2026-11-02"}), "until is before since")
    assert_400(line("/api/v1/comments", {"since": "2026-11-03T00:00Z", "until": "2026-11-02T23:59Z"}), "until")
    for path in ("/inbox", "/counts", "/counts.csv", "/export"):
        assert_400(line(path, {"from": "2026-11-03", "to": "2026-11-02"}), "before the start date")


def test_the_export_refuses_a_window_it_cannot_make(line, sign_in):
    admin = sign_in("admin", "exporter@example.org")
    admin.get("/export")
    for window in ({"from": "9999-12-31", "to": "9999-12-31"}, {"from": "2026-11-03", "to": "2026-11-02"}):
        response = admin.post("/export", {**window, "topic": ["budget"]})
        assert response.status_code == 302 and response.headers["Location"] == "/export"
        page = admin.get("/export").get_data(as_text=True)
        assert "outside the calendar" in page or "before the start date" in page


def test_api_cursors_and_limits_outside_what_it_gives_are_400(line):
    for value in [str(2**31), str(2**63), "9" * 25, "-1", "0", "x", "²", "1.5", " 1 2 "]:
        assert_400(line("/api/v1/comments", {"cursor": value}), "next_cursor")
        assert_400(line("/api/v1/comments", {"limit": value}), "limit must be a whole number from 1 to 200")
    page = line("/api/v1/comments", {"cursor": str(2**31 - 1)})  # the largest id the database holds
    assert page.status_code == 200 and [c["reference"] for c in page.json["comments"]] == [line.reference]


def test_inbox_cursors_it_did_not_make_are_400_with_the_first_page(line):
    for cursor in ["garbage", "999999999999999999.1", "1." + "9" * 13, "1." + str(2**31), "²³.1", "-5.1", "1"]:
        for key in ("before", "after"):
            page = assert_400(line("/inbox", {key: cursor}), "not a page link the inbox made")
            assert f'data-ref="{line.reference}"' in page


def test_audit_log_pages_outside_what_it_gives_are_400(line):
    for before in [str(2**31), str(2**63), "9" * 25, "-1", "x", "²"]:
        assert_400(line("/admin/audit", {"before": before}), "before must be a row number")
    assert line("/admin/audit", {"before": str(2**31 - 1)}).status_code == 200


def test_references_that_are_no_comment_are_404(line):
    for reference in ["9" * 30, str(10_000_000 + 2**31), "²²²²²²²", "RE%00", "RE" + "0" * 70, "%00", "1234567"]:
        for path in (f"/comments/{reference}", f"/audio/{reference}"):
            response = line(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "No comment has the reference number" in response.get_data(as_text=True)


def test_text_the_database_cannot_take_is_400(line):
    for path, key in [
        ("/api/v1/comments", "topic"),
        ("/inbox", "q"),
        ("/inbox", "topic"),
        ("/inbox", "language"),
        ("/admin/audit", "action"),
        ("/admin/audit", "who"),
        ("/admin/audit", "target"),
    ]:
        assert_400(line(path, {key: "budget\x00"}), f"{key} holds a control character")


def test_a_reference_number_typed_in_other_digits_is_searched_as_text(line):
    page = line("/inbox", {"q": "²²²²²²²"})
    assert page.status_code == 200 and f'data-ref="{line.reference}"' not in page.get_data(as_text=True)


def test_counts_refresh_outside_its_range_is_400(line):
    for every in ["²", "9" * 5000, "1", "3601", "-5"]:
        assert_400(line("/counts", {"every": every}), "every must be a whole number from 2 to 3600")
    assert line("/counts", {"every": "2"}).status_code == 200


def test_unknown_choices_are_named(line):
    assert_400(line("/counts", {"by": "week"}), "by must be one of: hour, day")
    assert_400(line("/inbox", {"reviewed": "maybe"}), "reviewed must be one of: yes, no")
    assert_400(line("/inbox", {"stance": "both"}), "stance must be one of")
    assert_400(line("/inbox", {"topic": "parks"}), "There is no topic", "parks")


def test_windows_still_read_times_and_offsets(line):
    """The parser keeps what it accepted: ISO times with offsets, Z, plain dates."""
    now = datetime.now(UTC)
    since = (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))).isoformat()
    until = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert line("/api/v1/counts", {"since": since, "until": until}).json["calls"] == 1
    assert line("/api/v1/counts", {"until": now.date().isoformat()}).json["calls"] == 0


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("9999-11-01", "9999-12-01"),  # a calendar month, the last whole one
        ("9999-12-01", "9999-12-30"),  # a month that would end past the calendar
        ("9999-11-29", "9999-12-06"),  # a calendar week
        ("9999-12-27", "9999-12-30"),  # a Monday whose week would end past the calendar
        ("9999-12-29", "9999-12-30"),  # the last whole day
        ("9999-12-28", "9999-12-30"),  # days whose next Monday lies past the calendar
        ("9999-12-21", "9999-12-30"),  # a week and days
    ],
)
def test_windows_at_the_end_of_the_calendar_are_counted(api, since, until):
    response = api("/api/v1/counts", since=since, until=until)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["calls"] == 0
