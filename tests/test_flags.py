"""Floods flagged, never dropped; blocked numbers; call-backs (models/flags.py,
models/blocklist.py, models/callbacks.py), with calls played as Twilio plays them.

Each test asks the JSON API for the counts, as an office's tool would, and changes a rule's
setting between two readings of the same window to see the flags follow."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select, true, update

from ivr.caller import NO_VALIDATION, UNVERIFIED, VERIFIED, Phone, Script, Take
from models import db, summary
from models.base import utcnow
from models.blocklist import block_list, block_number
from models.callbacks import CallbackRequest, open_number
from models.calls import Call, CallTopic
from models.flags import (
    FLAG_NAMES,
    FlagRules,
    burst_suspects,
    flag_rows,
    flagged_among_calls,
    flagged_by_rules,
    flags_of,
    repeat_spans,
)
from models.kept_counts import today
from models.line import Topic, bump_version, line_script
from models.users import User

from .conftest import CALLER, LINE, in_process_twilio
from .test_kept_counts import play_calls

BUDGET_SUPPORT = ["1", "1", "1"]  # English, the budget, "support"


def topic_counts(body: dict, slug: str) -> dict:
    return next(t for t in body["topics"] if t["slug"] == slug)


def no_flag_rules(app) -> None:
    app.config.update(
        FLAG_REPEAT_CALLS_PER_DAY=0, FLAG_BURST_CALLS=0, FLAG_SHORT_COMMENTS=False, FLAG_UNVERIFIED_CALLERS=False
    )


def test_a_number_calling_forty_times_is_flagged_not_dropped(app, twilio, api):
    for _ in range(40):
        twilio.play(Script(BUDGET_SUPPORT, [Take(seconds=9)]), CALLER)
    twilio.play(Script(["1", "2", "2"], [Take(seconds=9)]), replace(CALLER, number="+15035550111"))

    no_flag_rules(app)
    body = api("/api/v1/counts").json
    budget = topic_counts(body, "budget")
    assert (body["calls"], body["flagged"], budget["calls"], budget["flagged"]) == (41, 0, 40, 0)
    assert budget["stance"]["support"] == 40 and budget["comments"] == 40  # every call counted

    app.config["FLAG_REPEAT_CALLS_PER_DAY"] = 39  # "more than 39 a day": all forty
    body = api("/api/v1/counts").json
    assert (body["flagged"], topic_counts(body, "budget")["flagged"], topic_counts(body, "transit")["flagged"]) == (
        40,
        40,
        0,
    )
    app.config["FLAG_REPEAT_CALLS_PER_DAY"] = 40  # forty is not more than forty
    assert api("/api/v1/counts").json["flagged"] == 0


def test_a_burst_is_flagged_and_the_setting_moves_it(app, twilio, api):
    for _ in range(4):  # four calls within seconds
        twilio.play(Script(["1", "3"], [Take(seconds=9)]), CALLER)
    for _ in range(3):
        twilio.play(Script(["1", "3"], [Take(seconds=9)]), replace(CALLER, number="+15035550112"))
    no_flag_rules(app)
    app.config.update(FLAG_BURST_CALLS=3, FLAG_BURST_MINUTES=10)  # more than three in ten minutes
    body = api("/api/v1/counts").json
    assert (body["calls"], body["flagged"], topic_counts(body, "housing")["flagged"]) == (7, 4, 4)
    with app.app_context():
        sids = list(db.session.scalars(select(Call.call_sid)))
        flags = flags_of(db.session, FlagRules.from_config(app.config), sids)
    assert sorted(len(f) for f in flags.values()) == [1, 1, 1, 1] and all(f == {"burst"} for f in flags.values())
    app.config["FLAG_BURST_CALLS"] = 2
    assert api("/api/v1/counts").json["flagged"] == 7
    app.config["FLAG_BURST_CALLS"] = 4
    assert api("/api/v1/counts").json["flagged"] == 0


def test_a_numbers_try_the_line_calls_make_no_burst_of_its_real_ones(app, twilio, api):
    """Three real calls and a "Try the line" call from one number within seconds: more than
    three calls, but the test call counts for nothing, so no burst; a fourth real call makes
    one of the four real calls, the test call still unflagged."""
    trial = in_process_twilio(app, trial=True)
    no_flag_rules(app)
    app.config.update(FLAG_BURST_CALLS=3, FLAG_BURST_MINUTES=10)  # more than three in ten minutes
    for _ in range(3):
        twilio.play(Script(["1", "3"], [Take(seconds=9)]), CALLER)
    tried = trial.play(Script(["1", "3"], [Take(seconds=9)]), CALLER)
    body = api("/api/v1/counts").json
    assert (body["calls"], body["flagged"]) == (3, 0)
    with app.app_context():
        assert db.session.get(Call, tried.call_sid).is_test
        sids = list(db.session.scalars(select(Call.call_sid)))
        assert flags_of(db.session, FlagRules.from_config(app.config), sids) == {}
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), CALLER)
    body = api("/api/v1/counts").json
    assert (body["calls"], body["flagged"], topic_counts(body, "housing")["flagged"]) == (4, 4, 4)
    with app.app_context():
        sids = list(db.session.scalars(select(Call.call_sid)))
        flags = flags_of(db.session, FlagRules.from_config(app.config), sids)
    assert len(sids) == 5 and tried.call_sid not in flags and list(flags.values()) == [{"burst"}] * 4


def test_silent_and_one_second_comments_are_flagged(app, twilio, api):
    twilio.play(Script(["1", "3"], [Take(seconds=1)]), CALLER)
    twilio.play(Script(["1", "3"], [Take(seconds=12, status="absent")]), replace(CALLER, number="+15035550113"))
    twilio.play(Script(["1", "3"], [Take(seconds=12)]), replace(CALLER, number="+15035550114"))
    no_flag_rules(app)
    app.config["FLAG_SHORT_COMMENTS"] = True
    body = api("/api/v1/counts").json
    housing = topic_counts(body, "housing")
    assert (body["calls"], body["flagged"], housing["calls"], housing["flagged"]) == (3, 2, 3, 2)
    assert housing["comments"] == 2  # the absent one is no comment; the one-second one is
    app.config["FLAG_SHORT_COMMENT_SECONDS"] = 0
    assert api("/api/v1/counts").json["flagged"] == 1  # only the silent one
    app.config["FLAG_SHORT_COMMENTS"] = False
    assert api("/api/v1/counts").json["flagged"] == 0


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_anonymous_and_unverified_numbers_are_flagged(settings, mode, request):
    settings["CALLER_NUMBERS"] = mode
    app, twilio, api = (request.getfixturevalue(name) for name in ("app", "twilio", "api"))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), Phone("anonymous"))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), Phone("+266696687"))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), replace(CALLER, number="+15035550115", verstat=UNVERIFIED))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), replace(CALLER, number="+15035550116", verstat=NO_VALIDATION))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), replace(CALLER, number="+15035550117", verstat=VERIFIED))
    twilio.play(Script(["1", "3"], [Take(seconds=9)]), CALLER)  # no StirVerstat at all
    no_flag_rules(app)
    app.config["FLAG_UNVERIFIED_CALLERS"] = True
    body = api("/api/v1/counts").json
    assert (body["calls"], body["flagged"], topic_counts(body, "housing")["flagged"]) == (6, 4, 4)
    with app.app_context():
        verdicts = set(db.session.scalars(select(Call.stir_verstat)))
        assert verdicts == {None, UNVERIFIED, NO_VALIDATION, VERIFIED}
    app.config["FLAG_UNVERIFIED_CALLERS"] = False
    assert api("/api/v1/counts").json["flagged"] == 0


def test_one_call_may_carry_several_flags(app, twilio, api):
    for _ in range(4):
        twilio.play(Script(["1", "3"], [Take(seconds=1)]), replace(CALLER, verstat=UNVERIFIED))
    with app.app_context():
        sids = list(db.session.scalars(select(Call.call_sid)))
        flags = flags_of(db.session, FlagRules.from_config(app.config), sids)
    assert all(f == {"burst", "short", "unverified"} for f in flags.values()) and len(flags) == 4
    assert api("/api/v1/counts").json["flagged"] == 4  # calls, not flags


def block(app, number: str, reason: str = "flooding the line") -> None:
    with app.app_context():
        admin = db.session.scalar(select(User).limit(1)) or "tests"
        block_number(db.session, app.config["CALLER_HASH_KEY"], number, reason, by=admin)
        db.session.commit()
        block_list(app).forget()


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_a_blocked_number_hears_a_message_and_is_counted_as_blocked(settings, mode, request):
    settings["CALLER_NUMBERS"] = mode
    app, twilio, api = (request.getfixturevalue(name) for name in ("app", "twilio", "api"))
    block(app, "(503) 555-0100")  # CALLER's number, as staff type it
    played = twilio.play(Script(BUDGET_SUPPORT, [Take(seconds=9)]), CALLER, blocked=True, keep_heard=True)
    assert played.blocked and played.heard == ["This line cannot take your call. Goodbye.", "[the line hangs up]"]
    twilio.play(Script(BUDGET_SUPPORT, [Take(seconds=9)]), replace(CALLER, number="+15035550118"))
    body = api("/api/v1/counts").json
    assert (body["calls"], body["blocked"], body["unrouted"]) == (2, 1, 0)
    assert topic_counts(body, "budget")["calls"] == 1  # the blocked call is in no topic
    with app.app_context():
        blocked = db.session.scalar(select(Call).where(Call.blocked == true()))
        assert blocked is not None and blocked.from_number is None  # stored, never dropped


def offer_callbacks(app, slug: str = "budget") -> None:
    with app.app_context():
        db.session.execute(update(Topic).where(Topic.slug == slug).values(callback=True))
        bump_version(db.session)
        db.session.commit()
        line_script(app).forget()


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_a_call_back_asked_keeps_the_number_sealed(settings, mode, request):
    settings["CALLER_NUMBERS"] = mode
    app, twilio, api = (request.getfixturevalue(name) for name in ("app", "twilio", "api"))
    offer_callbacks(app)
    line = replace(LINE, callbacks=frozenset({"budget"}))
    asked = twilio.play(Script([*BUDGET_SUPPORT, "1", "2"], [Take(seconds=9)]), CALLER, line=line, keep_heard=True)
    assert asked.callbacks == {"budget"}
    assert "To ask for a call back, press 1. Otherwise, press 2." in " ".join(asked.heard)
    assert any("We will call you back." in line for line in asked.heard)
    declined = replace(CALLER, number="+15035550119")
    assert twilio.play(Script([*BUDGET_SUPPORT, "2", "2"], [Take(seconds=9)]), declined, line=line).callbacks == set()
    twilio.play(Script(["1", "3", "2"], [Take(seconds=9)]), replace(CALLER, number="+15035550120"), line=line)
    # A withheld number is not offered one: there is no number to call.
    twilio.play(Script([*BUDGET_SUPPORT, "2"], [Take(seconds=9)]), Phone("anonymous"), line=line)

    body = api("/api/v1/counts").json
    assert (topic_counts(body, "budget")["callbacks"], topic_counts(body, "housing")["callbacks"]) == (1, 0)
    with app.app_context():
        (row,) = db.session.scalars(select(CallbackRequest))
        assert CALLER.number not in row.number_sealed
        assert open_number(app.config["CALLBACK_KEY"], row.number_sealed) == CALLER.number
        assert row.recording_sid in {sid for sid in asked.recordings}
        kept = set(db.session.scalars(select(Call.from_number)))
    assert kept == {None}  # only the call-back keeps the number


def test_call_backs_need_a_key_of_their_own_in_production(tmp_path, database_url):
    from app import create_app
    from config import DEFAULT_LINE_CONFIG, SettingsError, load_settings
    from facts import write_path

    from .conftest import line_env

    script = tmp_path / "line.yaml"
    script.write_text(DEFAULT_LINE_CONFIG.read_text().replace("callback: false", "callback: true", 1))
    env = line_env(database_url, tmp_path / "i", APP_ENV="production", WRITE_BEHIND="0", LINE_CONFIG=str(script))
    assert load_settings(env)["CALLBACK_KEY"] == ""  # production generates none
    with pytest.raises(SettingsError, match="CALLBACK_KEY must be a Fernet key"):
        load_settings({**env, "CALLBACK_KEY": "not-a-key"})
    app = create_app(env)
    try:
        result = app.test_cli_runner().invoke(args=["line", "sync"])
        assert result.exit_code == 1 and "budget offer call-backs, but CALLBACK_KEY is not set" in result.output
    finally:
        write_path(app).replayer.stop()
        with app.app_context():
            db.engine.dispose()


def crowd_calls(app, seed: int) -> None:
    """Give the played calls a few numbers and crowd their starts around two midnights and a
    noon of the days before today: runs, repeats and days with both, as floods make them;
    and a ZIP code entered (or none) to most."""
    rng, zips = random.Random(seed), random.Random(seed + 1)
    first = today() - timedelta(days=3)
    with app.app_context():
        calls = db.session.execute(select(Call.call_sid, Call.caller_hash).order_by(Call.call_sid)).all()
        numbers = sorted({caller for _, caller in calls if caller})[:4]
        for sid, caller in calls:
            minutes = (
                rng.choice([720, 1440, 2880]) + rng.randrange(-40, 40) if rng.random() < 0.7 else rng.randrange(4320)
            )
            db.session.execute(
                update(Call)
                .where(Call.call_sid == sid)
                .values(
                    started_at=first + timedelta(minutes=minutes, seconds=rng.randrange(60)),
                    caller_hash=rng.choice(numbers) if caller else None,
                    entered_zip=zips.choice([None, "97201", "97202", "97210"]),
                )
            )
        summary.rebuild(db.session)
        db.session.commit()


any_rules = st.builds(
    FlagRules,
    repeat_calls_per_day=st.integers(0, 3),
    burst_calls=st.integers(0, 4),
    burst_minutes=st.sampled_from([0, 1, 10, 90, 24 * 60 + 30]),
    short_comments=st.booleans(),
    short_comment_seconds=st.integers(0, 20),
    unverified_callers=st.booleans(),
)


def crowd_once(app, twilio) -> None:
    """The crowded calls (`crowd_calls`), played on the first example only; a fifth of them
    comment on two topics (housing, then the budget)."""
    with app.app_context():
        fresh = db.session.scalar(select(func.count()).select_from(Call)) == 0
    if fresh:
        play_calls(twilio, 48, seed=31)
        rng = random.Random(31)
        for i in range(12):
            two_topics = Script(["1", "3", "1", "1", "1"], [Take(4), Take(4)], then="2")
            number = replace(CALLER, number=f"+1503555{rng.randrange(40):04d}")
            twilio.play(two_topics, number, call_sid=f"CA2{i:031x}")
        crowd_calls(app, seed=6)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=any_rules, picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_a_pages_flags_are_those_its_calls_have_in_any_window(app, twilio, rules, picks):
    """The inbox's flags for a page of calls (`flags_of`, read from those calls and their
    numbers' neighbours) are the flags the counts give the same calls (`flag_rows`, read
    from the rules' indexes over all time), for any rules and any page."""
    crowd_once(app, twilio)
    with app.app_context():
        sids = db.session.scalars(select(Call.call_sid).order_by(Call.call_sid)).all()
        page = sorted({sids[pick % len(sids)] for pick in picks})
        expected: dict[str, set[str]] = {}
        rows = flag_rows(db.session, rules, None, None)
        if rows is not None:
            flagged = rows.subquery()
            for sid, flag in db.session.execute(select(flagged.c.call_sid, flagged.c.flag)):
                if sid in page:
                    expected.setdefault(sid, set()).add(flag)
        assert flags_of(db.session, rules, page) == expected


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rules=any_rules,
    start=st.integers(-120, 4 * 1440),
    minutes=st.integers(1, 3 * 1440),
    inside=st.booleans(),
)
def test_a_windows_flagged_calls_are_the_same_read_from_its_calls_or_the_rules(
    app, twilio, rules, start, minutes, inside
):
    """Counted from the window's calls (`flagged_among_calls`, for windows of few calls) or
    from the rules' indexes (`flagged_by_rules`), a window's flagged calls per topic are the
    same, for any rules, any window of the crowded days (runs and repeats across midnights)
    and with or without a district's ZIP codes."""
    crowd_once(app, twilio)
    with app.app_context():
        since = today() - timedelta(days=3) + timedelta(minutes=start)
        until = since + timedelta(minutes=minutes)
        entered = sorted(set(db.session.scalars(select(Call.entered_zip).where(Call.entered_zip.is_not(None)))))
        within = frozenset(entered[::2]) if inside else None
        by_calls = flagged_among_calls(db.session, rules, since, until, within)
        by_rules = flagged_by_rules(db.session, rules, since, until, within)
        assert {t: n for t, n in by_calls.items() if n} == {t: n for t, n in by_rules.items() if n}


