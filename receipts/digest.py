"""The canonical form of counted facts and their Merkle digest: pure functions, standard
library only. `scripts/verify_receipts.py` restates them without importing the app; a test
checks that both agree.

Canonical form: JSON with sorted keys, no spaces, UTF-8, no floats (a float is refused).

A fact is a mapping with at least `kind` (one of KINDS), `key` and `topic` (a topic's slug,
or "(none)" for what chose no topic). Facts are grouped by topic, then by kind; each group's
root is a Merkle tree over its facts in the order of their `key`:

- leaf = SHA-256(0x00 || canonical(fact))
- node = SHA-256(0x01 || left || right); an odd node at the end of a level goes up as it is
- an empty group's root is SHA-256 of nothing
- a topic's root = SHA-256(0x02 || canonical({kind: root of its group, for every kind}))
- the day's root = SHA-256(0x02 || canonical({topic: topic's root}))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("call", "choice", "position", "comment")
NO_TOPIC = "(none)"
KIND_WORDS = {  # how a difference of each kind is named: (fewer, more, changed)
    "call": ("a deleted call", "an added call", "a changed call"),
    "choice": ("a removed choice", "an added choice", "a changed choice"),
    "position": ("a removed position", "an added position", "a changed position"),
    "comment": ("a removed comment", "an added comment", "a changed comment"),
}


def canonical(value) -> bytes:
    """`value` as canonical JSON bytes; raises ValueError on a float anywhere in it."""
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _refuse_floats(value) -> None:
    if isinstance(value, float):
        raise ValueError("canonical form holds no floats")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def merkle_root(leaves: list[bytes]) -> str:
    """The Merkle root (hex) of `leaves` (each a leaf's hash), in their order."""
    if not leaves:
        return sha256_hex(b"")
    level = leaves
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def mapping_root(roots: dict[str, str]) -> str:
    return sha256_hex(b"\x02" + canonical(roots))


def digest(facts: Iterable[dict]) -> dict:
    """{"root", "topics": {topic: {"root", "kinds": {kind: {"count", "root"}}}}} of `facts`."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for fact in facts:
        if fact["kind"] not in KINDS:
            raise ValueError(f"unknown kind of fact {fact['kind']!r}")
        groups.setdefault(fact["topic"], {kind: [] for kind in KINDS})[fact["kind"]].append(fact)
    topics = {}
    for topic in sorted(groups):
        kinds = {}
        for kind in KINDS:
            ordered = sorted(groups[topic][kind], key=lambda fact: fact["key"])
            leaves = [hashlib.sha256(b"\x00" + canonical(fact)).digest() for fact in ordered]
            kinds[kind] = {"count": len(ordered), "root": merkle_root(leaves)}
        topics[topic] = {"root": mapping_root({k: v["root"] for k, v in kinds.items()}), "kinds": kinds}
    return {"root": mapping_root({topic: t["root"] for topic, t in topics.items()}), "topics": topics}


@dataclass(frozen=True)
class Difference:
    """One topic and kind of fact whose group differs: how many the receipt had, how many now."""

    topic: str
    kind: str
    was: int
    now: int

    @property
    def what(self) -> str:
        fewer, more, changed = KIND_WORDS[self.kind]
        return fewer if self.now < self.was else more if self.now > self.was else changed

    def __str__(self) -> str:
        return f"topic {self.topic}: {self.what} ({self.was} in the receipt, {self.now} now)"


def differences(published: dict, recomputed: dict) -> list[Difference]:
    """Each topic and kind of fact that differs between two digests, most telling first
    (calls, then comments, positions, choices; topics in order)."""
    found = []
    empty = {"count": 0, "root": merkle_root([])}
    topics = sorted(set(published["topics"]) | set(recomputed["topics"]))
    for kind in ("call", "comment", "position", "choice"):
        for topic in topics:
            was = published["topics"].get(topic, {}).get("kinds", {}).get(kind, empty)
            now = recomputed["topics"].get(topic, {}).get("kinds", {}).get(kind, empty)
            if was["root"] != now["root"]:
                found.append(Difference(topic, kind, was["count"], now["count"]))
    return found


def totals(digested: dict) -> dict[str, int]:
    """How many facts of each kind, over every topic."""
    return {kind: sum(t["kinds"][kind]["count"] for t in digested["topics"].values()) for kind in KINDS}


def taken_away(published: dict, recomputed: dict) -> list[Difference]:
    """What no later fact can explain, for a day whose facts are still arriving: fewer facts
    of a kind over the whole day (a call's first topic may still move it between topics), or
    a keypress changed in place (keypresses are never rewritten)."""
    before, after = totals(published), totals(recomputed)
    return [
        d
        for d in differences(published, recomputed)
        if (after[d.kind] < before[d.kind] and d.now < d.was) or (d.kind in ("choice", "position") and d.now == d.was)
    ]


def only_grew(published: dict, recomputed: dict) -> bool:
    """Whether `recomputed` has at least as many facts of every topic and kind as `published`
    (late facts add; they never take away)."""
    for topic, entry in published["topics"].items():
        for kind, group in entry["kinds"].items():
            now = recomputed["topics"].get(topic, {}).get("kinds", {}).get(kind, {"count": 0})
            if now["count"] < group["count"]:
                return False
    return True
