"""Figures of past days kept once counted (models/kept_counts.py) equal the same figures
counted from the facts, for any window, before and after a late fact changes a past day:
flags (with and without a district), distinct callers inside a district and over several
days, one voice per caller."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from jobs.work import sweep
from models import Call, Recording, Topic, db, kept_counts, summary, utcnow
from models.flags import FlagRules, _flagged_counts, count_flagged
from models.kept_counts import HourChanges, KeptCount, today
from models.summary import hour_of
from models.tally import caller_voices, callers_from_facts, callers_kept, tally, voices_between
from tests import load

from .test_districts import set_line

ZIPS = ["97201", "97204", "97209", None]
DISTRICT = ("97201", "97204")
DAYS = 3  # the calls lie on the three days before today, and today
# Repeat callers and bursts: the flags' rules, with a burst of 3 calls within 10 minutes.
RULES = FlagRules(repeat_calls_per_day=2, burst_calls=2, burst_minutes=10)


def spread_over_past_days(app, seed: int = 3) -> datetime:
    """Play calls, then place them on the days before today and earlier today, with ZIP
    codes and a few silent comments, as if they had come in then; return the first day."""
    first = today() - timedelta(days=DAYS)
    rng = random.Random(seed)
    with app.app_context():
        today_minutes = max(1, int((datetime.utcnow() - today()).total_seconds() // 60))
        for sid in db.session.scalars(select(Call.call_sid).order_by(Call.call_sid)).all():
            minutes = rng.randrange(DAYS * 1440) if rng.random() < 0.85 else DAYS * 1440 + rng.randrange(today_minutes)
            if rng.random() < 0.2:  # a run of calls around midnight: bursts across two days
                minutes = rng.choice([1439, 1440, 2879, 2880]) * 1 - rng.randrange(3)
            moment = first + timedelta(minutes=minutes, seconds=rng.randrange(60))
            db.session.execute(
                update(Call).where(Call.call_sid == sid).values(started_at=moment, entered_zip=rng.choice(ZIPS))
            )
        summary.rebuild(db.session)
        db.session.commit()
    return first


def flags_both_ways(session, since, until, within) -> tuple[dict, dict]:
    kept = count_flagged(session, RULES, since, until, within)
    return (
        {0: kept.flagged, **kept.by_topic} if kept.flagged else {},
        {t: n for t, n in _flagged_counts(session, RULES, since, until, within).items() if n},
    )


def voices(found: dict) -> dict:
    return {
        (t, z, s): n
        for t, by_zip in found.items()
        for z, by_stance in by_zip.items()
        for s, n in by_stance.items()
        if n
    }


def assert_kept_equal_facts(session, since, until) -> None:
    for within in (None, frozenset(DISTRICT)):
        kept, facts = flags_both_ways(session, since, until, within)
        assert kept == facts, ("flags", since, until, within)
    for zips in (None, DISTRICT):
        assert callers_kept(session, since, until, zips) == callers_from_facts(session, since, until, zips), (
            "callers",
            since,
            until,
            zips,
        )
    assert voices(caller_voices(session, since, until)) == voices(voices_between(session, since, until)), (
        "voices",
        since,
        until,
    )


def silence_then_check(session, recording_sids: list[str], windows: list[tuple]) -> None:
    """Make the recordings silent comments whose "completed" has not come yet (as if stored
    so), rebuild the summaries, and check every window's kept figures against the facts."""
    session.execute(
        update(Recording).where(Recording.recording_sid.in_(recording_sids)).values(status="absent", duration=0)
    )
    summary.rebuild(session)
    session.commit()
    for since, until in windows:
        assert_kept_equal_facts(session, since, until)


def changes_on(day: datetime) -> int:
    """The writer's changes counted for the hours of `day`."""
    hours = (HourChanges.hour >= day, HourChanges.hour < day + timedelta(days=1))
    return db.session.scalar(select(func.coalesce(func.sum(HourChanges.changes), 0)).where(*hours))


def play_calls(twilio, count: int, seed: int) -> None:
    for plan in load.plans(count, seed=seed):
        twilio.play(plan.mind(), plan.phone(), call_sid=plan.sid)