def test_the_crowded_calls_carry_every_flag_two_topics_and_zip_codes(app, twilio):
    """The properties above are tried on calls that do carry each flag (flagged on both sides
    of a midnight), calls about two topics and ZIP codes entered: else they would hold of
    nothing."""
    crowd_once(app, twilio)
    rules = FlagRules(repeat_calls_per_day=3, burst_calls=2, burst_minutes=10)
    with app.app_context():
        every = flags_of(db.session, rules, db.session.scalars(select(Call.call_sid)).all())
        assert {flag for flags in every.values() for flag in flags} == set(FLAG_NAMES)
        assert len(set(db.session.scalars(select(Call.entered_zip).where(Call.entered_zip.is_not(None))))) >= 2
        two_topics = select(CallTopic.call_sid).group_by(CallTopic.call_sid).having(func.count() == 2)
        assert len(db.session.scalars(two_topics).all()) == 12
        midnight = today() - timedelta(days=1)
        window = (midnight - timedelta(hours=2), midnight + timedelta(hours=2))
        flagged = flagged_among_calls(db.session, rules, *window, None)
        assert flagged.get(0, 0) > 0 and flagged == flagged_by_rules(db.session, rules, *window, None)


def test_each_flag_holds_for_a_call_alone_on_its_page(app, twilio):
    """A call's flags do not depend on which other calls share its page; and the crowded
    calls the property above is tried on do carry every kind of flag."""
    rules = FlagRules(repeat_calls_per_day=3, burst_calls=2, burst_minutes=10)
    play_calls(twilio, 60, seed=31)
    crowd_calls(app, seed=6)
    with app.app_context():
        every = flags_of(db.session, rules, db.session.scalars(select(Call.call_sid)).all())
        assert {flag for flags in every.values() for flag in flags} == set(FLAG_NAMES)
        for sid, flags in every.items():
            assert flags_of(db.session, rules, [sid]) == {sid: flags}


