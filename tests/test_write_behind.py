"""Write-behind and batches: a webhook's facts written together with many others' (in one
transaction of facts/writer.py) count exactly as they would alone; the writer thread stores
what the webhooks journalled; a dead process's journal is replayed, a live one's is not; a
fact the database refuses costs only its own webhook."""

from __future__ import annotations

import fcntl
import os

import pytest
from sqlalchemy import select

from facts import write_path
from models import Call, db
from tests.conftest import eventually
from tests.test_facts import play_to_record, topic


def counts(api) -> dict:
    body = api("/api/v1/counts").json
    return {
        "calls": (body["calls"], body["unrouted"]),
        **{t["slug"]: (t["calls"], t["callers"], t["comments"], t["stance"]) for t in body["topics"]},
    }


def stance(support=0, oppose=0, other=0) -> dict:
    return {"support": support, "oppose": oppose, "other": other}


def hold_the_database(app):
    """Make every webhook spool its facts, as when the database is away."""
    breaker = write_path(app).breaker
    breaker.cool_off = 3600
    breaker.trip()
    return breaker, write_path(app).spool


def reopen_the_database(app) -> None:
    """The database is back; the test replays the spool itself (no replayer thread races it)."""
    write_path(app).replayer.stop()
    write_path(app).breaker.reset()


def play_the_hard_cases(twilio) -> dict:
    """Calls that exercise every rule, each webhook delivered twice; what they must count."""
    original = twilio.send
    twilio.send = lambda url, params, headers: (original(url, params, headers), original(url, params, headers))[1]
    # Budget: support, then the position changed to oppose on a second pass; then transit.
    call = play_to_record(twilio, ("1", "1", "1"))
    saved, sid = call.speak(seconds=9)
    call.transcription(sid, text="first")  # the transcript before the status callback
    call.recording_status(sid, seconds=9)
    call.reply = saved
    call.press("1")
    call.press("1")
    call.press("2")  # budget again: oppose
    call.speak(seconds=4)
    call.press("1")
    call.press("2")  # transit
    call.press("3")  # other
    reply, sid = call.speak(seconds=0)  # nothing said: not a comment
    call.recording_status(sid, seconds=0)
    call.hang_up()
    # The same caller again, in Spanish: budget, support; the status callback comes first.
    again = play_to_record(twilio, ("2", "1", "1"))
    record = again.reply
    again.recording_status("RE" + "b" * 32, seconds=20)
    again.reply = record
    again.speak(seconds=20, sid="RE" + "b" * 32)
    # A withheld number: housing, its recording failed; then a call that hangs up at once.
    withheld = twilio.call(From="anonymous")
    withheld.dial()
    withheld.press("1")
    withheld.press("3")
    _, sid = withheld.speak(seconds=5)
    withheld.recording_status(sid, status="failed", seconds=5)
    short = twilio.call(From="+15035550111")
    short.dial()
    short.hang_up(duration=2)
    twilio.send = original
    return {
        "calls": (4, 1),
        "budget": (2, 1, 3, stance(support=1, oppose=1)),
        "transit": (1, 1, 0, stance(other=1)),
        "housing": (1, 0, 0, stance()),
        "general": (0, 0, 0, stance()),
    }


def test_many_webhooks_in_one_transaction_count_as_each_alone(app, twilio, api):
    """Everything the calls said waits in the spool (the database "away"), then the replay
    writes it all in one transaction, as the write-behind writer does under load."""
    breaker, spool = hold_the_database(app)
    expected = play_the_hard_cases(twilio)
    waiting = spool.depth()
    assert waiting > 50 and api("/api/v1/counts").json["calls"] == 0
    reopen_the_database(app)
    with app.app_context():
        report = spool.replay(db.session)
    assert (report.written, report.rejected, spool.depth()) == (waiting, 0, 0)
    assert counts(api) == expected
    # and the fixture checks every summary against the facts