window_starts = st.one_of(st.none(), st.integers(-90, (DAYS + 1) * 1440))
window_lengths = st.one_of(st.none(), st.sampled_from([30, 60, 61, 240, 1440, 1441, 2 * 1440, 3 * 1440 + 17, 5000]))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(starts=st.lists(st.tuples(window_starts, window_lengths), min_size=4, max_size=4))
def test_kept_figures_equal_the_facts_for_any_window(app, twilio, starts):
    with app.app_context():
        fresh = db.session.scalar(select(func.count()).select_from(Call)) == 0
    if fresh:
        play_calls(twilio, 50, seed=11)
        spread_over_past_days(app)
    first = today() - timedelta(days=DAYS)
    with app.app_context():
        for start, length in starts:
            since = first + timedelta(minutes=start) if start is not None else None
            until = (since or first) + timedelta(minutes=length) if length is not None else None
            assert_kept_equal_facts(db.session, since, until)  # computed, then kept
            assert_kept_equal_facts(db.session, since, until)  # read back


def test_a_late_fact_about_a_past_day_makes_its_figures_counted_again(app, twilio):
    play_calls(twilio, 40, seed=12)
    first = spread_over_past_days(app, seed=4)
    with app.app_context():
        # Silent comments on the first past day, their recordings' "completed" not yet come.
        silent = db.session.execute(
            select(Recording.recording_sid, Recording.call_sid)
            .join(Call, Call.call_sid == Recording.call_sid)
            .where(Call.started_at >= first, Call.started_at < first + timedelta(days=1), Recording.duration > 0)
        ).all()
        assert silent
        windows = [(None, None), (first, first + timedelta(days=1)), (first, None), (first, first + timedelta(days=2))]
        windows.append((first + timedelta(hours=2), first + timedelta(hours=6)))
        silence_then_check(db.session, [sid for sid, _ in silent], windows)
        flagged_before = count_flagged(db.session, RULES, first, first + timedelta(days=1)).flagged
        changes_before = changes_on(first)
        assert db.session.scalar(select(func.count()).select_from(KeptCount)) > 0
    for recording_sid, call_sid in silent:  # Twilio's callbacks come at last
        twilio.call(call_sid=call_sid).recording_status(recording_sid, "completed", seconds=12)
    play_calls(twilio, 5, seed=13)  # and today's calls go on
    with app.app_context():
        db.session.expire_all()
        assert changes_on(first) > changes_before
        assert count_flagged(db.session, RULES, first, first + timedelta(days=1)).flagged < flagged_before
        for since, until in windows:
            assert_kept_equal_facts(db.session, since, until)
        counted = tally(db.session, first, first + timedelta(days=1), flag_rules=RULES)
        assert counted.flagged == count_flagged(db.session, RULES, first, first + timedelta(days=1)).flagged


def test_counts_verify_finds_a_kept_figure_that_differs_from_the_facts(app, twilio):
    play_calls(twilio, 20, seed=14)
    first = spread_over_past_days(app, seed=5)
    with app.app_context():
        count_flagged(db.session, RULES, first, first + timedelta(days=1))
        callers_kept(db.session, None, None, DISTRICT)
        assert summary.verify(db.session) == []
        db.session.execute(update(KeptCount).where(KeptCount.topic_id == 0).values(value=KeptCount.value + 1))
        db.session.commit()
        problems = summary.verify(db.session)
        assert {tuple(p.split(" ")[:2]) for p in problems} == {("kept", "callers"), ("kept", "flagged")}
        summary.rebuild(db.session)  # forgets them
        db.session.commit()
        assert summary.verify(db.session) == []


def test_windows_that_slide_with_the_clock_keep_a_bounded_number_of_figures(app, twilio, monkeypatch):
    """A client asking for "the last N hours" makes a new key with every request: past
    MAX_KEPT_KEYS per kind, what is kept of that kind is forgotten, and counts stay exact."""
    monkeypatch.setattr(kept_counts, "MAX_KEPT_KEYS", 4)
    play_calls(twilio, 20, seed=21)
    first = spread_over_past_days(app, seed=5)
    with app.app_context():
        for minutes in range(0, 70, 7):  # ten windows, each starting a few minutes later
            since = first + timedelta(hours=1, minutes=minutes)
            until = since + timedelta(days=2)
            assert callers_kept(db.session, since, until, None) == callers_from_facts(db.session, since, until, None)
            keys = db.session.scalar(
                select(func.count()).where(KeptCount.kind == "callers", KeptCount.topic_id == 0, KeptCount.part == "")
            )
            assert 1 <= keys <= 4


