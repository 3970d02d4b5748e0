"""Facts as named, serialisable records: what a webhook writes, in a form that can wait in the
spool while the database is away and be written later by exactly the same statements.

Every fact function is an idempotent upsert keyed on Twilio's ids, so applying a record twice
(a retried webhook, a replayed spool line) changes nothing the second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .calls import note_call, note_call_status, note_choice
from .jobs import enqueue
from .recordings import note_recording_action, note_recording_status, note_transcription

FACTS = {
    "call": note_call,
    "call_status": note_call_status,
    "choice": note_choice,
    "recording_action": note_recording_action,
    "recording_status": note_recording_status,
    "transcription": note_transcription,
    "job": enqueue,
}


@dataclass(frozen=True)
class Fact:
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in FACTS:
            raise ValueError(f"unknown fact {self.name!r}")


def apply(session, facts: list[Fact]) -> list[Any]:
    """Write the facts in the session's transaction; return what each fact function returned."""
    return [FACTS[fact.name](session, **fact.args) for fact in facts]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    raise TypeError(f"cannot spool a {type(value).__name__}")


def _decode(obj: dict) -> Any:
    if set(obj) == {"$dt"}:
        return datetime.fromisoformat(obj["$dt"])
    return obj


def dumps(facts: list[Fact]) -> str:
    """One JSON line for one transaction's facts."""
    return json.dumps([[f.name, f.args] for f in facts], default=_encode, separators=(",", ":"))


def loads(line: str) -> list[Fact]:
    return [Fact(name, args) for name, args in json.loads(line, object_hook=_decode)]
