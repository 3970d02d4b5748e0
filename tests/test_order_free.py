"""Whatever order and batches a call's facts reach the database in, and however often, the
stored facts and every count end the same (facts/rules.py).

Calls are played through the real webhooks, with exactly the parameters Twilio sends (the
recording status and transcription callbacks carry no `From`), by a line whose database is
away: each webhook's facts land in the spool as the line that production writes. Those lines
are then delivered to an empty database twice: in the order they were answered, one
transaction each; and shuffled, some twice, in random batches. Both must store the same rows
and summaries, agree with `flask counts verify`'s recomputation, and give the same counts
for every window.

The counts compared include the flags (computed from the stored facts: models/flags.py) and
the call-back requests: a topic offers call-backs, some callers ask, some calls carry
Twilio's `StirVerstat`, some come from a withheld number, some record nothing.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app import create_app
from config import DEFAULT_LINE_CONFIG
from facts import write_path
from facts.record import loads
from facts.writer import apply
from ivr.trial import TRIAL_HEADER, trial_mark
from models import db, summary
from models.calls import verify_call_topics
from models.line import District, LineSettings, bump_version, line_script, load_script, read_script_file
from models.tally import tally

from .conftest import ACCOUNT, PG_URL, SECRETS, Reply, Twilio, eventually, line_env, recording_url

EXAMPLES = int(os.environ.get("ORDER_FREE_EXAMPLES", "25"))
NUMBERS = ("+15035550101", "+15035550102", "+15035550103", "anonymous")
# Starts near the ends of an hour and of a day, so that a call's webhooks straddle them.
STARTS = (
    datetime(2026, 11, 30, 10, 59, 57),
    datetime(2026, 11, 30, 23, 59, 58),
    datetime(2026, 11, 30, 12, 30, 0),
    datetime(2026, 12, 1, 0, 0, 1),
)
KEYS = "12399*"  # languages, topics, positions, "another topic", a call-back, and keys no menu takes
# At the ZIP code's menu: inside the district, outside it, too short, nothing (a skip).
ZIP_ENTRIES = ("97201", "97201", "97299", "12", "-")
DISTRICTS = (District("district", frozenset({"97201", "97204"})),)
# English, the budget (which offers call-backs), a position, the comment, then 1: a call back.
ASKS_FOR_A_CALL_BACK = (["1", "1", "1", "#", "1", "2"], ["1", "1", "3", "#", "1", "1", "3", "#", "2"])
VERSTATS = (None, "TN-Validation-Passed-A", "TN-Validation-Failed-B", "No-TN-Validation")


def callback(twilio: Twilio, path: str, **params) -> Reply:
    """A callback Twilio sends about a call, with only the parameters it sends: no `From`."""
    return Reply(twilio.post(path, {"AccountSid": ACCOUNT, **params}))


def play(twilio: Twilio, plan: dict) -> None:
    """Follow the line's replies, pressing `plan["keys"]` at each menu and speaking at each
    `<Record>`, until the keys run out (the caller hangs up); then Twilio's callbacks."""
    verdict = {"StirVerstat": plan["verstat"]} if plan.get("verstat") else {}
    caller = twilio.call(From=plan["number"], **verdict)
    sent: list[tuple[str, dict]] = []
    reply = caller.dial()
    sent.append(("/twilio/voice", {**caller.params, "CallStatus": "ringing"}))
    keys, recordings, zips = list(plan["keys"]), [], list(plan.get("zips", ()))
    while keys and (reply.gather is not None or reply.record is not None):
        if reply.record is not None:
            reply, sid = caller.speak(seconds=plan["seconds"])
            recordings.append(sid)
            keys.pop(0)
        elif reply.menu_path() == "zip":  # five keys, or fewer and pound; nothing: the redirect
            entry = zips.pop(0) if zips else "-"
            reply = caller.wait() if entry == "-" else caller.press(entry)
        else:
            reply = caller.press(keys.pop(0))
    if plan["retry"]:  # Twilio sends a webhook again: the voice webhook, the simplest to repeat
        twilio.post("/twilio/voice", {**caller.params, "CallStatus": "ringing"})
    for sid in recordings:
        if plan["recording_status"]:
            callback(
                twilio,
                "/twilio/recording-status",
                CallSid=caller.sid,
                RecordingSid=sid,
                RecordingUrl=recording_url(sid),
                RecordingStatus=plan["recording_status"],
                RecordingDuration=str(plan["seconds"]),
                RecordingChannels="1",
                RecordingSource="RecordVerb",
            )
        if plan["transcription"]:
            callback(
                twilio,
                "/twilio/transcription",
                CallSid=caller.sid,
                RecordingSid=sid,
                RecordingUrl=recording_url(sid),
                TranscriptionSid="TR" + sid[2:],
                TranscriptionText="I support it.",
                TranscriptionStatus=plan["transcription"],
                TranscriptionUrl=recording_url(sid) + "/Transcriptions",
                TranscriptionType="fast",
            )
    callbacks = plan["status_callback"]
    for status in ["completed"] if callbacks is True else callbacks or []:
        caller.hang_up(duration=20, status=status)