def hours_kept_today(hours: int) -> None:
    """Skip when fewer than `hours` whole hours of today have passed: today's kept part
    (callers: up to the current hour; flags: an hour earlier, for bursts) is then too short
    to be kept, and there is nothing of it to test."""
    if hour_of(utcnow()) - today() < timedelta(hours=hours):
        pytest.skip(f"before {hours:02d}:00 UTC today has no completed hours to keep")


def test_a_late_fact_about_an_earlier_hour_of_today_makes_its_figures_counted_again(app, twilio):
    hours_kept_today(2)
    play_calls(twilio, 40, seed=15)
    first = spread_over_past_days(app, seed=6)
    midnight = today()
    with app.app_context():
        # Calls with a comment moved to today's first hour, their comments silent (the
        # recordings' "completed" not yet come), verified and seven minutes apart: flagged as
        # short, and only so.
        silent = db.session.execute(
            select(Recording.recording_sid, Recording.call_sid).where(Recording.duration > 0).order_by(Recording.id)
        ).all()[:8]
        assert silent
        for i, (_, call_sid) in enumerate(silent):
            db.session.execute(
                update(Call)
                .where(Call.call_sid == call_sid)
                .values(
                    started_at=midnight + timedelta(minutes=7 * i + 1),
                    stir_verstat="TN-Validation-Passed-A",
                    caller_withheld=False,
                )
            )
        windows = [(None, None), (first, None), (midnight, None), (midnight, midnight + timedelta(hours=1))]
        windows.append((midnight - timedelta(hours=5), midnight + timedelta(hours=1, minutes=30)))
        silence_then_check(db.session, [sid for sid, _ in silent], windows)
        kept_today = db.session.scalars(
            select(KeptCount.kind).where(KeptCount.key.like(f"%|{midnight}|%")).distinct()
        ).all()
        assert {"flagged", "callers", "voices"} <= set(kept_today)  # today's completed hours are kept
        flagged_before = count_flagged(db.session, RULES, midnight, midnight + timedelta(hours=1)).flagged
        changes_before = changes_on(midnight)
    for recording_sid, call_sid in silent:  # Twilio's callbacks come at last, about today's first hour
        twilio.call(call_sid=call_sid).recording_status(recording_sid, "completed", seconds=12)
    with app.app_context():
        db.session.expire_all()
        assert changes_on(midnight) > changes_before
        assert count_flagged(db.session, RULES, midnight, midnight + timedelta(hours=1)).flagged < flagged_before
        for since, until in windows:
            assert_kept_equal_facts(db.session, since, until)
        assert summary.verify(db.session) == []


def test_a_caller_passing_the_repeat_limit_now_flags_their_calls_of_an_earlier_hour_of_today(app, twilio):
    """`repeat` flags every call of the day of a caller who called too often about a topic:
    a call in the current hour can flag calls of an hour of today whose figures are kept."""
    hours_kept_today(2)
    midnight = today()
    number = "+15035550123"
    sids = [play_one(twilio, number) for _ in range(RULES.repeat_calls_per_day)]
    with app.app_context():
        for i, sid in enumerate(sids):  # in today's first hour, far apart, verified: not flagged
            db.session.execute(
                update(Call)
                .where(Call.call_sid == sid)
                .values(
                    started_at=midnight + timedelta(minutes=5 + 30 * i),
                    stir_verstat="TN-Validation-Passed-A",
                    caller_withheld=False,
                )
            )
        summary.rebuild(db.session)
        db.session.commit()
        assert _flagged_counts(db.session, RULES, midnight, midnight + timedelta(hours=1), None) == {0: 0}
        assert_kept_equal_facts(db.session, None, None)  # computed and kept
        assert_kept_equal_facts(db.session, midnight, None)
    play_one(twilio, number)  # one call too many, now
    with app.app_context():
        db.session.expire_all()
        first_hour = _flagged_counts(db.session, RULES, midnight, midnight + timedelta(hours=1), None)
        assert first_hour[0] == RULES.repeat_calls_per_day  # the earlier calls are flagged now
        assert count_flagged(db.session, RULES, None, None).flagged == RULES.repeat_calls_per_day + 1
        assert_kept_equal_facts(db.session, None, None)
        assert_kept_equal_facts(db.session, midnight, None)
        assert summary.verify(db.session) == []


def play_one(twilio, number: str, stance: str = "1") -> str:
    """A call from `number` about the first topic, supporting it (`stance` "2": opposing
    it), with a 10 s comment."""
    call = twilio.call(From=number)
    call.dial()
    for key in ("1", "1", stance):
        call.press(key)
    if call.reply.record is not None:
        call.speak(seconds=10)
    call.hang_up()
    return call.sid


