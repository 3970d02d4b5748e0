"""Reference numbers: the number a caller hears finds their comment, whichever process
answered, however often, and whatever callback came first. With write-behind, processes
give numbers from blocks they took in advance (facts/numbers.py)."""

from __future__ import annotations

import itertools
import sys
import threading

from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text

from app import create_app
from config import PROJECT_DIR
from facts import write_path
from facts.numbers import BLOCK, Numbers
from facts.record import Fact
from facts.writer import apply, take_numbers
from ivr.caller import REFERENCE
from models import Recording, db
from models.comments import get_comment
from models.recordings import RecordingAlias, recording_for_reference, reference_for
from tests.conftest import Twilio, in_process_twilio, recording_url


def heard(reply) -> str:
    found = {m.replace(", ", "") for m in REFERENCE.findall(reply.said)}
    assert len(found) == 1, reply.said
    return found.pop()


def at_the_recording(twilio: Twilio):
    """A call that has chosen English and housing (no position asked): its reply holds the
    `<Record>`."""
    call = twilio.call()
    call.dial()
    call.press("1")
    call.press("3")
    return call


def twilio_of(app) -> Twilio:
    return in_process_twilio(app)


def test_the_number_read_back_finds_the_comment(twilio, app):
    reply, sid = at_the_recording(twilio).speak()
    reference = heard(reply)
    with app.app_context():
        recording = recording_for_reference(db.session, reference)
        assert (recording.recording_sid, recording.reference) == (sid, reference)
        assert get_comment(db.session, reference).recording.recording_sid == sid
        assert recording_for_reference(db.session, sid).id == recording.id  # a RecordingSid works too


def test_every_number_a_caller_heard_finds_the_comment_across_processes(settings, app):
    """Two processes writing behind their replies: a recording callback first (its row gets a
    number no one heard), the action twice to one process (the same number), then to the
    other (another number). The first number heard is the comment's; both find it."""
    first, second = (create_app({**settings, "WRITE_BEHIND": "1"}) for _ in range(2))
    line, other = twilio_of(first), twilio_of(second)
    call = at_the_recording(line)
    record = call.reply
    sid = "RE" + "5" * 32
    call.recording_status(sid)
    assert write_path(first).flush()
    with app.app_context():
        unheard = db.session.scalar(select(Recording).where(Recording.recording_sid == sid)).reference
    call.reply = record
    once = heard(call.speak(sid=sid)[0])
    call.reply = record
    again = heard(call.speak(sid=sid)[0])
    assert once == again != unheard
    assert write_path(first).flush()
    elsewhere = heard(other.call(call_sid=call.sid).post(record.action, Digits="#", **speech(sid)))
    assert elsewhere != once
    assert write_path(second).flush()
    with app.app_context():
        recording = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert recording.reference == once
        for reference in (once, elsewhere):
            assert recording_for_reference(db.session, reference).id == recording.id, reference
            assert get_comment(db.session, reference).recording.id == recording.id
        assert recording_for_reference(db.session, unheard) is None
        assert db.session.scalar(select(func.count()).select_from(RecordingAlias)) == 1


def speech(sid: str) -> dict:
    return {"RecordingSid": sid, "RecordingUrl": recording_url(sid), "RecordingDuration": "12"}


def test_processes_take_numbers_in_blocks_and_never_share_one(app):
    with app.app_context():
        blocks = []

        def take(count: int) -> list[int]:
            with db.engine.begin() as connection:
                blocks.append(take_numbers(connection, count))
            return blocks[-1]

        one, two = Numbers(block=3, max_block=3), Numbers(block=3, max_block=3)
        given = [numbers.for_recording(f"RE{i}", take) for numbers in (one, two) for i in range(4)]
        assert len(blocks) == 4 and all(len(block) == 3 for block in blocks)
        assert len(set(given)) == 8
        assert one.for_recording("RE0", take) == given[0]  # remembered
        assert one.for_recording("RE9", lambda count: None) == blocks[1][1]  # the block's next
        assert one.for_recording("RE10", lambda count: None) == blocks[1][2]
        assert one.for_recording("RE11", lambda count: None) is None  # none left, and none to take


def test_blocks_follow_the_pace_numbers_are_given_at():
    """Each block holds about BLOCK_SECONDS of the pace since the last was asked for (over a
    second at least), in sizes doubling from the smallest and never beyond the largest; a
    process back to a slow pace goes back to small blocks; the writer takes a block ahead
    only while the process is still running low."""
    now = [0.0]
    numbers = Numbers(block=10, max_block=80, clock=lambda: now[0])
    counter, sids, taken = itertools.count(1), itertools.count(), []

    def take(count: int) -> list[int]:
        taken.append(count)
        return [next(counter) for _ in range(count)]

    def give(count: int, every: float) -> list[int]:
        given = []
        for _ in range(count):
            given.append(numbers.for_recording(f"RE{next(sids)}", take))
            now[0] += every
        return given

    given = give(10, 1.0)  # the first block: the smallest; then one a second
    given += give(10, 0.4)  # ten in the ten seconds since: one a second, 10 again
    assert taken == [10, 10]
    given += give(1, 0.0)  # ten in the four seconds since: 25 in ten seconds, so 40
    assert taken == [10, 10, 40]
    given += give(39, 0.0)
    given += give(1, 0.0)  # forty in no time, counted over a second: beyond the largest
    assert taken == [10, 10, 40, 80]
    given += give(79, 10.0)
    given += give(1, 0.0)  # one every ten seconds: back to the smallest
    assert taken == [10, 10, 40, 80, 10]
    assert not numbers.running_low() and numbers.next_block() == 0  # 9 of 10 left: no need
    given += give(5, 1.0)
    assert numbers.running_low() and numbers.next_block() == 20  # 4 left; 6 in 5 s: 12 in 10 s
    assert len(given) == len(set(given)) == 146


