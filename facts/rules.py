"""The merge rules: how a stored row and a fact that arrives later combine, and what a call
counts for. Pure functions, no database: `facts/writer.py` reads what is stored, asks these,
and writes the answer.

They import only constants and pure helpers from `models`.

A call's facts reach the database in whatever order processes, instances and spools deliver
them, in any batches, some twice. Every rule below is a *join*: commutative, associative and
idempotent, so that the stored row ends the same for every order, batching and repetition.

Calls (`calls`, one row per `CallSid`):

- `account_sid`, `from_number`, `caller_hash`, `to_number`, `from_city`, `from_state`,
  `from_zip`, `from_country`, `caller_name`: the first non-empty value, never replaced by
  empty. Every request Twilio makes about a call carries the same values, but the recording
  status and transcription callbacks carry no `From`, `To` or location.
- `started_at`: the earliest moment seen. The call began at our first webhook, whichever of
  its facts arrives first.
- `language`: the first non-empty value. A caller chooses a language once (a retry carries
  the same digits).
- `status`, `duration`, `ended_at`: the status of highest `STATUS_RANK` stands, with its
  duration and end; of two alike, the later end. A final status is never undone by a late
  passing one.
- `topics`: the number of its `call_topics` rows (derived).
- `is_test`: true once any fact says so (a call played from the console's "Try the line";
  every one of its facts says so). A test call counts for nothing (`call_counts`).

Keypresses (`choices`, one row per (`CallSid`, step)): a retry carries the same step and
keys, so the values are those of any copy; `chosen_at` is the earliest. `call_topics` keeps,
per call and topic, the stance of the highest step that gave one (the step, not the arrival,
decides).

Recordings (`recordings`, one row per `RecordingSid`), see `fill_recording`:
- `topic_id`, `stance`, `language`, `step`, `finished_by`: the first non-empty, from the
  `<Record>` action (retries carry the same).
- `duration`, `media_url`: the recording status callback's when it gave one, else the
  action's.
- `status`, `error_code`, `status_at`: the status of highest `RECORDING_STATUS_RANK`
  stands, with its error code and the earliest moment it was reported.
- `created_at`, `action_at`: the earliest moment seen.
- `number`: a number a caller heard (an action's) beats one the counter gave a row a
  callback made; of two actions' numbers the smaller stays the comment's and the other
  becomes an alias, so that both find it.

Transcripts (one per recording and source): the result reported last (by its moment) wins;
one staff removed stays removed.

Summaries: what a call counts for is `call_counts(CallState)`: in the hour of its start, one
call for the whole line, one routed call if it chose a topic, and per topic chosen one call,
its stance and its comments; its caller (when known) once per topic, and once for the whole
line (topic 0), in `caller_hours` and `caller_days` (counted references: how many of the
caller's calls put it there), and in `topic_callers` with the earliest hour. When a merge
moves a call's start to another hour or learns its caller, the writer subtracts what it
counted before and adds what it counts now (`Counts.move`), so the summaries follow, once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

from models.calls import FINAL_CALL_STATUSES
from models.summary import WHOLE_LINE, hour_of

# Columns of `calls` that take the first non-empty value.
IDENTITY_FIELDS = (
    "account_sid",
    "from_number",
    "caller_hash",
    "to_number",
    "from_city",
    "from_state",
    "from_zip",
    "from_country",
    "caller_name",
    "language",
)
CALL_FIELDS = (*IDENTITY_FIELDS, "started_at", "is_test")

PASSING_CALL_STATUSES = ("queued", "initiated", "ringing", "in-progress")
# Higher stands. Twilio sends one final status a call; should two ever differ, the rank
# decides, not the order they came in.
STATUS_RANK = {status: rank for rank, status in enumerate((*PASSING_CALL_STATUSES, *FINAL_CALL_STATUSES), 1)}
RECORDING_STATUS_RANK = {"in-progress": 1, "failed": 2, "absent": 3, "completed": 4}


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


# --- calls ----------------------------------------------------------------------------------


def merge_call(stored: dict | None, incoming: dict) -> dict:
    """The `calls` row after `incoming` (values of `CALL_FIELDS`, some None) meets `stored`
    (None: not stored yet). Commutative, associative, idempotent."""
    if stored is None:
        merged = {name: incoming.get(name) for name in CALL_FIELDS}
        merged["is_test"] = bool(incoming.get("is_test"))
        return merged
    merged = dict(stored)
    for name in IDENTITY_FIELDS:
        if merged.get(name) is None and incoming.get(name) is not None:
            merged[name] = incoming[name]
    starts = [m for m in (stored.get("started_at"), incoming.get("started_at")) if m is not None]
    merged["started_at"] = min(starts) if starts else None
    merged["is_test"] = bool(stored.get("is_test")) or bool(incoming.get("is_test"))
    return merged


def status_key(status: str | None, ended_at: datetime | None, duration: int | None = None) -> tuple:
    """Order of call statuses: the greatest stands (rank, then the later end, then the longer)."""
    return (STATUS_RANK.get(status or "", 0), ended_at or datetime.min, duration if duration is not None else -1)


def standing_status(a: tuple | None, b: tuple | None) -> tuple | None:
    """Of two (status, duration, ended_at), the one that stands."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda s: status_key(s[0], s[2], s[1]))