def kept_past_days() -> set[tuple[str, str]]:
    """(kind, key) of every kept figure about past days only (no time in its key after
    today's midnight: today's completed hours are kept too, and change with the clock)."""
    keys = db.session.execute(select(KeptCount.kind, KeptCount.key).distinct()).all()

    def past(key: str) -> bool:
        moments = []
        for part in key.split("|"):
            try:
                moments.append(datetime.fromisoformat(part))
            except ValueError:
                continue
        return all(moment <= today() for moment in moments)

    return {(kind, key) for kind, key in keys if past(key)}


def test_the_rebuild_and_the_worker_keep_what_an_all_time_count_keeps(app, twilio, api, runner):
    """After the kept figures are forgotten, `flask counts rebuild` and the worker's sweep
    each keep every past day's figure that the API's all-time counts (the line's, and inside
    the district) would otherwise count from the facts on the request."""
    set_line(app, "off", {"district": list(DISTRICT)})  # ZIP codes set below, as entered
    play_calls(twilio, 40, seed=15)
    spread_over_past_days(app, seed=6)  # summaries rebuilt: nothing kept
    with app.app_context():
        assert kept_past_days() == set()
    assert api("/api/v1/counts").status_code == 200
    assert api("/api/v1/counts", district="district").status_code == 200
    with app.app_context():
        asked = kept_past_days()
        assert {kind for kind, _ in asked} >= {"flagged", "blocked", "callbacks", "callers"}
        kept_counts.forget_all(db.session)
        db.session.commit()

    rebuilt = runner.invoke(args=["counts", "rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "figures of all time were counted again in" in rebuilt.output
    with app.app_context():
        assert kept_past_days() == asked
        kept_counts.forget_all(db.session)
        db.session.commit()
        sweep(db.session, app.config)
        assert kept_past_days() == asked
        assert kept_counts.verify_kept(db.session) == []  # each equal to the facts


def test_a_caller_who_changed_their_position_today_counts_once_with_the_latest(app, twilio):
    """One voice per caller over a window from a past day to the end of the current hour: a
    caller's latest position today replaces the one they gave before, whether it lies in a
    completed hour of today (whose voices are kept, and counted again when a late fact about
    that hour comes) or in the current hour (looked up on each read)."""
    hours_kept_today(2)
    midnight = today()
    ann, ben, cay = "+15035550131", "+15035550132", "+15035550133"
    moved = {play_one(twilio, number): midnight - timedelta(hours=14) for number in (ann, ben, cay)}
    late = twilio.call(From=ann)  # Ann calls again: today's first hour, her keypress not yet come
    late.dial()
    late.press("1")
    late.press("1")
    moved[late.sid] = midnight + timedelta(minutes=10)
    with app.app_context():
        for sid, moment in moved.items():
            db.session.execute(update(Call).where(Call.call_sid == sid).values(started_at=moment))
        summary.rebuild(db.session)
        db.session.commit()
    since = midnight - timedelta(days=1, hours=-6)  # yesterday from 06:00: no calendar window
    until = hour_of(utcnow()) + timedelta(hours=1)
    budget = first_topic_id(app)

    def counted() -> dict:
        db.session.expire_all()
        found = voices(caller_voices(db.session, since, until))
        assert found == voices(caller_voices(db.session, since, until))  # kept, then read back
        assert found == voices(voices_between(db.session, since, until))
        return found

    with app.app_context():
        assert counted() == {(budget, "", "support"): 3}
        today_hours = select(KeptCount.key).where(
            KeptCount.kind == "voices", KeptCount.key.like(f"{since}|{midnight}|%")
        )
        assert db.session.scalars(today_hours).all()  # today's completed hours kept
    late.press("2")  # the keypress of today's first hour comes late: Ann opposes
    late.speak()
    late.hang_up()
    with app.app_context():
        assert counted() == {(budget, "", "support"): 2, (budget, "", "oppose"): 1}
    play_one(twilio, ben, stance="2")  # now, in the current hour
    with app.app_context():
        assert counted() == {(budget, "", "support"): 1, (budget, "", "oppose"): 2}


def first_topic_id(app) -> int:
    """The id of the line's first topic (the one `play_one` chooses)."""
    with app.app_context():
        return db.session.scalar(select(Topic.id).where(Topic.digit == "1"))