def test_call_statuses_in_one_transaction_end_as_they_would_one_by_one(app, twilio):
    """Status callbacks written together (a batch, or the spool's replay): a call's last final
    status stands, whatever came after it; a late non-final one moves no final status, stored
    or in the same batch; without a final one, the last one stands."""
    done = twilio.call()
    done.dial()
    done.hang_up(duration=12)  # stored before the batch
    breaker, spool = hold_the_database(app)
    done.hang_up(duration=0, status="in-progress")
    ended = twilio.call()
    ended.dial()
    ended.hang_up(duration=0, status="in-progress")
    ended.hang_up(duration=30, status="completed")
    ended.hang_up(duration=0, status="ringing")
    ended.hang_up(duration=31, status="busy")
    ongoing = twilio.call()
    ongoing.dial()
    ongoing.hang_up(duration=0, status="ringing")
    ongoing.hang_up(duration=5, status="in-progress")
    assert spool.depth() == 9
    reopen_the_database(app)
    with app.app_context():
        assert (spool.replay(db.session).written, spool.depth()) == (9, 0)
        found = {
            c.call_sid: (c.status, c.duration, c.ended_at is not None)
            for c in db.session.scalars(select(Call).order_by(Call.call_sid))
        }
    assert found == {
        done.sid: ("completed", 12, True),
        ended.sid: ("busy", 31, True),
        ongoing.sid: ("in-progress", 5, False),
    }


@pytest.fixture
def behind_settings(settings):
    settings["WRITE_BEHIND"] = "1"
    return settings


def test_write_behind_stores_what_the_webhooks_journalled(behind_settings, app, twilio, api):
    expected = play_the_hard_cases(twilio)
    assert write_path(app).flush()
    assert counts(api) == expected
    spool = write_path(app).spool
    assert list(spool.dir.glob("*.journal"))  # this thread's journal, its lines written
    assert spool.files() == []  # a live process's journal is its own to write
    write_path(app).close()  # as at the process's end
    assert list(spool.dir.glob("*.journal")) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="the kernel's thread names are read from /proc")
def test_the_writer_thread_is_named_for_the_kernel(behind_settings, app, twilio):
    """`top -H` and the benchmark's per-thread CPU figures tell the writer by its name."""
    play_to_record(twilio, ("1", "1", "1"))
    assert write_path(app).flush()
    writer = write_path(app)._thread
    assert writer is not None and writer.is_alive()
    with open(f"/proc/self/task/{writer.native_id}/comm") as comm:
        assert comm.read().strip() == "write-behind"


@pytest.fixture
def journals(app, twilio):
    """A comment's four webhooks in the journal of a process that died (nobody holds its
    lock), and the same in the journal of one still writing it (a lock held here)."""
    hold_the_database(app)
    call = play_to_record(twilio, ("1", "3"))
    call.speak(seconds=6)
    reopen_the_database(app)
    spool = write_path(app).spool
    (spooled,) = spool.files()
    stamp = spool.stamp.current  # written for this database
    dead, live = spool.dir / f"{stamp}~elsewhere-4242-abc.journal", spool.dir / f"{stamp}~elsewhere-4343-def.journal"
    spooled.rename(dead)
    live.write_bytes(dead.read_bytes())
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    yield spool, dead, live
    os.close(holder)
    live.unlink()


def test_a_dead_process_journal_is_replayed_and_a_live_one_is_not(app, api, journals):
    spool, dead, live = journals
    assert spool.files() == [dead]
    with app.app_context():
        assert spool.replay(db.session).written == 4
    assert spool.files() == [] and live.exists()
    assert topic(api, "housing")["comments"] == 1


def test_a_refused_fact_costs_only_its_own_webhook(app, twilio, api):
    breaker, spool = hold_the_database(app)
    first = play_to_record(twilio, ("1", "3"))
    _, sid = first.speak(seconds=6)
    first.transcription(sid, text="mine")
    second = play_to_record(twilio, ("1", "3"))
    _, other = second.speak(seconds=7)
    # A transcription callback that names the first one's TranscriptionSid for another
    # recording: the database refuses it (the sid is unique), and only it.
    second.post(
        "/twilio/transcription",
        RecordingSid=other,
        TranscriptionSid="TR" + sid[2:],
        TranscriptionText="not mine",
        TranscriptionStatus="completed",
    )
    reopen_the_database(app)
    waiting = spool.depth()
    with app.app_context():
        report = spool.replay(db.session)
    assert (report.written, report.rejected) == (waiting - 1, 1)
    assert "not mine" in (spool.dir / "rejected.jsonl").read_text()
    housing = topic(api, "housing")
    assert (housing["calls"], housing["comments"]) == (2, 2)


