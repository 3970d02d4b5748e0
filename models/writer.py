"""Writing facts, many webhooks' worth in one transaction.

`write(connection, groups)` takes the facts of one or many webhooks (each group one webhook's
facts, in the order they were answered) and stores them with a fixed number of statements per
batch, whatever its size: one multi-row `INSERT … ON CONFLICT` per table (on PostgreSQL with
one array per column, so that the statement's text, and the plan PostgreSQL keeps for it, is
the same for any batch), the summaries added up in Python and upserted once per (hour,
topic). It is the only code that writes the webhooks' facts: a webhook's own transaction (a
batch of one), the write-behind writer (ivr/behind.py), the spool's replay and the worker's
transcripts all come here; `take_numbers` gives the web processes comment numbers in blocks.

Every rule of the per-fact model holds per batch: a fact already stored changes nothing (keys
are Twilio's ids, and the (call, step) of a keypress); a summary moves only when a fact
changed; the later of two positions (by step) wins; a final call or recording status is not
moved back; a recording's fields are filled once, by whichever callback comes first.

Concurrency (PostgreSQL, several processes or instances writing at once): the batch first
locks the rows of every call it names, in `CallSid` order, with one statement; everything
derived from a call (its topics and positions, its recordings) is only changed by a
transaction that holds that lock. Other rows are taken in a fixed order of tables and, within
a table, in key order, so two batches wait for each other but never deadlock on their own
rows. SQLite has one writer at a time: a batch begins with `BEGIN IMMEDIATE`.

Statements go to the driver's cursor as SQL text, in the connection's transaction: a batch runs
about fifteen of them, and SQLAlchemy's statement building, and even its handling of a driver
statement's result, cost more than the database's work. A driver error is raised as
SQLAlchemy's (`DBAPIError.instance`, as its own execution does), and a connection the error
shows broken is invalidated, so that the pool does not hand it out again.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import NoReturn

from sqlalchemy.exc import DBAPIError

from . import summary
from .base import utcnow
from .calls import CALL_KEYS, FINAL_CALL_STATUSES
from .recordings import is_comment

log = logging.getLogger(__name__)
CHUNK = 256  # most rows per multi-row statement on SQLite (it allows 32,766 parameters)
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
)
ACTION_FIELDS = ("stance", "language", "step", "duration", "finished_by", "media_url")


INSERT_HEAD = re.compile(r"INSERT INTO (?P<table>\w+) \((?P<columns>[\w, ]+)\)")


@lru_cache(maxsize=64)
def array_casts(table: str, columns: tuple[str, ...]) -> str:
    """`%b::TYPE[]` for each column, its type as PostgreSQL names it, from the models. The
    arrays go in PostgreSQL's binary format (`%b`): psycopg writes a text array in Python,
    quoting each element (about 2 µs a string or a datetime), a binary one in C (0.15 µs)."""
    from sqlalchemy.dialects import postgresql

    from .base import Base

    found = Base.metadata.tables[table].c
    return ", ".join(f"%b::{found[name].type.compile(dialect=postgresql.dialect())}[]" for name in columns)


def pieces(count: int) -> Iterator[tuple[int, int]]:
    """(start, size) of the pieces a SQLite statement takes `count` rows in: each a power of
    two, at most CHUNK. So a table's statement has a handful of texts, which SQLite's
    statement cache keeps prepared; with one text per row count it parsed nearly every
    statement anew, and each connection's cache filled with large ones (RSS grew with them)."""
    start = 0
    while start < count:
        size = min(CHUNK, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


class Sql:
    """What differs between the two databases at the driver's level."""

    def __init__(self, dialect_name: str) -> None:
        if dialect_name not in ("sqlite", "postgresql"):
            raise RuntimeError(f"unsupported database {dialect_name!r}: use SQLite or PostgreSQL")
        self.postgres = dialect_name == "postgresql"
        self.mark = "%s" if self.postgres else "?"
        self.for_update = " FOR UPDATE" if self.postgres else ""

    def stamp(self, value: datetime | None):
        """A datetime as a parameter: SQLite keeps SQLAlchemy's text form, microseconds always."""
        if value is None or self.postgres:
            return value
        return value.isoformat(" ", "microseconds")

    @staticmethod
    def moment(value) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    def marks(self, width: int) -> str:
        return "(" + ", ".join([self.mark] * width) + ")"

    def rows(self, width: int, count: int) -> str:
        one = self.marks(width)
        return ", ".join([one] * count)


class Batch:
    """One transaction's worth of facts, sorted by what they are about."""

    def __init__(self, groups: Iterable[Sequence]) -> None:
        self.calls: dict[str, dict] = {}  # call_sid -> the first values seen
        self.languages: dict[str, str] = {}  # call_sid -> the last language chosen
        self.statuses: list[dict] = []
        self.choices: dict[tuple[str, int], dict] = {}
        self.recordings: dict[str, list] = {}  # recording_sid -> its facts, in order
        self.transcripts: dict[tuple[str, str], dict] = {}  # the last per (recording, source)
        self.jobs: dict[tuple[str, str], dict] = {}
        for group in groups:
            for fact in group:
                self.add(fact.name, fact.args)

    def add(self, name: str, args: dict) -> None:
        if name in ("call", "call_status"):
            values = args["values"]
            self.calls.setdefault(values["call_sid"], values)
            if args.get("language"):
                self.languages[values["call_sid"]] = args["language"]
            if name == "call_status":
                self.statuses.append(args)
        elif name == "choice":
            self.choices.setdefault((args["call_sid"], args["step"]), args)
        elif name in ("recording_action", "recording_status"):
            self.recordings.setdefault(args["recording_sid"], []).append((name, args))
        elif name == "transcription":
            self.recordings.setdefault(args["recording_sid"], []).append((name, args))
            key = (args["recording_sid"], args["source"])
            earlier = self.transcripts.get(key)
            if earlier is not None:  # the later result wins, as two upserts in turn would leave it
                args = {**args, "at": earlier["at"], "language": args.get("language") or earlier.get("language")}
            self.transcripts[key] = args
        elif name == "job":
            self.jobs.setdefault((args["kind"], args["key"]), args)
        else:
            raise ValueError(f"unknown fact {name!r}")


def write(connection, groups: Iterable[Sequence]) -> dict[str, int]:
    """Store the groups' facts in the connection's transaction (the caller commits); return
    the number of each recording they name (its reference's), by `RecordingSid`."""
    return _Writer(connection, Batch(groups)).run()


def take_numbers(connection, count: int) -> list[int]:
    """`count` comment numbers no one else has or will get, from the one-row counter, in the
    connection's transaction: numbers taken in a transaction that rolls back are given again,
    so a web process keeps a block (ivr/numbers.py) only once its transaction committed. On
    PostgreSQL the counter's row stays locked until then; the writer takes it after the
    recordings' rows and before the transcripts', so batches cannot deadlock over it."""
    mark = "%s" if connection.dialect.name == "postgresql" else "?"
    statement = f"UPDATE recording_numbers SET next_number = next_number + {mark} RETURNING next_number"
    (after,) = connection.exec_driver_sql(statement, (count,)).one()
    return list(range(after - count, after))


class _Writer:
    def __init__(self, connection, batch: Batch) -> None:
        if hasattr(connection, "get_bind"):  # an ORM session: write in its transaction
            connection = connection.connection()
        self.sql = Sql(connection.dialect.name)
        self.connection = connection
        self.cursor = connection.connection.cursor()  # the driver's, in the connection's transaction
        self.batch = batch
        self.hourly: dict[tuple[datetime, int], dict[str, int]] = defaultdict(lambda: dict.fromkeys(summary.COUNTED, 0))
        self.known: dict[str, tuple[datetime, str | None, int]] = {}  # call -> (started, caller, topics)

    def begin(self) -> None:
        """SQLite: take the write lock now, so that what the batch reads stays true."""
        if not self.sql.postgres and not self.connection.connection.driver_connection.in_transaction:
            self.execute("BEGIN IMMEDIATE")

    def run(self) -> dict[str, int]:
        try:
            return self.write()
        finally:
            self.cursor.close()

    def write(self) -> dict[str, int]:
        b = self.batch
        self.begin()
        self.note_calls()
        self.note_statuses()
        topics = self.topic_ids() if b.choices or b.recordings else {}
        self.note_choices(topics)
        numbers = self.note_recordings(topics)
        self.note_transcripts()
        self.note_jobs()
        self.add_summaries()
        return numbers

    # --- statements -----------------------------------------------------------------------

    def execute(self, statement: str, params: Sequence = (), *, rows: bool = False) -> list:
        """Run SQL as the driver takes it; the rows it returns when `rows`."""
        try:
            self.cursor.execute(statement, tuple(params))
            return self.cursor.fetchall() if rows else []
        except self.connection.dialect.loaded_dbapi.Error as exc:
            self.fail(exc, statement, params)

    def execute_many(self, statement: str, params: list[Sequence]) -> None:
        try:
            self.cursor.executemany(statement, params)
        except self.connection.dialect.loaded_dbapi.Error as exc:
            self.fail(exc, statement, params)

    def fail(self, exc: Exception, statement: str, params) -> NoReturn:
        """Raise a driver's error as SQLAlchemy does, invalidating a connection it shows broken."""
        dialect = self.connection.dialect
        broken = dialect.is_disconnect(exc, self.connection.connection.dbapi_connection, self.cursor)
        if broken:
            self.connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=broken, dialect=dialect
        ) from exc

    def many_rows(self, head: str, rows: list[Sequence], tail: str = "") -> list[tuple]:
        """`head VALUES (…), (…) tail` over the rows, in chunks; the rows any RETURNING gave.
        `head` is `INSERT INTO table (column, …)`. PostgreSQL takes one array per column
        instead (`SELECT * FROM unnest(…)`): the same text for any number of rows, so the
        driver prepares it once per connection and the server neither parses nor plans it
        again, and the driver converts 13 arrays rather than hundreds of values."""
        match = INSERT_HEAD.fullmatch(head)
        columns = tuple(c.strip() for c in match["columns"].split(","))
        if self.sql.postgres:
            casts = array_casts(match["table"], columns)
            return self.execute(
                f"{head} SELECT * FROM unnest({casts}) {tail}",
                [list(column) for column in zip(*rows, strict=True)],
                rows="RETURNING" in tail,
            )
        found: list[tuple] = []
        for start, size in pieces(len(rows)):
            chunk = rows[start : start + size]
            found += self.execute(
                f"{head} VALUES {self.sql.rows(len(columns), len(chunk))} {tail}",
                [value for row in chunk for value in row],
                rows="RETURNING" in tail,
            )
        return found

    def update_rows(
        self,
        table: str,
        columns: tuple[str, ...],
        keys: tuple[str, ...],
        rows: list[tuple],
        *,
        where: str = "",
        **exprs,
    ) -> None:
        """Update one row of `table` per tuple (the `columns`' new values, then the `keys`'),
        no two tuples naming the same row. A column is set to its value, or to its `exprs`
        with the value for `{}` (`topics="calls.topics + {}"`); `where` adds a condition, in
        which the table's columns are named with the table's name. SQLite runs the statement
        for each row (in C, prepared once). PostgreSQL takes the rows as arrays, one per
        column, in one statement of the same text for any number of rows: a statement per
        row cost the writer and the server more than the rest of a batch together."""
        s = self.sql
        if s.postgres:
            names = (*columns, *keys)
            sets = ", ".join(f"{c} = " + exprs.get(c, "{}").format(f"v.{c}") for c in columns)
            match = " AND ".join(f"{table}.{k} = v.{k}" for k in keys)
            self.execute(
                f"UPDATE {table} SET {sets} FROM unnest({array_casts(table, names)}) AS v({', '.join(names)}) "
                f"WHERE {match}{where}",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            sets = ", ".join(f"{c} = " + exprs.get(c, "{}").format(s.mark) for c in columns)
            match = " AND ".join(f"{k} = {s.mark}" for k in keys)
            self.execute_many(f"UPDATE {table} SET {sets} WHERE {match}{where}", rows)

    def select_in(self, query: str, keys: list, suffix: str = "") -> list[tuple]:
        """`query IN (keys)suffix`; on PostgreSQL `= ANY(array)`, one text for any number."""
        if self.sql.postgres:
            return self.execute(f"{query} = ANY(%b){suffix}", [list(keys)], rows=True)
        found: list[tuple] = []
        for start, size in pieces(len(keys)):
            chunk = keys[start : start + size]
            marks = ", ".join([self.sql.mark] * len(chunk))
            found += self.execute(f"{query} IN ({marks}){suffix}", chunk, rows=True)
        return found

    def hour(self, call_sid: str, otherwise: datetime | None = None) -> datetime | None:
        known = self.known.get(call_sid)
        moment = known[0] if known else otherwise
        return summary.hour_of(moment) if moment else None

    # --- calls ----------------------------------------------------------------------------

    def note_calls(self) -> None:
        """Insert the calls not yet stored (each new call counts once in its hour), lock every
        call of the batch, and set the languages chosen."""
        b, s = self.batch, self.sql
        if not b.calls:
            return
        columns = (*CALL_KEYS, "topics")
        started, language = CALL_KEYS.index("started_at"), CALL_KEYS.index("language")
        rows = []
        for sid in sorted(b.calls):
            row = [*map(b.calls[sid].get, CALL_KEYS), 0]
            row[started], row[language] = s.stamp(row[started]), b.languages.get(sid)
            rows.append(row)
        # PostgreSQL: "DO UPDATE … WHERE false" locks a stored call without writing it.
        tail = "ON CONFLICT (call_sid) DO " + (
            "UPDATE SET call_sid = excluded.call_sid WHERE false" if s.postgres else "NOTHING"
        )
        new = self.many_rows(
            f"INSERT INTO calls ({', '.join(columns)})", rows, tail + " RETURNING call_sid, started_at"
        )
        inserted = set()
        for sid, started in new:
            inserted.add(sid)
            self.hourly[(summary.hour_of(s.moment(started)), summary.WHOLE_LINE)]["calls"] += 1
        changed = [(language, sid) for sid, language in sorted(b.languages.items()) if sid not in inserted]
        if changed:
            self.update_rows("calls", ("language",), ("call_sid",), changed)

    def note_statuses(self) -> None:
        """Status callbacks: a final status is never replaced by a late non-final one. Taken
        in the order they came, a call's last final status stands if the batch has one;
        otherwise its last status, unless the stored one is final."""
        s = self.sql
        final: dict[str, tuple] = {}
        passing: dict[str, tuple] = {}
        for args in self.batch.statuses:
            sid, status = args["values"]["call_sid"], args["status"]
            if status in FINAL_CALL_STATUSES:
                final[sid] = (status, args["duration"], s.stamp(args["ended_at"]), sid)
            else:
                passing[sid] = (status, args["duration"], None, sid)
        columns = ("status", "duration", "ended_at")
        later = [passing[sid] for sid in sorted(passing) if sid not in final]
        if later:
            finals = ", ".join(f"'{status}'" for status in FINAL_CALL_STATUSES)
            where = f" AND (calls.status IS NULL OR calls.status NOT IN ({finals}))"
            self.update_rows("calls", columns, ("call_sid",), later, where=where)
        if final:
            self.update_rows("calls", columns, ("call_sid",), [final[sid] for sid in sorted(final)])

    def learn_calls(self, call_sids: Iterable[str]) -> None:
        wanted = sorted(set(call_sids) - self.known.keys())
        if wanted:
            query = "SELECT call_sid, started_at, caller_hash, topics FROM calls WHERE call_sid"
            for sid, started, caller, topics in self.select_in(query, wanted):
                self.known[sid] = (self.sql.moment(started), caller, topics or 0)

    def topic_ids(self) -> dict[str, int]:
        return {slug: topic_id for slug, topic_id in self.execute("SELECT slug, id FROM topics", rows=True)}

    # --- keypresses -----------------------------------------------------------------------

    def note_choices(self, topics: dict[str, int]) -> None:
        """Store the keypresses; for each new one about a topic, bring the call's topics and
        positions (`call_topics`), its callers and the hourly counts up to date."""
        b, s = self.batch, self.sql
        if not b.choices:
            return
        keys = sorted(b.choices)
        rows = []
        for key in keys:
            a = b.choices[key]
            topic_id = topics.get(a["topic"]) if a.get("topic") else None
            rows.append((key[0], key[1], a["kind"], topic_id, a.get("language"), a.get("stance"), s.stamp(a["at"])))
        new = self.many_rows(
            "INSERT INTO choices (call_sid, step, kind, topic_id, language, stance, chosen_at)",
            rows,
            "ON CONFLICT (call_sid, step) DO NOTHING RETURNING call_sid, step, topic_id",
        )
        fresh = sorted((sid, step, topic_id) for sid, step, topic_id in new if topic_id is not None)
        if not fresh:
            return
        call_sids = sorted({sid for sid, _, _ in fresh})
        self.learn_calls(call_sids)
        pairs: dict[tuple[str, int], list] = {}  # (call, topic) -> [stance, stance_step, state]
        query = "SELECT call_sid, topic_id, stance, stance_step FROM call_topics WHERE call_sid"
        for sid, topic_id, stance, stance_step in self.select_in(query, call_sids):
            pairs[(sid, topic_id)] = [stance, stance_step, "stored"]
        added: dict[str, int] = defaultdict(int)
        callers: dict[tuple[int, str], datetime] = {}
        caller_hours: set[tuple[datetime, int, str]] = set()
        for sid, step, topic_id in fresh:
            stance = b.choices[(sid, step)].get("stance")
            hour = self.hour(sid, b.choices[(sid, step)]["at"])
            counts = self.hourly[(hour, topic_id)]
            pair = pairs.get((sid, topic_id))
            if pair is None:  # the call's first choice of this topic
                pairs[(sid, topic_id)] = [stance, step if stance else 0, "new"]
                known = self.known.get(sid)
                if known is not None and known[2] + added[sid] == 0:
                    self.hourly[(hour, summary.WHOLE_LINE)]["routed"] += 1
                added[sid] += 1
                counts["calls"] += 1
                if stance:
                    counts[stance] += 1
                caller = known[1] if known else None
                if caller:
                    caller_hours.add((hour, topic_id, caller))
                    callers[(topic_id, caller)] = min(callers.get((topic_id, caller), hour), hour)
            elif stance is not None and pair[1] < step:  # a later position replaces an earlier one
                if pair[0] != stance:
                    counts[stance] += 1
                    if pair[0]:
                        counts[pair[0]] -= 1
                pair[0], pair[1] = stance, step
                if pair[2] == "stored":
                    pair[2] = "changed"
        self.write_pairs(pairs, added)
        self.count_callers(callers, caller_hours)

    def write_pairs(self, pairs: dict[tuple[str, int], list], added: dict[str, int]) -> None:
        new = [(sid, tid, p[0], p[1]) for (sid, tid), p in sorted(pairs.items()) if p[2] == "new"]
        if new:
            self.many_rows(
                "INSERT INTO call_topics (call_sid, topic_id, stance, stance_step)",
                new,
                "ON CONFLICT (call_sid, topic_id) DO NOTHING",
            )
        changed = [(p[0], p[1], sid, tid) for (sid, tid), p in sorted(pairs.items()) if p[2] == "changed"]
        if changed:
            self.update_rows("call_topics", ("stance", "stance_step"), ("call_sid", "topic_id"), changed)
        if added:
            self.update_rows(
                "calls",
                ("topics",),
                ("call_sid",),
                [(count, sid) for sid, count in sorted(added.items())],
                topics="calls.topics + {}",
            )

    def count_callers(self, callers: dict[tuple[int, str], datetime], caller_hours: set) -> None:
        """Note who called about what, and count each caller new to a topic once, in the
        earliest hour they called about it; and new to the topic that day, once a day."""
        s = self.sql
        days: dict[tuple, datetime] = {}
        for hour, topic_id, caller in caller_hours:
            key = (hour.date(), topic_id, caller)
            days[key] = min(days.get(key, hour), hour)
        if days:
            new = self.many_rows(
                "INSERT INTO caller_days (day, topic_id, caller_hash)",
                [(day.isoformat(), t, c) for day, t, c in sorted(days)],
                "ON CONFLICT (day, topic_id, caller_hash) DO NOTHING RETURNING day, topic_id, caller_hash",
            )
            for day, topic_id, caller in new:
                day = day if isinstance(day, date) else date.fromisoformat(day)
                self.hourly[(days[(day, topic_id, caller)], topic_id)]["callers_day_new"] += 1
        if caller_hours:
            self.many_rows(
                "INSERT INTO caller_hours (hour, topic_id, caller_hash)",
                [(s.stamp(h), t, c) for h, t, c in sorted(caller_hours)],
                "ON CONFLICT (hour, topic_id, caller_hash) DO NOTHING",
            )
        if callers:
            new = self.many_rows(
                "INSERT INTO topic_callers (topic_id, caller_hash)",
                sorted(callers),
                "ON CONFLICT (topic_id, caller_hash) DO NOTHING RETURNING topic_id, caller_hash",
            )
            for topic_id, caller in new:
                self.hourly[(callers[(topic_id, caller)], topic_id)]["callers_new"] += 1

    # --- recordings -----------------------------------------------------------------------

    def note_recordings(self, topics: dict[str, int]) -> dict[str, int]:
        """Make sure each recording's row exists, lock it, fill it from the batch's callbacks
        in the order they came, and move the comment counts where a comment was made or
        unmade. Return each recording's number."""
        b, s = self.batch, self.sql
        if not b.recordings:
            return {}
        sids = sorted(b.recordings)
        self.make_recordings(
            [(sid, b.recordings[sid][0][1]["call_sid"], b.recordings[sid][0][1]["at"]) for sid in sids]
        )
        query = f"SELECT id, recording_sid, call_sid, {', '.join(RECORDING_FIELDS)} FROM recordings WHERE recording_sid"
        stored = {row[1]: row for row in self.select_in(query, sids, " ORDER BY recording_sid" + s.for_update)}
        self.learn_calls(row[2] for row in stored.values())
        numbers, updates, filled, aliases = {}, [], [], []
        for sid in sids:
            row = stored[sid]
            before = {
                f: s.moment(value) if f.endswith("_at") else value
                for f, value in zip(RECORDING_FIELDS, row[3:], strict=True)
            }
            after = dict(before)
            for name, args in b.recordings[sid]:
                other = fill(after, name, args, topics)
                if other is not None:
                    aliases.append((other, sid))
            filled.append((sid, row, before, after))
        self.check_numbers_given(filled, [number for number, _ in aliases])
        # A row a callback made, or an action whose process had no number to give: one now.
        unnumbered = [after for _, _, _, after in filled if after["number"] is None]
        if unnumbered:
            for after, number in zip(unnumbered, take_numbers(self.connection, len(unnumbered)), strict=True):
                after["number"] = number
        for sid, row, before, after in filled:
            numbers[sid] = after["number"]
            if after != before:
                values = tuple(s.stamp(after[f]) if f.endswith("_at") else after[f] for f in RECORDING_FIELDS)
                updates.append((*values, row[0]))
                self.recount(row[2], before, after)
        if updates:
            self.update_rows("recordings", RECORDING_FIELDS, ("id",), updates)
        if aliases:
            self.many_rows(
                "INSERT INTO recording_aliases (number, recording_sid)",
                sorted(aliases),
                "ON CONFLICT (number) DO NOTHING",
            )
        return numbers

    def check_numbers_given(self, filled: list[tuple[str, tuple, dict, dict]], others: list[int]) -> None:
        """The numbers actions gave are unique as long as they come from this database's
        counter. One that does not (a journal replayed into a database restored from an
        older backup, whose counter went back) and is another recording's already is not
        taken: the recording gets a number of its own, and no fact is lost. The counter is
        kept above every number given (`others`: those kept as aliases), so that it never gives
        one of them again."""
        given = {after["number"]: sid for sid, _, before, after in filled if after["number"] != before["number"]}
        given.pop(None, None)
        if not given and not others:
            return
        query = "SELECT number, recording_sid FROM recordings WHERE number"
        found = self.select_in(query, sorted(given)) if given else []
        taken = {number for number, sid in found if sid != given[number]}
        claimed: set[int] = set()
        for sid, _, before, after in filled:
            number = after["number"]
            if number != before["number"] and (number in taken or number in claimed):
                log.warning("comment number %s is taken; recording %s gets another", number, sid)
                after["number"] = before["number"]
            claimed.add(after["number"])
        mark = self.sql.mark
        highest = max([*given, *others])
        self.execute(
            f"UPDATE recording_numbers SET next_number = {mark} + 1 WHERE next_number <= {mark}", (highest, highest)
        )

    def make_recordings(self, rows: list[tuple[str, str, datetime]]) -> None:
        """Make the rows of recordings not yet stored, empty: (RecordingSid, CallSid, at)."""
        self.many_rows(
            "INSERT INTO recordings (recording_sid, call_sid, created_at)",
            [(sid, call_sid, self.sql.stamp(at)) for sid, call_sid, at in sorted(rows)],
            "ON CONFLICT (recording_sid) DO NOTHING",
        )

    def recount(self, call_sid: str, before: dict, after: dict) -> None:
        was = before["topic_id"] if is_comment(before["topic_id"], before["duration"], before["status"]) else None
        now = after["topic_id"] if is_comment(after["topic_id"], after["duration"], after["status"]) else None
        hour = self.hour(call_sid)
        if was == now or hour is None:
            return  # no change; or no call row, which `flask counts verify` would report
        if was is not None:
            self.hourly[(hour, was)]["comments"] -= 1
        if now is not None:
            self.hourly[(hour, now)]["comments"] += 1

    def note_transcripts(self) -> None:
        """Keep each transcript (or why there is none); a later result from the same source
        replaces an earlier one."""
        s = self.sql
        if not self.batch.transcripts:
            return
        rows = []
        for (sid, source), a in sorted(self.batch.transcripts.items()):
            at = s.stamp(a["at"])
            rows.append(
                (sid, source, a.get("transcription_sid"), a.get("language"), a["status"], a.get("text"))
                + (a.get("reason"), at, at)
            )
        # A transcript staff removed stays removed, whatever arrives after (a late callback, a
        # journal replayed after a crash).
        self.many_rows(
            "INSERT INTO transcriptions (recording_sid, source, transcription_sid, language, status, text, reason, "
            "created_at, updated_at)",
            rows,
            "ON CONFLICT (recording_sid, source) DO UPDATE SET status = excluded.status, text = excluded.text, "
            "transcription_sid = excluded.transcription_sid, "
            "language = COALESCE(excluded.language, transcriptions.language), reason = excluded.reason, "
            "updated_at = excluded.updated_at WHERE transcriptions.status <> 'redacted'",
        )

    def note_jobs(self) -> None:
        """Queue background work once per (kind, key); work already queued keeps its place,
        or moves earlier (the same rule as `models.jobs.enqueue`)."""
        s = self.sql
        if not self.batch.jobs:
            return
        now = s.stamp(utcnow())
        jobs = sorted(self.batch.jobs.items())
        self.many_rows(
            "INSERT INTO jobs (kind, key, options, state, attempts, max_attempts, run_after, created_at, updated_at)",
            [(kind, key, "{}", "queued", 0, args["max_attempts"], now, now, now) for (kind, key), args in jobs],
            "ON CONFLICT (kind, key) DO UPDATE SET "
            "run_after = CASE WHEN jobs.run_after > excluded.run_after THEN excluded.run_after "
            "ELSE jobs.run_after END, updated_at = excluded.updated_at WHERE jobs.state = 'queued'",
        )

    # --- summaries ------------------------------------------------------------------------

    def add_summaries(self) -> None:
        """Add the batch's changes to the hourly counts: one upsert per (hour, topic), in key
        order, last, so that the busiest rows are held for the shortest time."""
        s = self.sql
        rows = [
            (s.stamp(hour), topic_id, *(counts[name] for name in summary.COUNTED))
            for (hour, topic_id), counts in sorted(self.hourly.items())
            if any(counts.values())
        ]
        if not rows:
            return
        columns = ", ".join(summary.COUNTED)
        sums = ", ".join(f"{name} = hourly_counts.{name} + excluded.{name}" for name in summary.COUNTED)
        self.many_rows(
            f"INSERT INTO hourly_counts (hour, topic_id, {columns})",
            rows,
            f"ON CONFLICT (hour, topic_id) DO UPDATE SET {sums}",
        )


def fill(row: dict, name: str, args: dict, topics: dict[str, int]) -> int | None:
    """Apply one recording callback to the recording's fields, as stored so far. Return the
    number a `<Record>` action gave the caller when the recording already has another from
    an earlier action (kept as an alias); the first action's number replaces any other."""
    if name == "recording_action":
        given = args.get("number")
        if given is not None and given != row["number"]:
            if row["action_at"] is not None:
                return given
            row["number"] = given
        if row["topic_id"] is None and args.get("topic"):
            row["topic_id"] = topics.get(args["topic"])
        for field in ACTION_FIELDS:
            if row[field] is None:
                row[field] = args.get(field)
        if row["action_at"] is None:
            row["action_at"] = args["at"]
    elif name == "recording_status":
        if row["status"] not in (None, "in-progress"):
            return None  # already final: a late or repeated callback changes nothing
        row["status"] = args["status"]
        row["duration"] = args["duration"] if args.get("duration") is not None else row["duration"]
        row["media_url"] = args["media_url"] if args.get("media_url") is not None else row["media_url"]
        row["error_code"] = args.get("error_code")
        row["status_at"] = args["at"]
    return None