# --- recordings ------------------------------------------------------------------------------

ACTION_FIELDS = ("topic_id", "stance", "language", "step", "finished_by")


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def fill_recording(row: dict, name: str, args: dict, topic_id: int | None) -> list[int]:
    """Apply one recording fact (`recording_action` or `recording_status`) to the
    recording's fields as stored so far, in place; return the numbers that became aliases
    (heard by a caller, but not the comment's number). `topic_id` is the action's topic."""
    if name == "recording_action":
        aliases = []
        given = args.get("number")
        heard = row["action_at"] is not None  # the stored number was read back to a caller
        if given is not None and given != row["number"]:
            if not heard or row["number"] is None:
                row["number"] = given  # a callback's number, never heard, gives way
            elif given < row["number"]:
                aliases.append(row["number"])
                row["number"] = given
            else:
                aliases.append(given)
        values = {**args, "topic_id": topic_id}
        for field_name in ACTION_FIELDS:
            if row[field_name] is None:
                row[field_name] = values.get(field_name)
        for field_name in ("duration", "media_url"):  # a status callback's value, once there, stays
            if row[field_name] is None:
                row[field_name] = args.get(field_name)
        row["action_at"] = earliest(row["action_at"], args["at"])
        return aliases
    if name == "recording_status":
        status = args["status"]
        rank, stored_rank = RECORDING_STATUS_RANK.get(status, 0), RECORDING_STATUS_RANK.get(row["status"] or "", 0)
        if row["status"] is None or rank > stored_rank:
            row["status"], row["error_code"], row["status_at"] = status, args.get("error_code"), args["at"]
            for field_name in ("duration", "media_url"):  # the standing status's, when it gave one
                if args.get(field_name) is not None:
                    row[field_name] = args[field_name]
            return []
        if row["status"] == status:
            row["status_at"] = earliest(row["status_at"], args["at"])
        for field_name in ("duration", "media_url"):  # else only what is still missing
            if row[field_name] is None:
                row[field_name] = args.get(field_name)
        return []
    raise ValueError(f"not a recording fact: {name!r}")


# --- what a call counts for ----------------------------------------------------------------


@dataclass
class CallState:
    """What a call counts for depends on: its start, its caller, per topic chosen the stance
    that stands (None for none), and per topic its comments; a test call counts for nothing."""

    started_at: datetime
    caller: str | None
    stances: dict[int, str | None] = field(default_factory=dict)
    comments: Counter = field(default_factory=Counter)
    is_test: bool = False


