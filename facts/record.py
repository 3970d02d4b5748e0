"""Facts as named, serialisable records: what a webhook writes, in a form that can wait in the
spool while the database is away and be written later by exactly the same statements.

Every fact is written by an idempotent upsert keyed on Twilio's ids (facts/writer.py), so
applying a record twice (a retried webhook, a replayed spool line) changes nothing the second
time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

FACTS = ("call", "call_status", "choice", "recording_action", "recording_status", "transcription", "job", "callback")


@dataclass(frozen=True)
class Fact:
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in FACTS:
            raise ValueError(f"unknown fact {self.name!r}")


def _decode(obj: dict) -> Any:
    """A moment as lines written before commit 138c6d2 kept it: `{"$dt": ISO text}`."""
    if set(obj) == {"$dt"}:
        return datetime.fromisoformat(obj["$dt"])
    return obj


# Where a fact holds a moment. orjson writes a datetime as its ISO 8601 text, by itself (a
# `default` callback for each would cost a webhook more than writing the rest of its line);
# `loads` turns the text back into a datetime by where it is.
MOMENTS = ("at", "ended_at")
CALL_MOMENTS = ("started_at",)


def line_of(facts: list[Fact]) -> bytes:
    """One transaction's facts as one JSON line, newline included. Every webhook writes one
    to its journal before it answers, in under a microsecond.

    The line is copied out of what `orjson.dumps` returns, which keeps its whole working
    buffer (4 or 8 KiB for a line of a few hundred bytes): the writer's queue holds a batch's
    lines, and held as returned, a second's worth took tens of megabytes."""
    return bytes(memoryview(orjson.dumps([[f.name, f.args] for f in facts], option=orjson.OPT_APPEND_NEWLINE)))


def loads(line: str) -> list[Fact]:
    facts = []
    for name, args in json.loads(line, object_hook=_decode):
        _moments(args, MOMENTS)
        if isinstance(args.get("values"), dict):
            _moments(args["values"], CALL_MOMENTS)
        facts.append(Fact(name, args))
    return facts


def _moments(args: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if isinstance(args.get(key), str):
            args[key] = datetime.fromisoformat(args[key])