@pytest.mark.parametrize("burst_minutes", [10, 180])  # a burst found by its hours, or by its days
def test_repeats_and_bursts_read_only_their_partial_index_whatever_the_window(app, database_url, burst_minutes):
    """The `repeat` and `burst` rules find a window's callers in one range of the partial
    index of rows above one call (`ix_caller_days_repeats`, `ix_caller_hours_repeats`),
    reading nothing else: not every row of the window's days by the primary key (at a million
    calls, seconds for a busy day), nor every row above the limit, whatever the window. SQLite
    keeps no statistics, so its plan is fixed by the schema and the query: checked here."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's plans (PostgreSQL plans by its statistics)")
    rules = FlagRules(repeat_calls_per_day=5, burst_calls=5, burst_minutes=burst_minutes)
    now = utcnow()
    windows = [(None, None), (today(), today()), (now - timedelta(hours=2), now), (now - timedelta(days=30), now)]
    with app.app_context():
        statements: list[tuple[str, tuple]] = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            if "caller_days" in statement or "caller_hours" in statement:
                statements.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", keep)
        try:
            for start, end in windows:
                repeat_spans(db.session, rules, start, end)
                burst_suspects(db.session, rules, start, end)
        finally:
            event.remove(db.engine, "before_cursor_execute", keep)
        assert len(statements) == 2 * len(windows)
        for statement, parameters in statements:
            plan = [
                row[3] for row in db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            index = "ix_caller_days_repeats" if "FROM caller_days" in statement else "ix_caller_hours_repeats"
            assert len(plan) in (1, 2) and f"USING COVERING INDEX {index}" in plan[0], (statement, plan)