def at_moments(lines: list[list], starts: dict[str, datetime]) -> list[list]:
    """The facts as if each call had started at its planned moment, a second per webhook
    (the webhooks of a test run are microseconds apart)."""
    webhook_no: dict[str, int] = {}
    for facts in lines:
        sid = next(f.args.get("call_sid") or f.args["values"]["call_sid"] for f in facts if f.name != "job")
        moment = starts[sid] + timedelta(seconds=webhook_no.setdefault(sid, 0))
        webhook_no[sid] += 1
        for fact in facts:
            if "at" in fact.args:
                fact.args["at"] = moment
            if "values" in fact.args:
                fact.args["values"]["started_at"] = moment
    return lines


def spooled_lines(app) -> list[list]:
    spool = write_path(app).spool
    lines = []
    for path in spool.files():
        for raw in path.read_bytes().split(b"\n"):
            if raw.strip():
                lines.append(loads(raw.decode()))
    return lines


def snapshot(app) -> dict:
    """Every stored fact and summary, as comparable values (ids and comment numbers, which
    depend on the order numbers were handed out, left aside)."""
    queries = {
        "calls": "SELECT call_sid, account_sid, from_number, caller_hash, to_number, from_city, from_state, from_zip, "
        "from_country, caller_name, language, entered_zip, zip_step, started_at, ended_at, duration, status, "
        "stir_verstat, caller_withheld, blocked FROM calls",
        "callback_requests": "SELECT call_sid, step, topic_id, recording_sid, requested_at, "
        "number_sealed IS NULL FROM callback_requests",
        "choices": "SELECT call_sid, step, kind, topic_id, language, stance, chosen_at FROM choices",
        "call_topics": "SELECT call_sid, topic_id, stance, stance_step FROM call_topics",
        "recordings": "SELECT recording_sid, call_sid, topic_id, stance, language, step, duration, status, "
        "finished_by, media_url, error_code, action_at, status_at, created_at FROM recordings",
        "transcriptions": "SELECT recording_sid, source, transcription_sid, language, status, text, created_at, "
        "updated_at FROM transcriptions",
        "jobs": "SELECT kind, key, state FROM jobs",
        "hourly_counts": "SELECT * FROM hourly_counts",
        "topic_callers": "SELECT topic_id, caller_hash, first_hour FROM topic_callers",
        "caller_hours": "SELECT hour, topic_id, caller_hash, calls FROM caller_hours",
        "caller_days": "SELECT day, topic_id, caller_hash, calls FROM caller_days",
        "zip_counts": "SELECT * FROM zip_counts",
        "caller_voices": "SELECT * FROM caller_voices",
        "voice_counts": "SELECT * FROM voice_counts",
        "caller_periods": "SELECT * FROM caller_periods",
        "period_callers": "SELECT * FROM period_callers WHERE callers <> 0",
    }
    with app.app_context():
        found = {name: sorted(map(tuple, db.session.execute(text(q)).all()), key=repr) for name, q in queries.items()}
        found["hourly_counts"] = [row for row in found["hourly_counts"] if any(row[2:])]  # zeros count nothing
        found["zip_counts"] = [row for row in found["zip_counts"] if any(row[4:])]
        found["voice_counts"] = [row for row in found["voice_counts"] if any(row[4:])]
        windows = [(None, None), *((s - timedelta(minutes=30), s + timedelta(hours=2)) for s in STARTS)]
        windows += [(datetime(2026, 11, 30), datetime(2026, 12, 1)), (datetime(2026, 11, 30), datetime(2026, 12, 2))]
        # Calendar windows, read from the per-period rows: a week (from Monday), months.
        windows += [(datetime(2026, 11, 30), datetime(2026, 12, 7)), (datetime(2026, 11, 1), datetime(2026, 12, 1))]
        windows += [(datetime(2026, 12, 1), datetime(2027, 1, 1)), (None, datetime(2026, 12, 1)), (STARTS[2], None)]
        found["tallies"] = [tally(db.session, since, until, districts=DISTRICTS).as_dict() for since, until in windows]
        found["inside"] = tally(db.session, inside=DISTRICTS[0], districts=DISTRICTS).as_dict()
        found["problems"] = verify_call_topics(db.session) + summary.verify(db.session)
    return found