def test_threads_giving_numbers_at_once_give_each_recording_one():
    """Eight threads give numbers at once, switching as often as Python lets them, each
    recording asked for by two threads (a retry racing its original): every recording gets
    one number whichever thread asks, no two recordings share one, and the blocks they came
    from were taken one at a time."""
    switching = sys.getswitchinterval()
    counter, taking, blocks = itertools.count(1), threading.Lock(), []

    def take(count: int) -> list[int]:
        assert taking.acquire(blocking=False), "two threads took a block at once"
        try:
            blocks.append(count)
            return [next(counter) for _ in range(count)]
        finally:
            taking.release()

    numbers = Numbers(block=7, max_block=56, remembered=100_000)
    answers: list[list[tuple[str, int]]] = [[] for _ in range(8)]
    failures: list[BaseException] = []
    together = [threading.Barrier(2) for _ in range(4)]

    def give(thread: int) -> None:
        try:
            for i in range(5000):
                sid = f"RE{i}-{thread // 2}"  # threads 2k and 2k + 1 ask for the same...
                together[thread // 2].wait(timeout=30)  # ...at the same moment
                answers[thread].append((sid, numbers.for_recording(sid, take)))
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is the test's
            failures.append(exc)

    threads = [threading.Thread(target=give, args=(t,)) for t in range(8)]
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switching)
    assert not failures, failures
    by_sid: dict[str, set[int]] = {}
    for sid, number in itertools.chain.from_iterable(answers):
        by_sid.setdefault(sid, set()).add(number)
    assert all(len(given) == 1 and None not in given for given in by_sid.values())
    given = [number for (number,) in by_sid.values()]
    assert len(given) == len(set(given)) == 20_000
    assert sum(blocks) >= len(given)


def test_a_thread_that_lost_the_race_for_a_recording_gives_its_number_back():
    """The race the threads test can only hope to meet, played step by step: a thread has
    taken a number for a recording (`popleft`) when another gives that recording one first.
    It answers with the other's, and its own is the next given."""
    counter = itertools.count(1)
    numbers = Numbers(block=5, max_block=5)
    first = numbers.for_recording("RE-retried", lambda count: [next(counter) for _ in range(count)])
    taken = numbers._free.popleft()  # the slower thread's step before it gives
    assert numbers._give("RE-retried", taken) == first
    assert numbers.for_recording("RE-next", lambda count: None) == taken


def test_a_process_takes_its_next_block_before_it_runs_out(settings, app):
    """Once half its block is given, the writer takes the process's next block in its own
    thread: the counter has moved two blocks before the first is used up, and the numbers
    callers hear stay distinct and rising across the blocks."""
    behind = create_app({**settings, "WRITE_BEHIND": "1"})
    line = twilio_of(behind)
    references = [heard(at_the_recording(line).speak()[0]) for _ in range(BLOCK // 2 + 1)]
    assert write_path(behind).flush()  # the batch, then the block ahead, in the writer's thread
    with app.app_context():
        first = recording_for_reference(db.session, references[0]).number
        # the first block, and the next one ahead (at least as big: sized to the pace)
        assert db.session.scalar(text("SELECT next_number FROM recording_numbers")) >= first + 2 * BLOCK
    references += [heard(at_the_recording(line).speak()[0]) for _ in range(BLOCK)]
    assert write_path(behind).flush()
    with app.app_context():
        numbers = [recording_for_reference(db.session, reference).number for reference in references]
    assert numbers == sorted(set(numbers)) and numbers[-1] >= first + BLOCK


def test_stored_comments_keep_their_reference_through_the_migration(app, twilio):
    """Before numbers, a reference was made from the row id: those still find their comment,
    and numbers given after the migration are new ones."""
    at_the_recording(twilio).speak()
    with app.app_context():
        db.session.remove()
        migrations = str(PROJECT_DIR / "migrations")
        downgrade(directory=migrations, revision="5b2f8c1d9e47")
        (row_id,) = db.session.execute(text("SELECT id FROM recordings")).one()
        db.session.remove()
        upgrade(directory=migrations)
        recording = recording_for_reference(db.session, reference_for(row_id))
        assert recording is not None and recording.number == recording.id == row_id
        db.session.remove()
    later = heard(at_the_recording(twilio).speak()[0])
    with app.app_context():
        assert recording_for_reference(db.session, later).number > recording.id


def test_a_number_another_comment_has_loses_nothing(app, twilio):
    """A journal replayed into a database restored from an older backup may carry numbers its
    counter gives again: the comment is stored all the same, with a number of its own, and
    the counter moves past every number given."""
    call = at_the_recording(twilio)
    reference = heard(call.speak()[0])
    with app.app_context():
        first = recording_for_reference(db.session, reference)
        late = {
            "recording_sid": "RE" + "7" * 32,
            "call_sid": call.sid,
            "at": first.created_at,
            "topic": "housing",
            "language": "en-US",
            "step": 9,
            "duration": 5,
            "number": first.number,
        }
        with db.engine.begin() as connection:
            apply(connection, [Fact("recording_action", late)], [Fact("recording_action", {**late, "number": 5000})])
        stored = db.session.scalar(select(Recording).where(Recording.recording_sid == late["recording_sid"]))
        assert stored.number not in (None, first.number)
        assert recording_for_reference(db.session, reference).id == first.id
        with db.engine.begin() as connection:
            assert min(take_numbers(connection, 1)) > 5000
