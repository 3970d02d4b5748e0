"""Console details: the inbox names topics as the counts page does; the counts page's "All
calls" row has the distinct callers of the whole line (checked against what the test played);
the chart's ticks are whole and evenly spaced; the date fields hold the window shown."""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from models import Call, db, summary
from models.tally import line_callers
from staff.counts_page import axis_ticks
from tests import load
from tests.console_support import leave_comment
from tests.test_console_counts_admin import table

ANONYMOUS = "anonymous"


def counts_names(page) -> dict[str, str]:
    """Topic slug -> the name the counts table shows for it."""
    body = page.get_data(as_text=True)
    return dict(re.findall(r'data-topic="([^"(]+)">\s*<th scope="row">([^<]+)</th>', body))


# --- the inbox names topics as the counts page does ----------------------------------------------


def test_the_inbox_and_a_comment_page_name_topics_as_the_counts_page_does(sign_in, twilio):
    _, _, budget_ref = leave_comment(twilio, "1", "1", text="About the budget.")
    leave_comment(twilio, "2", "2", text="About the buses.")
    leave_comment(twilio, "3", None, text="About rents.")
    staff = sign_in("staff")
    names = counts_names(staff.get("/counts"))
    inbox = staff.get("/inbox").get_data(as_text=True)
    chips = re.findall(r'<span class="chip topic">([^<]*)</span>', inbox)
    assert sorted(chips) == sorted([names["budget"], names["transit"], names["housing"]])
    assert "budget" not in chips and "transit" not in chips  # the slugs (housing is named "housing")
    comment = staff.get(f"/comments/{budget_ref}").get_data(as_text=True)
    assert f"<dt>Topic</dt><dd>{names['budget']}</dd>" in comment


# --- the "All calls" row: distinct callers of the whole line -------------------------------------


def play(twilio, number: str, topics: list[str]) -> str:
    """One call from `number` choosing each of `topics` in turn (a comment on each); with no
    topics, a call that hangs up at the topic menu. Returns the CallSid."""
    call = twilio.call(From=number)
    call.dial()
    call.press("1")  # English
    for n, topic in enumerate(topics):
        if n:
            call.press("1")  # another topic
        call.press(topic)
        if topic in ("1", "2"):  # budget and transit ask for a position
            call.press("1")
        call.speak(seconds=5)
    call.hang_up()
    return call.sid


def move_calls(app, moments: dict[str, datetime]) -> None:
    """The calls came in at these (naive UTC) moments; the summaries are rebuilt from the facts,
    as `flask counts rebuild` does after facts are edited."""
    with app.app_context():
        for sid, moment in moments.items():
            db.session.execute(update(Call).where(Call.call_sid == sid).values(started_at=moment))
        summary.rebuild(db.session)
        db.session.commit()


@pytest.fixture(params=["UTC", "America/Los_Angeles", "Asia/Kolkata"])
def zone(request, settings) -> str:
    """The line's time zone: days that start on a UTC midnight, on another whole hour, and on a
    half hour (so that a day's window has ragged ends, counted from the facts)."""
    settings["LINE_TIMEZONE"] = request.param
    return request.param


def test_all_calls_row_counts_each_caller_of_the_line_once(zone, app, sign_in, twilio):
    day = date(2026, 11, 20)
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(ZoneInfo("UTC"))
    start = start.replace(tzinfo=None)
    # (caller, topic digits, when after the local day's start)
    played = [
        ("+15035550301", ["1"], timedelta(minutes=10)),
        ("+15035550301", ["1"], timedelta(hours=5)),  # the same caller, the same topic again
        ("+15035550302", ["2"], timedelta(hours=5, minutes=20)),
        ("+15035550303", ["1", "2"], timedelta(hours=12)),  # two topics in one call
        ("+15035550304", [], timedelta(hours=12, minutes=30)),  # chose no topic
        (ANONYMOUS, ["1"], timedelta(hours=13)),  # a withheld number
        ("+15035550302", ["3"], timedelta(hours=23, minutes=50)),  # a caller seen before, another topic
        ("+15035550305", ["3"], timedelta(hours=-1)),  # the day before
        ("+15035550306", ["1"], timedelta(hours=24, minutes=30)),  # the day after
    ]
    moments = {play(twilio, number, topics): start + after for number, topics, after in played}
    move_calls(app, moments)

    def expected(first: date, last: date) -> tuple[int, int]:
        """(calls, distinct callers of those calls) in local days first..last."""
        since = start + timedelta(days=(first - day).days)
        until = start + timedelta(days=(last - day).days + 1)
        calls = [(number, topics) for number, topics, after in played if since <= start + after < until]
        return len(calls), len({number for number, topics in calls if number != ANONYMOUS})

    staff = sign_in("staff")
    for first, last in [(day, day), (day - timedelta(days=1), day + timedelta(days=1)), (day, day + timedelta(days=1))]:
        rows = table(staff.get(f"/counts?from={first}&to={last}"))
        calls, callers = expected(first, last)
        assert rows["(all)"][:2] == [str(calls), str(callers)], (zone, first, last, rows)
    assert expected(day, day) == (7, 4)  # the oracle itself: what the played list says