def empty(app, url: str) -> None:
    """Every fact and summary gone; the line's script (its topics) kept."""
    with app.app_context():
        for table in (
            "calls choices call_topics recordings recording_aliases transcriptions jobs hourly_counts "
            "topic_callers caller_hours caller_days zip_counts caller_voices voice_counts caller_periods "
            "period_callers callback_requests kept_counts hour_changes"
        ).split():
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()


def deliver(app, batches: list[list[list]]) -> None:
    with app.app_context():
        for batch in batches:
            apply(db.session, *batch)
            db.session.commit()


call_plan = st.fixed_dictionaries(
    {
        "number": st.sampled_from(NUMBERS),
        "keys": st.one_of(st.lists(st.sampled_from(KEYS), max_size=9), st.sampled_from(ASKS_FOR_A_CALL_BACK)),
        "seconds": st.sampled_from([0, 7]),
        "recording_status": st.sampled_from([None, "completed", "absent"]),
        "transcription": st.sampled_from([None, "completed", "failed"]),
        # The call status callbacks' CallStatus: none, one or two, passing or final, or one the
        # line does not know ("answered" is an event, not a status: it ranks below every status).
        "status_callback": st.one_of(
            st.just(False),
            st.lists(st.sampled_from(["ringing", "in-progress", "completed", "no-answer", "answered"]), max_size=2),
        ),
        "retry": st.booleans(),
        "start": st.sampled_from(STARTS),
        "zips": st.lists(st.sampled_from(ZIP_ENTRIES), min_size=1, max_size=2),
        "verstat": st.sampled_from(VERSTATS),
    }
)
plans = st.lists(call_plan, min_size=1, max_size=5)


@pytest.fixture
def lines_of(tmp_path, database_url):
    """Play plans against a line whose database is away; return their spooled lines."""
    # The database is away, so the line answers from its script file: one whose budget topic
    # offers call-backs.
    script = tmp_path / "line.yaml"
    script.write_text(DEFAULT_LINE_CONFIG.read_text().replace("callback: false", "callback: true", 1))
    env = line_env(
        database_url, tmp_path / "capture", WRITE_BEHIND="0", DB_COOL_OFF_SECONDS="86400", LINE_CONFIG=str(script)
    )
    capture = create_app(env)
    with capture.app_context():
        load_script(db.session, read_script_file(capture.config["LINE_CONFIG"]))
        db.session.commit()
    path = write_path(capture)
    twilio = Twilio(lambda url, data, headers: capture.test_client().post(url, data=data, headers=headers))

    def marked(url, data, headers):  # as the console's "Try the line" sends: a test call
        mark = trial_mark(SECRETS["SECRET_KEY"], "live", data["CallSid"])
        return capture.test_client().post(url, data=data, headers={**headers, TRIAL_HEADER: mark})

    trial = Twilio(marked)

    def marked_after_the_greeting(url, data, headers):  # a call that records a prompt by phone
        if urlsplit(url).path == "/twilio/voice":
            return capture.test_client().post(url, data=data, headers=headers)
        return marked(url, data, headers)

    partway = Twilio(marked_after_the_greeting)
    callers = {False: twilio, True: trial, "partway": partway}

    def lines(plan_list: list[dict], zip_step: str = "off") -> list[list]:
        with capture.app_context():
            db.session.get(LineSettings, 1).zip_step = zip_step
            bump_version(db.session)
            db.session.commit()
            line_script(capture).forget()
            # Read now: while the database is "away" the webhooks answer with the script last read.
            assert line_script(capture).get(db.session).zip_step == zip_step
        for old in path.spool.files():
            old.unlink()
        path.breaker.trip()  # the database is away: every webhook's facts go to the spool
        starts = {}
        for plan in plan_list:
            before = set(twilio_sids(capture, path))
            play(callers[plan.get("test", False)], plan)
            for sid in set(twilio_sids(capture, path)) - before:
                starts[sid] = plan["start"]
        return at_moments(spooled_lines(capture), starts)

    yield lines
    path.replayer.stop()


