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
- `stir_verstat` (Twilio's `StirVerstat`), `caller_withheld` (whether `From` was withheld),
  `blocked` (the voice webhook answered with the block list's message): the first non-empty
  value. They are facts the flags are computed from (models/flags.py), never a count.
- `status`, `duration`, `ended_at`: the status of highest `STATUS_RANK` stands, with its
  duration and end; of two alike, the later end. A final status is never undone by a late
  passing one.
- `entered_zip`, `zip_step`: the ZIP code the caller entered at the ZIP step, with its step;
  by step: of two, the one of the higher (step, ZIP code) stands (`merge_call`). A call asks
  once (one retry, at the same step, and only a five-digit entry is stored), so two values
  never differ in practice; the rule still makes any two agree in any order. Twilio's
  `FromZip` (the carrier's guess about the phone) is `from_zip`, an identity field: never
  the caller's word, and never counted as a constituent.
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
line (topic 0), in `caller_hours`, `caller_days` and `caller_periods` (ISO weeks and months;
counted references: how many of the caller's calls put it there; `period_callers` counts the
rows above zero), and in `topic_callers` with the earliest hour. The same
calls, routed calls, comments and stances go, keyed by the ZIP code the caller entered
("" for none), to `zip_counts` in the hour, the UTC day and month, and all time
(`ZIP_PERIODS`). When a merge moves a call's start, learns its caller or its ZIP code, the
writer subtracts what it counted before and adds what it counts now (`Counts.move`), so the
summaries follow, once.

One voice per caller (`caller_voices`, `voice_counts`): a caller's position on a topic over
a period is the position of their latest call that gave one, "latest" by (the call's start,
then its `CallSid`): a total order of stored facts, not of arrival. `latest_positions`
derives, from the positions of a caller's calls (`Position`: per call and topic, the stance
that stands), the latest per UTC day, ISO week (from Monday), month and all time
(`VOICE_PERIODS`); `voice_totals` counts them per period, topic, ZIP code and stance. A
latest is a maximum, which a subtraction cannot undo, so the writer does not add it up: for
each (caller, topic) a batch touched it reads the caller's stored positions and derives the
rows again (facts/writer.py `note_voices`); `flask counts verify` derives all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from models.calls import FINAL_CALL_STATUSES
from models.summary import ALL_TIME, WHOLE_LINE, hour_of

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
    "stir_verstat",
    "caller_withheld",
    "blocked",
)
ZIP_FIELDS = ("entered_zip", "zip_step")
CALL_FIELDS = (*IDENTITY_FIELDS, *ZIP_FIELDS, "started_at", "is_test")

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
    stored = dict.fromkeys(CALL_FIELDS) if stored is None else stored
    merged = dict(stored)
    for name in IDENTITY_FIELDS:
        if merged.get(name) is None and incoming.get(name) is not None:
            merged[name] = incoming[name]
    starts = [m for m in (stored.get("started_at"), incoming.get("started_at")) if m is not None]
    merged["started_at"] = min(starts) if starts else None
    merged["entered_zip"], merged["zip_step"] = standing_zip(
        (stored.get("entered_zip"), stored.get("zip_step")), (incoming.get("entered_zip"), incoming.get("zip_step"))
    )
    merged["is_test"] = bool(stored.get("is_test")) or bool(incoming.get("is_test"))
    return merged


def standing_zip(a: tuple[str | None, int | None], b: tuple[str | None, int | None]) -> tuple:
    """Of two (ZIP code, step) the one that stands: a ZIP code beats none; of two, the
    higher (step, ZIP code)."""
    if not a[0] or not b[0]:
        return a if a[0] else b if b[0] else (None, None)
    return max(a, b, key=lambda z: (z[1] or 0, z[0]))


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
    zip: str | None = None  # the ZIP code the caller entered
    is_test: bool = False


# `zip_counts`' periods: the hour, the UTC day and month a call started in, and all time.
ZIP_PERIODS = ("h", "d", "m", "a")
VOICE_PERIODS = ("d", "w", "m", "a")
# `caller_periods`' periods: distinct callers over a calendar week or month (a day's are in
# `caller_days`, all time's in `topic_callers`).
CALLER_PERIODS = ("w", "m")


def period_start(period: str, moment: datetime) -> datetime:
    """The start of the period (`h` hour, `d` UTC day, `w` ISO week, `m` month, `a` all time)
    that holds `moment`."""
    if period == "h":
        return hour_of(moment)
    day = datetime(moment.year, moment.month, moment.day)
    if period == "d":
        return day
    if period == "w":
        return day - timedelta(days=day.weekday())
    if period == "m":
        return day.replace(day=1)
    return ALL_TIME


def zip_key(entered_zip: str | None) -> str:
    """The summaries' key for a call's entered ZIP code: "" for none."""
    return entered_zip or ""


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
    zipped: Counter = field(default_factory=Counter)  # (hour, topic, zip key, name) -> change
    # (period, start, topic, caller) -> change, for the ISO week and the month; and, counted
    # from them, (period, start, topic) -> change in distinct callers.
    caller_periods: Counter = field(default_factory=Counter)
    period_callers: Counter = field(default_factory=Counter)

    def count(self, hour: datetime, topic_id: int, name: str, zip: str | None, sign: int) -> None:
        """`name` of `topic_id` in `hour`, in `hourly_counts` and, by ZIP code, `zip_counts`."""
        self.hourly[(hour, topic_id, name)] += sign
        self.zipped[(hour, topic_id, zip_key(zip), name)] += sign

    def add_call(self, started_at: datetime, caller: str | None = None, sign: int = 1, zip: str | None = None) -> None:
        """A call, and its caller (when known) as a caller of the whole line."""
        hour = hour_of(started_at)
        self.count(hour, WHOLE_LINE, "calls", zip, sign)
        self.add_caller(hour, WHOLE_LINE, caller, sign)

    def add_caller(self, hour: datetime, topic_id: int, caller: str | None, sign: int) -> None:
        if not caller:
            return
        self.caller_hours[(hour, topic_id, caller)] += sign
        self.caller_days[(hour.date(), topic_id, caller)] += sign
        for period in CALLER_PERIODS:
            self.caller_periods[(period, period_start(period, hour), topic_id, caller)] += sign
        if sign > 0:
            key = (topic_id, caller)
            self.first_hours[key] = min(self.first_hours.get(key, hour), hour)

    def add_topic(
        self,
        started_at: datetime,
        caller: str | None,
        topic_id: int,
        stance: str | None,
        routed: bool,
        sign: int = 1,
        zip: str | None = None,
    ) -> None:
        """A call's first choice of a topic (`routed`: its first topic of all)."""
        hour = hour_of(started_at)
        if routed:
            self.count(hour, WHOLE_LINE, "routed", zip, sign)
        self.count(hour, topic_id, "calls", zip, sign)
        if stance:
            self.count(hour, topic_id, stance, zip, sign)
        self.add_caller(hour, topic_id, caller, sign)

    def change_stance(
        self, started_at: datetime, topic_id: int, before: str | None, after: str | None, zip: str | None = None
    ) -> None:
        if before == after:
            return
        hour = hour_of(started_at)
        if before:
            self.count(hour, topic_id, before, zip, -1)
        if after:
            self.count(hour, topic_id, after, zip, 1)

    def add_comment(self, started_at: datetime, topic_id: int, sign: int = 1, zip: str | None = None) -> None:
        self.count(hour_of(started_at), topic_id, "comments", zip, sign)

    def add_call_state(self, state: CallState, sign: int = 1) -> None:
        """Everything the call counts for, added (`sign` 1) or taken away (-1); nothing for a
        test call."""
        if state.is_test:
            return
        self.add_call(state.started_at, state.caller, sign, state.zip)
        for index, (topic_id, stance) in enumerate(sorted(state.stances.items())):
            self.add_topic(state.started_at, state.caller, topic_id, stance, index == 0, sign, state.zip)
        for topic_id, count in state.comments.items():
            self.add_comment(state.started_at, topic_id, sign * count, state.zip)

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
        for (period, start, topic_id, _), calls in self.caller_periods.items():
            if calls > 0:
                self.period_callers[(period, start, topic_id)] += 1

    def hourly_rows(self) -> dict[tuple[datetime, int], dict[str, int]]:
        """`hourly` as rows of changes, without the rows that change nothing."""
        rows: dict[tuple[datetime, int], dict[str, int]] = {}
        for (hour, topic_id, name), value in self.hourly.items():
            if value:
                rows.setdefault((hour, topic_id), Counter())[name] += value
        return rows

    def zip_rows(self) -> dict[tuple[str, datetime, int, str], Counter]:
        """`zipped` as rows of changes to `zip_counts` ((period, start, topic, zip key) ->
        changes), one per period of `ZIP_PERIODS`, without the rows that change nothing."""
        rows: dict[tuple[str, datetime, int, str], Counter] = {}
        for (hour, topic_id, zip, name), value in self.zipped.items():
            if value:
                for period in ZIP_PERIODS:
                    rows.setdefault((period, period_start(period, hour), topic_id, zip), Counter())[name] += value
        return {key: changes for key, changes in rows.items() if any(changes.values())}


def call_counts(state: CallState) -> Counts:
    """What one call counts for, alone."""
    counts = Counts()
    counts.add_call_state(state)
    return counts


# --- one voice per caller ------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Position:
    """A call's position on a topic, ordered by the call's start, then its `CallSid`: the
    later of two is the caller's latest."""

    started_at: datetime
    call_sid: str
    stance: str
    zip: str = ""  # the call's entered ZIP code ("" for none)


def latest_positions(
    positions: Iterable[tuple[int, str, Position]],
) -> dict[tuple[str, datetime, int, str], Position]:
    """From (topic, caller, position) of calls, each caller's latest position on each topic
    per period of `VOICE_PERIODS`: {(period, start, topic, caller): position}."""
    latest: dict[tuple[str, datetime, int, str], Position] = {}
    for topic_id, caller, position in positions:
        for period in VOICE_PERIODS:
            key = (period, period_start(period, position.started_at), topic_id, caller)
            if key not in latest or latest[key] < position:
                latest[key] = position
    return latest


def voice_totals(latest: dict[tuple[str, datetime, int, str], Position]) -> Counter:
    """Callers per (period, start, topic, zip key, stance): `voice_counts`' figures."""
    totals: Counter = Counter()
    for (period, start, topic_id, _), position in latest.items():
        totals[(period, start, topic_id, position.zip, position.stance)] += 1
    return totals
