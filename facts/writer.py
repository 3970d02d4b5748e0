"""Writing facts, many webhooks' worth in one transaction, by the merge rules of facts/rules.py.

`write(connection, groups)` takes the facts of one or many webhooks (each group one webhook's
facts) and stores them with a fixed number of statements per batch, whatever its size: one
multi-row `INSERT … ON CONFLICT` per table (facts/statements.py), the summaries added up in
Python (`rules.Counts`) and upserted once per row. It is the only code that writes the
webhooks' facts: a webhook's own transaction (a batch of one), the write-behind writer
(facts/journal.py), the spool's replay and the worker's transcripts all come here;
`take_numbers` gives the web processes comment numbers in blocks.

Whatever order and batches a call's facts arrive in, and however often, the stored rows and
the summaries end the same: each stored column follows its merge rule (facts/rules.py), a
summary moves only when a fact changed something, and when a merge moves a call's start to
another hour or learns its caller, what the call already counted for moves with it, once.

One voice per caller: for each (caller, topic) whose positions a batch changed (a new or
changed position, a call whose start, caller or ZIP code moved), `note_voices` reads the
caller's stored positions on the topic and derives their latest per day, week, month and all
time again (`rules.latest_positions`), then moves `voice_counts` by the difference. On
PostgreSQL it first takes the (caller, topic)'s all-time row in `caller_voices` (inserting or
locking it), so two batches about one caller's calls derive one after the other, the second
from what the first committed; SQLite runs one batch at a time.

Concurrency (PostgreSQL, several processes or instances writing at once): the batch first
locks the rows of every call it names, in `CallSid` order, with one statement; everything
derived from a call (its topics and positions, its recordings) is only changed by a
transaction that holds that lock. Other rows are taken in a fixed order of tables and, within
a table, in key order, so two batches wait for each other but never deadlock on their own
rows. SQLite has one writer at a time: a batch begins with `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import insert, select

from models.base import utcnow
from models.holds import HeldTranscript, LegalHold, covers_recording, is_active
from models.recordings import Recording, is_comment
from models.summary import COUNTED, STANCE_NAMES, ZIP_COUNTED, hour_of

from . import rules
from .record import Fact
from .rules import CALL_FIELDS, FINAL_CALL_STATUSES, CallState, Counts, Position, zip_key
from .statements import Statements

log = logging.getLogger(__name__)
RECORDING_FIELDS = (
    "topic_id",
    "stance",
    "language",
    "step",
    "duration",
    "status",
    "finished_by",
    "media_url",
    "error_code",
    "action_at",
    "status_at",
    "number",
    "created_at",
)


class KnownCall(NamedTuple):
    """What the writer needs to know of a call its batch names, as stored or about to be."""

    started_at: datetime
    caller: str | None
    entered_zip: str | None
    is_test: bool


def known_call(values: dict) -> KnownCall:
    return KnownCall(values["started_at"], values["caller_hash"], values["entered_zip"], values["is_test"])


class Batch:
    """One transaction's worth of facts, sorted by what they are about, each kind already
    merged by its rule (so that a batch is the same whatever order its facts came in)."""

    def __init__(self, groups: Iterable[Sequence[Fact]]) -> None:
        self.calls: dict[str, dict] = {}  # call_sid -> its values, merged
        self.statuses: dict[str, tuple] = {}  # call_sid -> (status, duration, ended_at) that stands
        self.choices: dict[tuple[str, int], dict] = {}
        self.recordings: dict[str, list] = {}  # recording_sid -> its facts
        self.transcripts: dict[tuple[str, str], dict] = {}  # the latest per (recording, source)
        self.jobs: dict[tuple[str, str], dict] = {}
        self.callbacks: dict[tuple[str, int], dict] = {}  # (call_sid, step) -> the earliest request
        for group in groups:
            for fact in group:
                self.add(fact.name, fact.args)

    def add(self, name: str, args: dict) -> None:
        if name in ("call", "call_status"):
            values = {**args["values"], "language": args.get("language")}
            sid = values["call_sid"]
            self.calls[sid] = rules.merge_call(self.calls.get(sid), values)
            if name == "call_status":
                final = args["status"] in FINAL_CALL_STATUSES  # a passing status has no end
                status = (args["status"], args.get("duration"), args.get("ended_at") if final else None)
                self.statuses[sid] = rules.standing_status(self.statuses.get(sid), status)
        elif name == "choice":
            key = (args["call_sid"], args["step"])
            earlier = self.choices.get(key)
            if earlier is None or args["at"] < earlier["at"]:
                self.choices[key] = args
        elif name in ("recording_action", "recording_status"):
            self.recordings.setdefault(args["recording_sid"], []).append((name, args))
        elif name == "transcription":
            self.recordings.setdefault(args["recording_sid"], []).append((name, args))
            key = (args["recording_sid"], args["source"])
            earlier = self.transcripts.get(key)
            if earlier is None:
                self.transcripts[key] = {**args, "first_at": args["at"]}
            else:
                first_at = min(earlier["first_at"], args["at"])
                later = args if args["at"] >= earlier["at"] else earlier
                language = later.get("language") or (earlier if later is args else args).get("language")
                self.transcripts[key] = {**later, "first_at": first_at, "language": language}
        elif name == "job":
            self.jobs.setdefault((args["kind"], args["key"]), args)
        elif name == "callback":
            key = (args["call_sid"], args["step"])
            earlier = self.callbacks.get(key)
            if earlier is None or args["at"] < earlier["at"]:
                self.callbacks[key] = args
        else:
            raise ValueError(f"unknown fact {name!r}")


def apply(connection, *groups: Sequence[Fact]) -> dict[str, int]:
    """Write the groups of facts (each one webhook's) in the transaction of the connection or
    session; return the number (its reference's) of each recording they name, by `RecordingSid`."""
    return write(connection, groups)


def write(connection, groups: Iterable[Sequence[Fact]]) -> dict[str, int]:
    """Store the groups' facts in the connection's transaction (the caller commits); return
    the number of each recording they name (its reference's), by `RecordingSid`."""
    return _Writer(connection, Batch(groups)).run()


def status_rank(expression: str) -> str:
    """SQL for the rank (`rules.STATUS_RANK`) of the call status `expression` names."""
    ranks = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in rules.STATUS_RANK.items())
    return f"(CASE {expression} {ranks} ELSE 0 END)"


NO_STATUS: tuple[None, None, None] = (None, None, None)


def new_call_status(status: tuple | None) -> tuple:
    """The (status, duration, ended_at) a call stored first by this batch is inserted with:
    the batch's standing status when it would replace none stored (`note_statuses`' rule
    against a row with no status), so that a call whose status callback comes in the batch
    that stores it is written once, not inserted and then updated."""
    if status is None or rules.status_key(status[0], status[2], status[1]) <= rules.status_key(None, None, None):
        return NO_STATUS
    return status


def take_numbers(connection, count: int) -> list[int]:
    """`count` comment numbers no one else has or will get, from the one-row counter, in the
    connection's transaction: numbers taken in a transaction that rolls back are given again,
    so a web process keeps a block (facts/numbers.py) only once its transaction committed. On
    PostgreSQL the counter's row stays locked until then; the writer takes it after locking
    the stored recordings' rows and before inserting new ones and the transcripts', so
    batches cannot deadlock over it."""
    mark = "%s" if connection.dialect.name == "postgresql" else "?"
    statement = f"UPDATE recording_numbers SET next_number = next_number + {mark} RETURNING next_number"
    (after,) = connection.exec_driver_sql(statement, (count,)).one()
    return list(range(after - count, after))


class _Writer:
    def __init__(self, connection, batch: Batch) -> None:
        self.db = Statements(connection)
        self.sql, self.connection = self.db.sql, self.db.connection
        self.batch = batch
        self.counts = Counts()
        self.known: dict[str, KnownCall] = {}  # the batch's calls as stored (or about to be)
        self.voices_touched: set[tuple[int, str]] = set()  # (topic, caller) whose latest may have moved
        self.voice_changes: Counter = Counter()  # (period, start, topic, zip, stance) -> callers
        self.former_hours: set[datetime] = set()  # the hours moved calls started in before
        self.inserted_calls: set[str] = set()  # the calls this batch stored first

    def run(self) -> dict[str, int]:
        try:
            return self.write()
        finally:
            self.db.close()

    def write(self) -> dict[str, int]:
        b = self.batch
        self.db.begin()
        self.note_calls()
        self.note_statuses()
        topics = self.topic_ids() if b.choices or b.recordings or b.callbacks else {}
        self.note_choices(topics)
        numbers = self.note_recordings(topics)
        self.note_transcripts()
        self.note_jobs()
        self.note_callbacks(topics)
        self.note_callers()
        self.note_voices()
        self.add_summaries()
        self.note_hour_changes()
        return numbers

    def started(self, call_sid: str) -> datetime | None:
        """When a counted call started; None for a test call or one not stored."""
        known = self.known.get(call_sid)
        return known.started_at if known and not known.is_test else None

    # --- calls ----------------------------------------------------------------------------

    def note_calls(self) -> None:
        """Insert the calls not yet stored (each new call counts once in its hour), lock every
        call of the batch, merge what the batch knows into the stored ones, and move what a
        call counted for when the merge moved its start to another hour or learned its caller."""
        b, s = self.batch, self.sql
        if not b.calls:
            return
        sids = sorted(b.calls)
        rows = []
        for sid in sids:
            values = b.calls[sid]
            status = new_call_status(b.statuses.get(sid))
            rows.append(
                (sid, *(s.stamp(values[f]) if f == "started_at" else values[f] for f in CALL_FIELDS))
                + (status[0], status[1], s.stamp(status[2]))
            )
        # PostgreSQL: "DO UPDATE … WHERE false" locks a stored call without writing it.
        tail = "ON CONFLICT (call_sid) DO " + (
            "UPDATE SET call_sid = excluded.call_sid WHERE false" if s.postgres else "NOTHING"
        )
        new = self.db.many_rows(
            f"INSERT INTO calls (call_sid, {', '.join(CALL_FIELDS)}, status, duration, ended_at)",
            rows,
            tail + " RETURNING call_sid",
        )
        self.inserted_calls = inserted = {sid for (sid,) in new}
        for sid in inserted:
            values = b.calls[sid]
            if not values["is_test"]:
                self.counts.add_call(values["started_at"], values["caller_hash"], zip=values["entered_zip"])
            self.known[sid] = known_call(values)
        stored = [sid for sid in sids if sid not in inserted]
        if not stored:
            return
        query = f"SELECT call_sid, {', '.join(CALL_FIELDS)} FROM calls WHERE call_sid"
        updates, moved = [], []
        for sid, *values in self.db.select_in(query, stored):
            before = dict(zip(CALL_FIELDS, values, strict=True))
            before["started_at"], before["is_test"] = s.moment(before["started_at"]), bool(before["is_test"])
            after = rules.merge_call(before, b.calls[sid])
            self.known[sid] = known_call(after)
            if after != before:
                updates.append((*(s.stamp(after[f]) if f == "started_at" else after[f] for f in CALL_FIELDS), sid))
            # A start moved within its hour changes no sum, but may change whose position is
            # a caller's latest.
            if any(after[f] != before[f] for f in ("started_at", "caller_hash", "entered_zip", "is_test")):
                moved.append((sid, before, after))
                self.former_hours.add(hour_of(before["started_at"]))
        if updates:
            self.db.update_rows("calls", CALL_FIELDS, ("call_sid",), updates)
        if moved:
            self.move_calls(moved)

    def move_calls(self, moved: list[tuple[str, dict, dict]]) -> None:
        """Calls whose start moved, or whose caller or ZIP code was learned late: what they
        counted for (their topics, positions, comments and caller) moves to the new hour,
        caller and ZIP code, and their callers' latest positions are derived again. Rare, but
        for the ZIP code asked after the topic: only when a call's facts came out of order."""
        sids = sorted(sid for sid, _, _ in moved)
        stances: dict[str, dict[int, str | None]] = {sid: {} for sid in sids}
        query = "SELECT call_sid, topic_id, stance FROM call_topics WHERE call_sid"
        for sid, topic_id, stance in self.db.select_in(query, sids):
            stances[sid][topic_id] = stance
        comments: dict[str, Counter] = {sid: Counter() for sid in sids}
        query = "SELECT call_sid, topic_id, duration, status FROM recordings WHERE call_sid"
        for sid, topic_id, duration, status in self.db.select_in(query, sids):
            if is_comment(topic_id, duration, status):
                comments[sid][topic_id] += 1
        for sid, before, after in moved:
            self.counts.move(
                CallState(
                    before["started_at"],
                    before["caller_hash"],
                    stances[sid],
                    comments[sid],
                    before["entered_zip"],
                    before["is_test"],
                ),
                CallState(
                    after["started_at"],
                    after["caller_hash"],
                    stances[sid],
                    comments[sid],
                    after["entered_zip"],
                    after["is_test"],
                ),
            )
            for topic_id, stance in stances[sid].items():
                if stance:
                    self.touch_voice(topic_id, before["caller_hash"])
                    self.touch_voice(topic_id, after["caller_hash"])

    def touch_voice(self, topic_id: int, caller: str | None) -> None:
        if caller:
            self.voices_touched.add((topic_id, caller))

    def note_statuses(self) -> None:
        """Status callbacks: the batch's standing status (`rules.status_key`) replaces the
        stored one only when it ranks higher, or as high with a later end; so a final status
        is never replaced by a passing one, in any order. (A call the batch inserted got its
        status with its row.)"""
        s = self.sql
        rows = [
            (status, duration, s.stamp(ended_at), sid)
            for sid, (status, duration, ended_at) in sorted(self.batch.statuses.items())
            if sid not in self.inserted_calls  # inserted with it (`new_call_status`)
        ]
        if not rows:
            return
        stored_rank = status_rank("calls.status")
        if s.postgres:
            rank, end, length, dawn = status_rank("v.status"), "v.ended_at", "v.duration", "'0001-01-01'::timestamp"
        else:  # the row's values again, for the condition's marks
            rank, end, length, dawn = status_rank("?"), "?", "?", "'0001-01-01'"
            rows = [(*row, row[0], row[0], row[2], row[0], row[2], row[1]) for row in rows]
        later, stored_end = f"COALESCE({end}, {dawn})", f"COALESCE(calls.ended_at, {dawn})"
        # The new status stands when it ranks higher; as high, ends later; as late, lasted longer.
        where = (
            f" AND ({rank} > {stored_rank} OR ({rank} = {stored_rank} AND {later} > {stored_end})"
            f" OR ({rank} = {stored_rank} AND {later} = {stored_end} AND COALESCE({length}, -1)"
            " > COALESCE(calls.duration, -1)))"
        )
        self.db.update_rows("calls", ("status", "duration", "ended_at"), ("call_sid",), rows, where=where)

    def topic_ids(self) -> dict[str, int]:
        return {slug: topic_id for slug, topic_id in self.db.execute("SELECT slug, id FROM topics", rows=True)}

    # --- keypresses -----------------------------------------------------------------------

    def note_choices(self, topics: dict[str, int]) -> None:
        """Store the keypresses; for each new one about a topic, bring the call's topics and
        positions (`call_topics`) and the counts up to date."""
        b, s = self.batch, self.sql
        if not b.choices:
            return
        keys = sorted(b.choices)
        rows = []
        for key in keys:
            a = b.choices[key]
            topic_id = topics.get(a["topic"]) if a.get("topic") else None
            rows.append((key[0], key[1], a["kind"], topic_id, a.get("language"), a.get("stance"), s.stamp(a["at"])))
        new = self.db.many_rows(
            "INSERT INTO choices (call_sid, step, kind, topic_id, language, stance, chosen_at)",
            rows,
            "ON CONFLICT (call_sid, step) DO NOTHING RETURNING call_sid, step, topic_id",
        )
        fresh_keys = {(sid, step) for sid, step, _ in new}
        again = [(row[6], row[0], row[1]) for row in rows if (row[0], row[1]) not in fresh_keys]
        if again:  # a keypress stored before: it was made at the earliest moment seen
            if s.postgres:
                where = " AND choices.chosen_at > v.chosen_at"
            else:
                where, again = " AND choices.chosen_at > ?", [(*row, row[0]) for row in again]
            self.db.update_rows("choices", ("chosen_at",), ("call_sid", "step"), again, where=where)
        fresh = sorted((sid, step, topic_id) for sid, step, topic_id in new if topic_id is not None)
        if not fresh:
            return
        call_sids = sorted({sid for sid, _, _ in fresh})
        pairs: dict[tuple[str, int], list] = {}  # (call, topic) -> [stance, stance_step, state]
        query = "SELECT call_sid, topic_id, stance, stance_step FROM call_topics WHERE call_sid"
        for sid, topic_id, stance, stance_step in self.db.select_in(query, call_sids):
            pairs[(sid, topic_id)] = [stance, stance_step, "stored"]
        # A call's first topic routes it: none stored yet, none added by this batch before.
        stored_topics, added = Counter(sid for sid, _ in pairs), Counter()
        for sid, step, topic_id in fresh:
            stance = b.choices[(sid, step)].get("stance")
            started = self.started(sid) or b.choices[(sid, step)]["at"]  # (a test call's: unused)
            known = self.known.get(sid)
            counted = not (known and known.is_test)  # a test call counts for nothing
            pair = pairs.get((sid, topic_id))
            caller, entered_zip = (known.caller, known.entered_zip) if known else (None, None)
            if counted and stance is not None and (pair is None or pair[1] < step):
                self.touch_voice(topic_id, caller)
            if pair is None:  # the call's first choice of this topic
                pairs[(sid, topic_id)] = [stance, step if stance else 0, "new"]
                routed = known is not None and stored_topics[sid] + added[sid] == 0
                added[sid] += 1
                if counted:
                    self.counts.add_topic(started, caller, topic_id, stance, routed, zip=entered_zip)
            elif stance is not None and pair[1] < step:  # a later position replaces an earlier one
                if counted:
                    self.counts.change_stance(started, topic_id, pair[0], stance, entered_zip)
                pair[0], pair[1] = stance, step
                if pair[2] == "stored":
                    pair[2] = "changed"
        self.write_pairs(pairs)

    def write_pairs(self, pairs: dict[tuple[str, int], list]) -> None:
        new = [(sid, tid, p[0], p[1]) for (sid, tid), p in sorted(pairs.items()) if p[2] == "new"]
        if new:
            self.db.many_rows(
                "INSERT INTO call_topics (call_sid, topic_id, stance, stance_step)",
                new,
                "ON CONFLICT (call_sid, topic_id) DO NOTHING",
            )
        changed = [(p[0], p[1], sid, tid) for (sid, tid), p in sorted(pairs.items()) if p[2] == "changed"]
        if changed:
            self.db.update_rows("call_topics", ("stance", "stance_step"), ("call_sid", "topic_id"), changed)

    # --- callers --------------------------------------------------------------------------

    def note_callers(self) -> None:
        """Apply the batch's changes to who called about what: reference counts per hour and
        per day (a row at zero is deleted), a caller's earliest hour per topic; and count
        each caller new to a topic (`callers_new`, in its earliest hour) and new to a topic
        on a day (`callers_day_new`, in the day's first hour)."""
        c, s = self.counts, self.sql
        hours = sorted((h, t, caller, n) for (h, t, caller), n in c.caller_hours.items() if n)
        if hours:
            self.db.many_rows(
                "INSERT INTO caller_hours (hour, topic_id, caller_hash, calls)",
                [(s.stamp(h), t, caller, n) for h, t, caller, n in hours],
                "ON CONFLICT (hour, topic_id, caller_hash) DO UPDATE SET calls = caller_hours.calls + excluded.calls",
            )
            spent = [(s.stamp(h), t, caller) for h, t, caller, n in hours if n < 0]
            self.db.delete_spent("caller_hours", ("hour", "topic_id", "caller_hash"), spent)
        days = sorted((d, t, caller, n) for (d, t, caller), n in c.caller_days.items() if n)
        if days:
            found = self.db.many_rows(
                "INSERT INTO caller_days (day, topic_id, caller_hash, calls)",
                [(d.isoformat(), t, caller, n) for d, t, caller, n in days],
                "ON CONFLICT (day, topic_id, caller_hash) DO UPDATE SET calls = caller_days.calls + excluded.calls "
                "RETURNING day, topic_id, caller_hash, calls",
            )
            for day, topic_id, caller, calls in found:
                day = day if isinstance(day, date) else date.fromisoformat(day)
                was = calls - c.caller_days[(day, topic_id, caller)]
                if was <= 0 < calls:
                    c.hourly[(rules.day_start(day), topic_id, "callers_day_new")] += 1
                elif calls <= 0 < was:
                    c.hourly[(rules.day_start(day), topic_id, "callers_day_new")] -= 1
            spent = [(d.isoformat(), t, caller) for d, t, caller, n in days if n < 0]
            self.db.delete_spent("caller_days", ("day", "topic_id", "caller_hash"), spent)
        self.note_caller_periods()
        self.note_first_hours()
        self.note_callers_gone(sorted({(t, caller) for _, t, caller, n in hours if n < 0}))

    def note_caller_periods(self) -> None:
        """`caller_periods` as `caller_days`, per ISO week and month; a row that rises above
        zero counts one more caller in `period_callers`, one that falls to zero one fewer."""
        c, s = self.counts, self.sql
        periods = sorted((p, st, t, caller, n) for (p, st, t, caller), n in c.caller_periods.items() if n)
        if not periods:
            return
        key = ("period", "period_start", "topic_id", "caller_hash")
        found = self.db.many_rows(
            f"INSERT INTO caller_periods ({', '.join(key)}, calls)",
            [(p, s.stamp(st), t, caller, n) for p, st, t, caller, n in periods],
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET calls = caller_periods.calls + excluded.calls "
            f"RETURNING {', '.join(key)}, calls",
        )
        for period, start, topic_id, caller, calls in found:
            start = s.moment(start)
            was = calls - c.caller_periods[(period, start, topic_id, caller)]
            if was <= 0 < calls:
                c.period_callers[(period, start, topic_id)] += 1
            elif calls <= 0 < was:
                c.period_callers[(period, start, topic_id)] -= 1
        spent = [(p, s.stamp(st), t, caller) for p, st, t, caller, n in periods if n < 0]
        self.db.delete_spent("caller_periods", key, spent)

    def note_first_hours(self) -> None:
        """`topic_callers`: each caller of a topic once, with the earliest hour seen."""
        c, s = self.counts, self.sql
        if not c.first_hours:
            return
        firsts = sorted(c.first_hours.items())
        new = self.db.many_rows(
            "INSERT INTO topic_callers (topic_id, caller_hash, first_hour)",
            [(t, caller, s.stamp(h)) for (t, caller), h in firsts],
            "ON CONFLICT (topic_id, caller_hash) DO NOTHING RETURNING topic_id, caller_hash",
        )
        fresh = set(map(tuple, new))
        for key in fresh:
            c.hourly[(c.first_hours[key], key[0], "callers_new")] += 1
        known = [key for key, _ in firsts if key not in fresh]
        if not known:
            return
        query = "SELECT topic_callers.topic_id, topic_callers.caller_hash, topic_callers.first_hour FROM topic_callers"
        earlier = []
        for topic_id, caller, stored in self.db.select_keys(query, "topic_callers", ("topic_id", "caller_hash"), known):
            stored, mine = s.moment(stored), c.first_hours[(topic_id, caller)]
            if stored is None or mine < stored:
                earlier.append((s.stamp(mine), topic_id, caller))
                if stored is not None:
                    c.hourly[(stored, topic_id, "callers_new")] -= 1
                c.hourly[(mine, topic_id, "callers_new")] += 1
        if earlier:
            self.db.update_rows("topic_callers", ("first_hour",), ("topic_id", "caller_hash"), earlier)

    def note_callers_gone(self, fewer: list[tuple[int, str]]) -> None:
        """`topic_callers` after calls stopped counting (a call that became a test call): a
        caller with no counted call left on a topic is no longer one of its callers, and one
        whose earliest counted call went is new to it in the hour of the earliest left.
        `fewer` are the (topic, caller)s whose `caller_hours` fell in this batch, already
        written; rare, so each is looked up by `ix_caller_hours_caller`."""
        if not fewer:
            return
        c, s = self.counts, self.sql
        query = (
            "SELECT topic_callers.topic_id, topic_callers.caller_hash, topic_callers.first_hour, "
            "(SELECT MIN(caller_hours.hour) FROM caller_hours WHERE caller_hours.topic_id = topic_callers.topic_id "
            "AND caller_hours.caller_hash = topic_callers.caller_hash) FROM topic_callers"
        )
        moved, gone = [], []
        for topic_id, caller, first, earliest in self.db.select_keys(
            query, "topic_callers", ("topic_id", "caller_hash"), fewer
        ):
            first, earliest = s.moment(first), s.moment(earliest)
            if earliest == first:
                continue
            c.hourly[(first, topic_id, "callers_new")] -= 1
            if earliest is None:
                gone.append((topic_id, caller))
            else:
                c.hourly[(earliest, topic_id, "callers_new")] += 1
                moved.append((s.stamp(earliest), topic_id, caller))
        if moved:
            self.db.update_rows("topic_callers", ("first_hour",), ("topic_id", "caller_hash"), moved)
        self.db.delete_rows("topic_callers", ("topic_id", "caller_hash"), gone)

    # --- recordings -----------------------------------------------------------------------

    def note_recordings(self, topics: dict[str, int]) -> dict[str, int]:
        """Lock each stored recording's row, fill it from the batch's facts by the rules, and
        move the comment counts where a comment was made or unmade; insert each new one
        whole, in one write. Return each recording's number.

        A recording another batch inserts between this one's read and its insert (PostgreSQL,
        several writers, facts of one recording in both) is read again, locked, and filled as
        a stored one; the number this batch took for it is not given to anyone."""
        b = self.batch
        if not b.recordings:
            return {}
        firsts = {sid: min(args["at"] for _, args in facts) for sid, facts in b.recordings.items()}
        numbers: dict[str, int] = {}
        pending = sorted(b.recordings)
        while pending:
            pending = self.fill_recordings(pending, topics, firsts, numbers)
        return numbers

    def fill_recordings(
        self, sids: list[str], topics: dict[str, int], firsts: dict[str, datetime], numbers: dict[str, int]
    ) -> list[str]:
        """One pass of `note_recordings` over `sids`; returns those it found inserted meanwhile."""
        b, s = self.batch, self.sql
        query = f"SELECT id, recording_sid, call_sid, {', '.join(RECORDING_FIELDS)} FROM recordings WHERE recording_sid"
        stored = {row[1]: row for row in self.db.select_in(query, sids, " ORDER BY recording_sid" + s.for_update)}
        empty = dict.fromkeys(RECORDING_FIELDS)
        filled, aliases = [], []
        for sid in sids:
            row = stored.get(sid)
            if row is None:  # new: made from the batch's facts alone
                call_sid, before = b.recordings[sid][0][1]["call_sid"], empty
            else:
                call_sid = row[2]
                before = {
                    f: s.moment(value) if f.endswith("_at") else value
                    for f, value in zip(RECORDING_FIELDS, row[3:], strict=True)
                }
            after = dict(before)
            after["created_at"] = rules.earliest(after["created_at"], firsts[sid])
            # Actions first, then statuses: each rule is a join, so their order is no matter
            # for the fields; it decides only which of two actions' numbers is looked at first.
            for name, args in sorted(b.recordings[sid], key=lambda fact: (fact[0], fact[1].get("number") or 0)):
                if name == "transcription":
                    continue
                topic_id = topics.get(args["topic"]) if name == "recording_action" and args.get("topic") else None
                aliases += [(number, sid) for number in rules.fill_recording(after, name, args, topic_id)]
            filled.append((sid, call_sid, row, before, after))
        self.learn_calls(call_sid for _, call_sid, _, _, _ in filled)
        self.check_numbers_given(filled, [number for number, _ in aliases])
        # A row a callback made, or an action whose process had no number to give: one now.
        unnumbered = [after for _, _, _, _, after in filled if after["number"] is None]
        if unnumbered:
            for after, number in zip(unnumbered, take_numbers(self.connection, len(unnumbered)), strict=True):
                after["number"] = number
        fresh = [(sid, call_sid, after) for sid, call_sid, row, _, after in filled if row is None]
        inserted = self.insert_recordings(fresh) if fresh else set()
        lost = {sid for sid, _, _ in fresh if sid not in inserted}  # the next pass fills them
        updates = []
        for sid, call_sid, row, before, after in filled:
            if sid in lost:
                continue
            numbers[sid] = after["number"]
            if row is not None and after != before:
                updates.append((*self.recording_values(after), row[0]))
            if after != before:
                self.recount(call_sid, before, after)
        if updates:
            self.db.update_rows("recordings", RECORDING_FIELDS, ("id",), updates)
        aliases = [(number, sid) for number, sid in aliases if sid not in lost]
        if aliases:
            self.db.many_rows(
                "INSERT INTO recording_aliases (number, recording_sid)",
                sorted(aliases),
                "ON CONFLICT (number) DO NOTHING",
            )
        return sorted(lost)

    def insert_recordings(self, fresh: list[tuple[str, str, dict]]) -> set[str]:
        """Insert new recordings, whole: (RecordingSid, CallSid, fields); return the
        RecordingSids inserted (not those another batch inserted first)."""
        rows = [
            (sid, call_sid, *self.recording_values(after))
            for sid, call_sid, after in sorted(fresh, key=lambda row: row[0])
        ]
        found = self.db.many_rows(
            f"INSERT INTO recordings (recording_sid, call_sid, {', '.join(RECORDING_FIELDS)})",
            rows,
            "ON CONFLICT (recording_sid) DO NOTHING RETURNING recording_sid",
        )
        return {sid for (sid,) in found}

    def recording_values(self, fields: dict) -> tuple:
        """A recording's `RECORDING_FIELDS` as statement parameters."""
        return tuple(self.sql.stamp(fields[f]) if f.endswith("_at") else fields[f] for f in RECORDING_FIELDS)

    def learn_calls(self, call_sids: Iterable[str]) -> None:
        wanted = sorted(set(call_sids) - self.known.keys())
        if wanted:
            query = "SELECT call_sid, started_at, caller_hash, entered_zip, is_test FROM calls WHERE call_sid"
            for sid, started, caller, entered_zip, is_test in self.db.select_in(query, wanted):
                self.known[sid] = KnownCall(self.sql.moment(started), caller, entered_zip, bool(is_test))

    def check_numbers_given(self, filled: list[tuple[str, str, tuple | None, dict, dict]], others: list[int]) -> None:
        """The numbers actions gave are unique as long as they come from this database's
        counter. One that does not (a journal replayed into a database restored from an
        older backup, whose counter went back) and is another recording's already is not
        taken: the recording gets a number of its own, and no fact is lost. The counter is
        kept above every number given (`others`: those kept as aliases), so that it never gives
        one of them again."""
        given = {after["number"]: sid for sid, _, _, before, after in filled if after["number"] != before["number"]}
        given.pop(None, None)
        if not given and not others:
            return
        query = "SELECT number, recording_sid FROM recordings WHERE number"
        found = self.db.select_in(query, sorted(given)) if given else []
        taken = {number for number, sid in found if sid != given[number]}
        claimed: set[int] = set()
        for sid, _, _, before, after in filled:
            number = after["number"]
            if number != before["number"] and (number in taken or number in claimed):
                log.warning("comment number %s is taken; recording %s gets another", number, sid)
                after["number"] = before["number"]
            claimed.add(after["number"])
        mark = self.sql.mark
        highest = max([*given, *others])
        self.db.execute(
            f"UPDATE recording_numbers SET next_number = {mark} + 1 WHERE next_number <= {mark}", (highest, highest)
        )

    def recount(self, call_sid: str, before: dict, after: dict) -> None:
        was = before["topic_id"] if is_comment(before["topic_id"], before["duration"], before["status"]) else None
        now = after["topic_id"] if is_comment(after["topic_id"], after["duration"], after["status"]) else None
        started = self.started(call_sid)
        if was == now or started is None:
            return  # no change; a test call; or no call row, which `flask counts verify` would report
        entered_zip = self.known[call_sid].entered_zip
        if was is not None:
            self.counts.add_comment(started, was, -1, entered_zip)
        if now is not None:
            self.counts.add_comment(started, now, 1, entered_zip)

    def note_transcripts(self) -> None:
        """Keep each transcript (or why there is none): per recording and source, the result
        reported last (by its moment) stands, and the row keeps the earliest moment it was
        made. A transcript staff removed stays removed, whatever arrives after (a late
        callback, a journal replayed after a crash)."""
        s = self.sql
        if not self.batch.transcripts:
            return
        removed = self.transcripts_removed(sorted({sid for sid, _ in self.batch.transcripts}))
        self.keep_held_originals([(sid, a) for (sid, _), a in sorted(self.batch.transcripts.items()) if sid in removed])
        rows = []
        for (sid, source), a in sorted(self.batch.transcripts.items()):
            if sid in removed:  # staff removed the comment's transcripts: nothing brings text back
                rows.append(
                    (sid, source, None, None, "redacted", None, None, None, s.stamp(a["first_at"]), s.stamp(a["at"]))
                )
                continue
            rows.append(
                (sid, source, a.get("transcription_sid"), a.get("language"), a["status"], a.get("text"))
                + (a.get("reason"), a.get("engine"), s.stamp(a["first_at"]), s.stamp(a["at"]))
            )
        newer = "excluded.updated_at >= transcriptions.updated_at"
        sets = [
            f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE transcriptions.{c} END"
            for c in ("status", "text", "transcription_sid", "reason", "engine", "updated_at")
        ]
        sets.append(
            f"language = CASE WHEN {newer} THEN COALESCE(excluded.language, transcriptions.language) "
            "ELSE COALESCE(transcriptions.language, excluded.language) END"
        )
        sets.append(f"created_at = {s.least}(transcriptions.created_at, excluded.created_at)")
        self.db.many_rows(
            "INSERT INTO transcriptions (recording_sid, source, transcription_sid, language, status, text, reason, "
            "engine, created_at, updated_at)",
            rows,
            f"ON CONFLICT (recording_sid, source) DO UPDATE SET {', '.join(sets)} "
            "WHERE transcriptions.status <> 'redacted'",
        )

    def keep_held_originals(self, arrived: list[tuple[str, dict]]) -> None:
        """A transcript with text that arrives for a comment whose transcript staff removed,
        while a legal hold covers the comment: its original goes to `held_transcripts`, out of
        sight, as the redaction kept the ones there were then (models/holds.py), once per
        (recording, source, text) however often it arrives. Rare: in SQLAlchemy, not SQL text."""
        arrived = [(sid, a) for sid, a in arrived if a.get("text")]
        if not arrived:
            return
        sids = sorted({sid for sid, _ in arrived})
        held = set(
            self.connection.scalars(
                select(Recording.recording_sid)
                .join(LegalHold, covers_recording())
                .where(is_active(utcnow()), Recording.recording_sid.in_(sids))
            )
        )
        kept = set(
            self.connection.execute(
                select(HeldTranscript.recording_sid, HeldTranscript.source, HeldTranscript.text).where(
                    HeldTranscript.recording_sid.in_(sids)
                )
            ).tuples()
        )
        rows = []
        for sid, a in arrived:
            if sid in held and (sid, a["source"], a["text"]) not in kept:
                kept.add((sid, a["source"], a["text"]))
                rows.append(
                    {
                        "recording_sid": sid,
                        "source": a["source"],
                        "transcription_sid": a.get("transcription_sid"),
                        "language": a.get("language"),
                        "text": a["text"],
                        "transcribed_at": a["first_at"],
                        "kept_at": utcnow(),
                        "redaction_reason": "arrived after the transcript was removed",
                    }
                )
        if rows:
            self.connection.execute(insert(HeldTranscript), rows)

    def transcripts_removed(self, recording_sids: list[str]) -> set[str]:
        """The recordings among these whose transcripts staff removed (or whose comment they
        deleted): a transcript that arrives for one later, from any source, is kept only as
        redacted."""
        query = (
            "SELECT recordings.recording_sid FROM recordings JOIN comment_states "
            "ON comment_states.recording_id = recordings.id "
            "WHERE comment_states.transcript_removed_at IS NOT NULL AND recordings.recording_sid"
        )
        return {sid for (sid,) in self.db.select_in(query, recording_sids)}

    def note_jobs(self) -> None:
        """Queue background work once per (kind, key); work already queued keeps its place,
        or moves earlier (the same rule as `models.jobs.enqueue`)."""
        s = self.sql
        if not self.batch.jobs:
            return
        now = s.stamp(utcnow())
        jobs = sorted(self.batch.jobs.items())
        self.db.many_rows(
            "INSERT INTO jobs (kind, key, options, state, attempts, max_attempts, run_after, created_at, updated_at)",
            [(kind, key, "{}", "queued", 0, args["max_attempts"], now, now, now) for (kind, key), args in jobs],
            "ON CONFLICT (kind, key) DO UPDATE SET "
            "run_after = CASE WHEN jobs.run_after > excluded.run_after THEN excluded.run_after "
            "ELSE jobs.run_after END, updated_at = excluded.updated_at WHERE jobs.state = 'queued'",
        )

    # --- one voice per caller -------------------------------------------------------------

    VOICE_KEY = ("period", "period_start", "topic_id", "caller_hash")

    def note_voices(self) -> None:
        """For each (topic, caller) the batch touched: take its all-time `caller_voices` row
        (the lock that puts two batches about one caller one after the other), derive the
        caller's latest positions from the stored facts, write the rows that differ, and
        note the difference for `voice_counts`."""
        if not self.voices_touched:
            return
        s, touched = self.sql, sorted(self.voices_touched)
        key = ", ".join(self.VOICE_KEY)
        if s.postgres:  # SQLite's batches run one at a time (`BEGIN IMMEDIATE`): no lock to take
            self.db.many_rows(
                f"INSERT INTO caller_voices ({key}, zip)",
                [("a", s.stamp(rules.ALL_TIME), topic_id, caller, "") for topic_id, caller in touched],
                f"ON CONFLICT ({key}) DO UPDATE SET caller_hash = excluded.caller_hash WHERE false",
            )
        query = (
            "SELECT caller_voices.period, caller_voices.period_start, caller_voices.topic_id, "
            "caller_voices.caller_hash, caller_voices.stance, caller_voices.zip, caller_voices.started_at, "
            "caller_voices.call_sid FROM caller_voices"
        )
        have: dict[tuple, Position | None] = {}
        for period, start, topic_id, caller, stance, entered, at, call_sid in self.db.select_keys(
            query, "caller_voices", ("topic_id", "caller_hash"), touched
        ):
            position = Position(s.moment(at), call_sid, stance, entered) if stance else None
            have[(period, s.moment(start), topic_id, caller)] = position
        wanted = set(touched)
        query = (
            "SELECT calls.caller_hash, call_topics.topic_id, call_topics.stance, calls.started_at, calls.call_sid, "
            "calls.entered_zip FROM call_topics JOIN calls ON calls.call_sid = call_topics.call_sid "
            "WHERE call_topics.stance IS NOT NULL AND NOT calls.is_test AND calls.caller_hash"
        )
        positions = [
            (topic_id, caller, Position(s.moment(at), call_sid, stance, zip_key(entered)))
            for caller, topic_id, stance, at, call_sid, entered in self.db.select_in(
                query, sorted({caller for _, caller in touched})
            )
            if (topic_id, caller) in wanted
        ]
        want = rules.latest_positions(positions)
        upserts, deletes = [], []
        for voice_key in sorted(have.keys() | want.keys()):
            period, start, topic_id, caller = voice_key
            was, now = have.get(voice_key), want.get(voice_key)
            if was == now and (now is not None or voice_key not in have):
                continue
            if was is not None:
                self.voice_changes[(period, start, topic_id, was.zip, was.stance)] -= 1
            if now is None:
                deletes.append((period, s.stamp(start), topic_id, caller))
                continue
            self.voice_changes[(period, start, topic_id, now.zip, now.stance)] += 1
            stamped = (s.stamp(start), s.stamp(now.started_at))
            upserts.append((period, stamped[0], topic_id, caller, now.stance, now.zip, stamped[1], now.call_sid))
        if upserts:
            self.db.many_rows(
                f"INSERT INTO caller_voices ({key}, stance, zip, started_at, call_sid)",
                upserts,
                f"ON CONFLICT ({key}) DO UPDATE SET stance = excluded.stance, zip = excluded.zip, "
                "started_at = excluded.started_at, call_sid = excluded.call_sid",
            )
        self.db.delete_rows("caller_voices", self.VOICE_KEY, deletes)

    def note_callbacks(self, topics: dict[str, int]) -> None:
        """Keep each call-back request once per (call, step): a retry finds it there; the
        request's moment is the earliest seen (models/callbacks.py)."""
        s = self.sql
        if not self.batch.callbacks:
            return
        rows = [
            (sid, step, topics.get(a.get("topic") or ""), a.get("recording_sid"), a.get("number_sealed"))
            + (s.stamp(a["at"]),)
            for (sid, step), a in sorted(self.batch.callbacks.items())
        ]
        self.db.many_rows(
            "INSERT INTO callback_requests (call_sid, step, topic_id, recording_sid, number_sealed, requested_at)",
            rows,
            "ON CONFLICT (call_sid, step) DO UPDATE SET "
            f"requested_at = {s.least}(callback_requests.requested_at, excluded.requested_at)",
        )

    # --- summaries ------------------------------------------------------------------------

    def add_summaries(self) -> None:
        """Add the batch's changes to the hourly counts (one upsert per (hour, topic)), the
        counts by ZIP code and the per-caller counts, in key order, last, so that the busiest
        rows are held for the shortest time."""
        s = self.sql
        rows = [
            (s.stamp(hour), topic_id, *(counts[name] for name in COUNTED))
            for (hour, topic_id), counts in sorted(self.counts.hourly_rows().items())
            if any(counts.values())
        ]
        if rows:
            columns = ", ".join(COUNTED)
            sums = ", ".join(f"{name} = hourly_counts.{name} + excluded.{name}" for name in COUNTED)
            self.db.many_rows(
                f"INSERT INTO hourly_counts (hour, topic_id, {columns})",
                rows,
                f"ON CONFLICT (hour, topic_id) DO UPDATE SET {sums}",
            )
        self.add_keyed("zip_counts", ZIP_COUNTED, self.counts.zip_rows())
        callers = [(p, s.stamp(st), t, n) for (p, st, t), n in sorted(self.counts.period_callers.items()) if n]
        if callers:
            self.db.many_rows(
                "INSERT INTO period_callers (period, period_start, topic_id, callers)",
                callers,
                "ON CONFLICT (period, period_start, topic_id) DO UPDATE SET "
                "callers = period_callers.callers + excluded.callers",
            )
        voices: dict[tuple, Counter] = {}
        for (period, start, topic_id, entered, stance), change in self.voice_changes.items():
            if change:
                voices.setdefault((period, start, topic_id, entered), Counter())[stance] += change
        self.add_keyed("voice_counts", STANCE_NAMES, {k: v for k, v in voices.items() if any(v.values())})

    def note_hour_changes(self) -> None:
        """One more change for each UTC hour a call the batch named started in (and the hour
        a moved call started in before): what makes a kept figure of that hour computed
        again (models/kept_counts.py). One upsert, last, in hour order."""
        b, s = self.batch, self.sql
        self.learn_calls([sid for sid, _ in b.choices] + [sid for sid, _ in b.callbacks])
        hours = {hour_of(known[0]) for known in self.known.values()} | self.former_hours
        if hours:
            self.db.many_rows(
                "INSERT INTO hour_changes (hour, changes)",
                [(s.stamp(h), 1) for h in sorted(hours)],
                "ON CONFLICT (hour) DO UPDATE SET changes = hour_changes.changes + excluded.changes",
            )

    def add_keyed(self, table: str, names: tuple[str, ...], changes: dict[tuple, Counter]) -> None:
        """Add `changes` ((period, start, topic, zip) -> {name: change}) to `table`'s rows."""
        if not changes:
            return
        s = self.sql
        rows = [
            (p, s.stamp(start), t, z, *(c[name] for name in names)) for (p, start, t, z), c in sorted(changes.items())
        ]
        sums = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in names)
        self.db.many_rows(
            f"INSERT INTO {table} (period, period_start, topic_id, zip, {', '.join(names)})",
            rows,
            f"ON CONFLICT (period, period_start, topic_id, zip) DO UPDATE SET {sums}",
        )


def note_transcription(
    session,
    recording_sid: str,
    call_sid: str,
    *,
    at: datetime,
    source: str,
    transcription_sid: str | None,
    status: str,
    text: str | None,
    language: str | None,
    reason: str | None = None,
    engine: str | None = None,
) -> None:
    """Keep a transcript (or, with status failed, the reason there is none), creating the
    recording's row if this arrives first. A later result from the same source replaces it.
    `language` is the one the transcriber was told (or found); `engine` what made it."""
    fact = Fact(
        "transcription",
        {
            "recording_sid": recording_sid,
            "call_sid": call_sid,
            "at": at,
            "source": source,
            "transcription_sid": transcription_sid,
            "status": status,
            "text": text,
            "language": language,
            "reason": reason,
            "engine": engine,
        },
    )
    write(session, [[fact]])