def test_line_callers_match_what_was_played_for_any_window(twilio, app):
    planned = load.plans(60, seed=33)
    for plan in planned:
        call = twilio.call(CallSid=plan.sid, From=plan.number)
        call.dial()
        for key in [plan.language, plan.topic] + ([plan.stance] if plan.stance else []):
            call.press(key)
    unrouted = twilio.call(From="+15035559999")  # chose no topic: a caller of the line all the same
    unrouted.dial()
    rng = random.Random(8)
    start = datetime(2026, 11, 1, 6, 0)
    moments = {
        plan.sid: start + timedelta(minutes=rng.randrange(48 * 60), seconds=rng.randrange(60)) for plan in planned
    }
    moments[unrouted.sid] = start + timedelta(hours=1)
    move_calls(app, moments)

    numbers = {plan.sid: plan.number for plan in planned} | {unrouted.sid: "+15035559999"}

    def played_callers(since, until) -> int:
        return len(
            {
                number
                for sid, number in numbers.items()
                if number != ANONYMOUS
                and (since is None or moments[sid] >= since)
                and (until is None or moments[sid] < until)
            }
        )

    day = datetime(2026, 11, 1)
    windows = [(None, None), (start, None), (None, start + timedelta(hours=30))]
    windows += [(day, day + timedelta(days=1)), (day, day + timedelta(days=3)), (day - timedelta(days=2), day)]
    windows += [(start + timedelta(hours=5, minutes=10), start + timedelta(hours=5, minutes=50))]
    for _ in range(25):
        a = start + timedelta(minutes=rng.randrange(-120, 50 * 60), seconds=rng.randrange(60))
        windows.append((a, a + timedelta(minutes=rng.choice([1, 30, 59, 61, 90, 600, 1440, 3000]))))
    with app.app_context():
        for since, until in windows:
            assert line_callers(db.session, since, until) == played_callers(since, until), (since, until)
        assert played_callers(None, None) > 10


@pytest.fixture
def numbers_not_kept(settings) -> None:
    settings["CALLER_NUMBERS"] = "none"


def test_all_calls_row_has_no_callers_when_numbers_are_not_kept(numbers_not_kept, sign_in, twilio):
    leave_comment(twilio, "1", "1", From="+15035550401")
    rows = table(sign_in("staff").get("/counts"))
    assert rows["(all)"][:2] == ["1", ""] and rows["budget"][:2] == ["1", ""]


# --- the chart's ticks ---------------------------------------------------------------------------


def chart_ticks(page) -> list[tuple[float, int]]:
    """(y, value) of each tick on the chart's y-axis."""
    body = page.get_data(as_text=True)
    return [
        (float(y), int(v))
        for y, v in re.findall(r'<text x="\d+" y="([\d.]+)" text-anchor="end" class="axis">(\d+)</text>', body)
    ]


@pytest.mark.parametrize("calls,ticks", [(5, [0, 1, 2, 3, 4, 5]), (7, [0, 2, 4, 6, 8])])
def test_the_chart_ticks_are_whole_and_evenly_spaced(app, sign_in, twilio, calls, ticks):
    sids = [leave_comment(twilio, "2", "1", From=f"+1503555050{n}")[0].sid for n in range(calls)]
    move_calls(app, dict.fromkeys(sids, datetime(2026, 11, 20, 10, 15)))  # all in one hour
    page = sign_in("staff").get("/counts?from=2026-11-20&to=2026-11-20")
    shown = chart_ticks(page)
    assert [value for _, value in shown] == ticks
    gaps = {round(a[0] - b[0], 1) for a, b in zip(shown, shown[1:], strict=False)}
    assert len(gaps) == 1  # evenly spaced on the page too
    # The hour's bar reaches the height its count has on the axis (labels sit 4 below their line).
    bar_top = min(float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"', page.get_data(as_text=True)))
    zero, top = shown[0][0] - 4, shown[-1][0] - 4
    assert bar_top == pytest.approx(zero - calls / ticks[-1] * (zero - top), abs=0.2)


@given(st.integers(min_value=0, max_value=10**12))
def test_axis_ticks_are_whole_evenly_spaced_and_reach_the_peak(peak):
    ticks = axis_ticks(peak)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0 and all(isinstance(t, int) for t in ticks)
    assert all(b - a == step for a, b in zip(ticks, ticks[1:], strict=False))
    assert ticks[-1] >= peak and ticks[-1] - step < max(peak, 1)  # reaches the peak, no further than a step
    assert 2 <= len(ticks) <= 6
    assert re.fullmatch(r"[125]0*", str(step))  # 1, 2 or 5 times a power of ten


# --- the date fields hold the window shown -------------------------------------------------------


def date_fields(page) -> tuple[str, str]:
    body = page.get_data(as_text=True)
    return (
        re.search(r'<input type="date" name="from" value="([^"]*)"', body).group(1),
        re.search(r'<input type="date" name="to" value="([^"]*)"', body).group(1),
    )


def test_the_date_fields_hold_the_window_the_counts_show(sign_in, app):
    staff = sign_in("staff")
    zone = ZoneInfo(app.config["LINE_TIMEZONE"])
    before = datetime.now(zone).date()
    page = staff.get("/counts")
    today = {before, datetime.now(zone).date()}  # the same day, unless midnight passed meanwhile
    first, last = date_fields(page)
    assert first == last and date.fromisoformat(first) in today
    assert date.fromisoformat(first).strftime("%A %-d %B %Y") in page.get_data(as_text=True)  # the heading's day
    assert date_fields(staff.get("/counts?from=2026-11-02")) == ("2026-11-02", "2026-11-02")
    assert date_fields(staff.get("/counts?from=2026-11-02&to=2026-11-04")) == ("2026-11-02", "2026-11-04")
    bad = staff.get("/counts?from=2026-11-04&to=2026-11-02")
    assert bad.status_code == 400 and date_fields(bad) == ("2026-11-04", "2026-11-02")  # as typed


def test_the_counts_shortcut_for_today_is_marked_when_no_window_is_named(sign_in):
    body = sign_in("staff").get("/counts").get_data(as_text=True)
    assert re.search(r'<a href="[^"]*" aria-current="true">Today</a>', body)