@dataclass
class Counts:
    """Changes to the summaries, added up over a batch.

    - `hourly[(hour, topic, name)]`: added to `hourly_counts` (names of `summary.COUNTED`
      except the callers', which the writer derives from the reference counts below).
    - `caller_hours[(hour, topic, caller)]`, `caller_days[(day, topic, caller)]`: added to
      the rows' reference counts (how many of the caller's calls about the topic fall in that
      hour or day); a row counts as a distinct caller while its count is above zero.
    - `first_hours[(topic, caller)]`: the earliest hour seen; `topic_callers` keeps the
      earliest of all.
    """

    hourly: Counter = field(default_factory=Counter)
    caller_hours: Counter = field(default_factory=Counter)
    caller_days: Counter = field(default_factory=Counter)
    first_hours: dict[tuple[int, str], datetime] = field(default_factory=dict)

    def add_call(self, started_at: datetime, caller: str | None = None, sign: int = 1) -> None:
        """A call, and its caller (when known) as a caller of the whole line."""
        hour = hour_of(started_at)
        self.hourly[(hour, WHOLE_LINE, "calls")] += sign
        self.add_caller(hour, WHOLE_LINE, caller, sign)

    def add_caller(self, hour: datetime, topic_id: int, caller: str | None, sign: int) -> None:
        if not caller:
            return
        self.caller_hours[(hour, topic_id, caller)] += sign
        self.caller_days[(hour.date(), topic_id, caller)] += sign
        if sign > 0:
            key = (topic_id, caller)
            self.first_hours[key] = min(self.first_hours.get(key, hour), hour)

    def add_topic(
        self, started_at: datetime, caller: str | None, topic_id: int, stance: str | None, routed: bool, sign: int = 1
    ) -> None:
        """A call's first choice of a topic (`routed`: its first topic of all)."""
        hour = hour_of(started_at)
        if routed:
            self.hourly[(hour, WHOLE_LINE, "routed")] += sign
        self.hourly[(hour, topic_id, "calls")] += sign
        if stance:
            self.hourly[(hour, topic_id, stance)] += sign
        self.add_caller(hour, topic_id, caller, sign)

    def change_stance(self, started_at: datetime, topic_id: int, before: str | None, after: str | None) -> None:
        if before == after:
            return
        hour = hour_of(started_at)
        if before:
            self.hourly[(hour, topic_id, before)] -= 1
        if after:
            self.hourly[(hour, topic_id, after)] += 1

    def add_comment(self, started_at: datetime, topic_id: int, sign: int = 1) -> None:
        self.hourly[(hour_of(started_at), topic_id, "comments")] += sign

    def add_call_state(self, state: CallState, sign: int = 1) -> None:
        """Everything the call counts for, added (`sign` 1) or taken away (-1); nothing for a
        test call."""
        if state.is_test:
            return
        self.add_call(state.started_at, state.caller, sign)
        for index, (topic_id, stance) in enumerate(sorted(state.stances.items())):
            self.add_topic(state.started_at, state.caller, topic_id, stance, index == 0, sign)
        for topic_id, count in state.comments.items():
            self.add_comment(state.started_at, topic_id, sign * count)

    def move(self, before: CallState, after: CallState) -> None:
        """A stored call whose start or caller a merge changed: what it counted for moves."""
        self.add_call_state(before, -1)
        self.add_call_state(after, 1)

    def count_callers(self) -> None:
        """For counts made from nothing (`call_counts` of every call): each caller once per
        topic in the hour of their earliest call about it (`callers_new`), and once per topic
        and day in the day's first hour (`callers_day_new`). The writer, adding to stored rows,
        derives the same from what the rows held before (facts/writer.py `note_callers`)."""
        for (topic_id, _), hour in self.first_hours.items():
            self.hourly[(hour, topic_id, "callers_new")] += 1
        for (day, topic_id, _), calls in self.caller_days.items():
            if calls > 0:
                self.hourly[(day_start(day), topic_id, "callers_day_new")] += 1

    def hourly_rows(self) -> dict[tuple[datetime, int], dict[str, int]]:
        """`hourly` as rows of changes, without the rows that change nothing."""
        rows: dict[tuple[datetime, int], dict[str, int]] = {}
        for (hour, topic_id, name), value in self.hourly.items():
            if value:
                rows.setdefault((hour, topic_id), Counter())[name] += value
        return rows


def call_counts(state: CallState) -> Counts:
    """What one call counts for, alone."""
    counts = Counts()
    counts.add_call_state(state)
    return counts