def test_a_journal_keeps_only_what_is_not_yet_written(behind_settings, app, twilio, api):
    """A thread's journal is deleted once it is written and a couple of seconds old, so that
    a crash replays little that was already written; the next webhook starts a new one."""
    from facts.journal import SEGMENT_SECONDS

    call = play_to_record(twilio, ("1", "3"))
    spool = write_path(app).spool
    assert write_path(app).flush() and list(spool.dir.glob("*.journal"))
    assert eventually(lambda: list(spool.dir.glob("*.journal")), lambda left: not left, SEGMENT_SECONDS + 5) == []
    call.speak(seconds=4)
    assert write_path(app).flush()
    assert topic(api, "housing")["comments"] == 1
    assert len(list(spool.dir.glob("*.journal"))) == 1


def test_a_removed_transcript_stays_removed_when_the_callback_comes_again(app, twilio, api):
    from sqlalchemy import select

    from models import Recording, Transcription
    from models.comments import remove_transcripts

    call = play_to_record(twilio, ("1", "3"))
    _, sid = call.speak(seconds=6)
    call.transcription(sid, text="my neighbour's name is in this")
    with app.app_context():
        remove_transcripts(db.session, db.session.scalar(select(Recording)), "a name")
        db.session.commit()
    call.transcription(sid, text="my neighbour's name is in this")  # Twilio retried, or a replay
    with app.app_context():
        kept = db.session.scalar(select(Transcription))
        assert (kept.status, kept.text) == ("redacted", None)


def test_a_journal_left_half_made_is_swept_once_stale(app):
    import os
    import time

    spool = write_path(app).spool
    spool.dir.mkdir(parents=True, exist_ok=True)
    stale, fresh = spool.dir / "gone-1-abc.making", spool.dir / "gone-2-def.making"
    stale.touch()
    fresh.touch()
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    with app.app_context():
        spool.replay(db.session)
    assert not stale.exists() and fresh.exists()  # a process may be making that one now


def test_spool_commands_tell_waiting_from_live_journals(api, runner, journals):
    shown = runner.invoke(args=["spool", "status"]).output
    # In use: the one held here, and this process's own (the webhooks above were journalled).
    assert "4 transaction(s) waiting" in shown and "2 journal(s) in use" in shown
    replayed = runner.invoke(args=["spool", "replay"])
    assert replayed.exit_code == 0 and "wrote 4, rejected 0" in replayed.output
    assert topic(api, "housing")["comments"] == 1


def test_journal_fsync_mode_stores_the_same(settings, app, twilio, api):
    settings["WRITE_BEHIND"] = "1"
    settings["JOURNAL_FSYNC"] = "1"
    from app import create_app
    from models.line import load_script, read_script_file
    from tests.conftest import Twilio

    durable = create_app(settings)
    with durable.app_context():
        load_script(db.session, read_script_file(durable.config["LINE_CONFIG"]))
        db.session.commit()
    assert write_path(durable).fsync
    client = durable.test_client()
    caller = Twilio(lambda url, params, headers: client.post(url, data=params, headers=headers)).call()
    caller.dial()
    caller.press("1")
    caller.press("3")
    caller.speak(seconds=5)
    assert write_path(durable).flush()
    assert topic(api, "housing")["comments"] == 1
    write_path(durable).close()
    with durable.app_context():
        db.engine.dispose()


KILLED_WRITER = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from facts.journal import Segment
from models.calls import call_values
from facts.record import Fact, line_of

segment = Segment(Path(sys.argv[1]), sys.argv[3])
for n in range(int(sys.argv[2])):
    sid = f"CA{n:032d}"
    form = {"CallSid": sid, "From": f"+1503555{n:04d}", "To": "+15035550199"}
    now = datetime(2026, 11, 30, 12, 0, 0)
    values = call_values(form, mode="hash", key="test-key", seen_at=now)
    choice = {"call_sid": sid, "step": 2, "kind": "topic", "at": now, "topic": "housing"}
    segment.append(line_of([Fact("call", {"values": values}), Fact("choice", choice)]), sync=False)