def twilio_sids(app, path) -> set[str]:
    sids = set()
    for facts in spooled_lines(app):
        for fact in facts:
            if fact.name in ("call", "call_status"):
                sids.add(fact.args["values"]["call_sid"])
    return sids


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan_list=plans, seed=st.integers(0, 2**32 - 1), zip_step=st.sampled_from(["after_language", "after_topic"]))
def test_any_order_any_batches_count_the_same(app, database_url, lines_of, plan_list, seed, zip_step):
    lines = lines_of(plan_list, zip_step)
    if not lines:
        return
    empty(app, database_url)
    deliver(app, [[facts] for facts in lines])  # in the order they were answered, one by one
    in_order = snapshot(app)
    assert in_order["problems"] == []
    event(f"ZIP codes entered: {any(row[11] for row in in_order['calls'])}")
    event(f"voices: {len(in_order['caller_voices'])}")

    rng = random.Random(seed)
    shuffled = lines + rng.sample(lines, k=rng.randint(0, len(lines)))  # some twice
    rng.shuffle(shuffled)
    batches, i = [], 0
    while i < len(shuffled):
        size = rng.randint(1, 6)
        batches.append(shuffled[i : i + size])
        i += size
    empty(app, database_url)
    deliver(app, batches)
    assert snapshot(app) == in_order


def test_a_caller_learned_from_a_late_webhook_counts_once(app, lines_of, database_url):
    """The issue's case: a call first stored from its recording status callback (no `From`),
    its first webhook's facts arriving in a later batch."""
    plan = {
        "number": "+15035550101",
        "keys": ["1", "2", "1", "#", "2"],
        "seconds": 7,
        "recording_status": "completed",
        "transcription": "completed",
        "status_callback": True,
        "retry": False,
        "start": STARTS[0],
    }
    lines = lines_of([plan])
    callbacks_first = sorted(lines, key=lambda facts: facts[-1].name not in ("recording_status", "transcription"))
    empty(app, database_url)
    deliver(app, [[facts] for facts in lines])
    in_order = snapshot(app)
    empty(app, database_url)
    deliver(app, [[facts] for facts in callbacks_first])
    late = snapshot(app)
    assert late == in_order
    transit = next(t for t in late["tallies"][0]["topics"] if t["slug"] == "transit")
    assert (transit["calls"], transit["callers"]) == (1, 1)


@pytest.mark.skipif(not PG_URL, reason="two writers at once: PostgreSQL (SQLite takes one writer at a time)")
def test_two_writers_at_once_count_as_one(app, lines_of, database_url):
    """Two processes' writers (two connections, two threads) delivering the same calls'
    facts at once, each in its own random order and batches."""
    import threading

    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    rng = random.Random(12)
    plan_list = [
        {
            "number": rng.choice(NUMBERS),
            "keys": [rng.choice(KEYS) for _ in range(rng.randint(2, 8))],
            "seconds": 7,
            "recording_status": "completed",
            "transcription": rng.choice([None, "completed"]),
            "status_callback": True,
            "retry": rng.random() < 0.3,
            "start": rng.choice(STARTS),
        }
        for _ in range(30)
    ]
    lines = lines_of(plan_list)
    empty(app, database_url)
    deliver(app, [[facts] for facts in lines])
    in_order = snapshot(app)
    empty(app, database_url)

    def writer(seed: int) -> None:
        mine = random.Random(seed)
        order = lines[:]
        mine.shuffle(order)
        deliver(app, [order[i : i + 5] for i in range(0, len(order), 5)])

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert snapshot(app) == in_order