os.kill(os.getpid(), signal.SIGKILL)  # nothing flushed, nothing closed, nothing written
"""


def test_a_killed_process_journal_is_replayed_line_for_line(app, api):
    """A journal is made at its full size and mapped into memory, so a line is on its way to
    the disk once copied there: the lines of a process killed right after are all replayed,
    once each, and the zeros after the last one are neither a line nor a torn one."""
    import subprocess
    import sys

    from config import PROJECT_DIR

    spool = write_path(app).spool
    spool.dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-c", KILLED_WRITER, str(spool.dir), "300", spool.stamp.current]
    done = subprocess.run(args, cwd=PROJECT_DIR)
    assert done.returncode == -9
    (journal,) = spool.files()
    assert journal.suffix == ".journal" and journal.stat().st_size > 300 * 100  # its full size, zeros after
    assert spool.depth() == 300
    with app.app_context():
        report = spool.replay(db.session)
    assert (report.written, report.torn, report.rejected) == (300, 0, 0)
    assert spool.files() == []
    assert topic(api, "housing")["calls"] == 300 and api("/api/v1/counts").json["calls"] == 300


def test_a_journal_line_gives_back_the_facts_it_was_written_from():
    """Every kind of fact, read back from its line with its moments as datetimes (written as
    ISO text, turned back by where they are); and a line written with the earlier form of a
    moment reads the same."""
    from datetime import datetime

    from facts.record import Fact, line_of, loads

    now, whole = datetime(2026, 11, 30, 12, 0, 0, 123456), datetime(2026, 11, 30, 12, 0, 40)
    sid, rec = "CA" + "1" * 32, "RE" + "2" * 32
    values = {"call_sid": sid, "from_number": "+15035550100", "started_at": now, "from_city": None}
    facts = [
        Fact("call", {"values": values, "language": "es-US"}),
        Fact("call_status", {"values": values, "status": "completed", "duration": 40, "ended_at": whole}),
        Fact("choice", {"call_sid": sid, "step": 2, "kind": "topic", "at": now, "topic": "budget"}),
        Fact("recording_action", {"recording_sid": rec, "call_sid": sid, "at": now, "number": 7, "step": 4}),
        Fact("recording_status", {"recording_sid": rec, "call_sid": sid, "at": whole, "status": "completed"}),
        Fact("transcription", {"recording_sid": rec, "at": now, "source": "twilio", "text": "at 9 on 2026-11-30"}),
        Fact("job", {"kind": "download", "key": rec, "max_attempts": 5}),
    ]
    assert loads(line_of(facts).decode()) == facts
    earlier = '[["choice", {"call_sid": "' + sid + '", "at": {"$dt": "2026-11-30T12:00:00.123456"}, "step": 2}]]'
    assert loads(earlier) == [Fact("choice", {"call_sid": sid, "at": now, "step": 2})]


def test_a_journal_line_holds_no_more_memory_than_its_text():
    """The writer's queue keeps each webhook's line until its batch is written (to spool it if
    the database refuses the batch): a line must cost about its length, not the serializer's
    working buffer."""
    import tracemalloc
    from datetime import datetime

    from facts.record import Fact, line_of

    values = {"call_sid": "CA" + "1" * 32, "from_number": "+15035550100", "started_at": datetime(2026, 12, 2)}
    facts = [Fact("call", {"values": values, "language": "en-US"})]
    tracemalloc.start()
    try:
        lines = [line_of(facts) for _ in range(200)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < len(lines) * (len(lines[0]) + 200)


def test_a_forked_process_knows_its_own_id():
    """Journals are per process: a fork (gunicorn's preload) must not append to its parent's."""
    from facts.threads import This

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports what it sees, and leaves without running pytest's exit
        os.write(write, f"{This.pid} {os.getpid()}".encode())
        os._exit(0)
    os.waitpid(child, 0)
    seen, actual = os.read(read, 100).decode().split()
    assert seen == actual == str(child) and This.pid == os.getpid() != child