@pytest.mark.skipif(not PG_URL, reason="two writers at once: PostgreSQL (SQLite takes one writer at a time)")
def test_a_recording_inserted_meanwhile_is_filled_as_stored(app, lines_of, database_url):
    """A writer that finds a recording missing, then finds it inserted by another writer
    before its own insert (facts of one recording that do not name its call, so nothing
    else puts the two one after the other), fills the other's row: the same rows and counts
    as the facts written one after the other."""
    import threading

    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    plan = {
        "number": NUMBERS[0],
        "keys": ["1", "1", "1", "#"],  # English, the budget, a position, the comment
        "seconds": 7,
        "recording_status": "completed",
        "transcription": "completed",
        "status_callback": True,
        "retry": False,
        "start": STARTS[2],
    }
    lines = lines_of([plan])
    # The writer held open: every webhook up to the recording's action, which inserts its row.
    action_at = next(i for i, line in enumerate(lines) if any(f.name == "recording_action" for f in line))
    held = lines[: action_at + 1]
    # The other: the recording's status and transcript, without the webhooks' facts of the call.
    late = [f for line in lines[action_at + 1 :] for f in line if f.name in ("recording_status", "transcription")]
    rest = [[f for f in line if f.name not in ("recording_status", "transcription")] for line in lines[action_at + 1 :]]
    assert {f.name for f in late} == {"recording_status", "transcription"}
    deliver(app, [held, [late], rest])
    one_after_the_other = snapshot(app)
    empty(app, database_url)

    def waiting_for_a_lock() -> bool:
        with app.app_context():
            return db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one() > 0

    with app.app_context():
        apply(db.session, *held)  # not committed: its recording's row is not seen by others yet
        other = threading.Thread(target=deliver, args=(app, [[late]]))
        other.start()
        assert eventually(waiting_for_a_lock, bool, timeout=10), "the other writer did not wait for the first"
        db.session.commit()
    other.join(timeout=30)
    assert not other.is_alive()
    deliver(app, [rest])
    assert snapshot(app) == one_after_the_other
    with app.app_context():
        status, transcripts = db.session.execute(
            text(
                "SELECT r.status, count(t.id) FROM recordings r LEFT JOIN transcriptions t "
                "ON t.recording_sid = r.recording_sid GROUP BY r.status"
            )
        ).one()
    assert (status, transcripts) == ("completed", 1)


def is_test_call(facts: list) -> bool:
    return any(f.args.get("values", {}).get("is_test") for f in facts if f.name in ("call", "call_status"))


def call_sids_of(facts: list) -> set[str]:
    return {f.args["values"]["call_sid"] for f in facts if f.name in ("call", "call_status")} | {
        f.args["call_sid"] for f in facts if "call_sid" in f.args
    }


COUNTED_PARTS = ("hourly_counts", "topic_callers", "caller_hours", "caller_days", "tallies", "problems")


@settings(
    max_examples=max(5, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan_list=st.lists(st.tuples(call_plan, st.sampled_from([False, True, "partway"])), min_size=1, max_size=5).map(
        lambda pairs: [{**plan, "test": test} for plan, test in pairs]
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_test_calls_count_for_nothing_in_any_order(app, database_url, lines_of, plan_list, seed):
    """Calls played from "Try the line" (every webhook marked), and calls marked only after
    their first webhook (as a call that records a prompt by phone: counted, then a test call),
    mixed with real ones, their facts delivered shuffled, some twice, in random batches: every
    summary and count is what the real calls alone give."""
    lines = lines_of(plan_list)
    if not lines:
        return
    test_sids = set().union(*(call_sids_of(facts) for facts in lines if is_test_call(facts)))
    empty(app, database_url)
    deliver(app, [[facts] for facts in lines if not call_sids_of(facts) & test_sids])
    real_only = snapshot(app)
    rng = random.Random(seed)
    shuffled = lines + rng.sample(lines, k=rng.randint(0, len(lines)))
    rng.shuffle(shuffled)
    batches = [shuffled[i : i + 3] for i in range(0, len(shuffled), 3)]
    empty(app, database_url)
    deliver(app, batches)
    mixed = snapshot(app)
    assert {k: mixed[k] for k in COUNTED_PARTS} == {k: real_only[k] for k in COUNTED_PARTS}
    with app.app_context():
        tests = db.session.execute(text("SELECT count(*) FROM calls WHERE is_test")).scalar_one()
    assert tests == len(test_sids)  # a call marked partway, which hung up at the greeting, is none
