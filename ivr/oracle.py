"""The counts the line must show for what was played, from the callers' own records alone.

A pure function of `PlayedCall` records (ivr/caller.py): it never reads the line's tables nor
calls its counting code. The rules are the ones the README and models/tally.py state:

- `calls`: every call some request of which reached the line (a callback alone makes one);
- `unrouted`: those that chose no topic, but for the blocked ones;
- `blocked`: those the line answered with the block list's message;
- per topic, `calls`: the calls that chose it (the general topic counts as chosen after
  three missed keys); `callers`: their distinct numbers, withheld ones excluded (None when
  the line keeps no numbers); `comments`: recordings on it whose `<Record>` action got
  through, longer than 0 s, not absent or failed; `stance`: per call, the last position
  pressed on the topic; `callbacks`: the calls that asked for a call back after a comment on
  it.
- with `districts` (models.line.District), per topic `district`: its calls and positions by
  where the ZIP code the caller entered puts them (`inside`, `outside`, `unknown`), keyed by
  district name when there are several; with `inside`, only the calls inside that district
  count at all.
- with `voices`, per topic `per_caller`: each caller (withheld numbers excluded) once, with
  the last position they pressed on it in the last of their calls that gave one, the calls
  taken in the order `played` lists them (calls played one after another: the order of
  their starts). None when the line keeps no numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from .caller import PlayedCall
from .menu import STANCE_KEYS

STANCE_NAMES = tuple(STANCE_KEYS.values())


PLACES = ("inside", "outside", "unknown")


def place_of(entered_zip: str | None, zips: Iterable[str]) -> str:
    if not entered_zip:
        return "unknown"
    return "inside" if entered_zip in set(zips) else "outside"


def expected_counts(
    played: Iterable[PlayedCall],
    slugs: Iterable[str] = (),
    *,
    callers_known: bool = True,
    districts: dict[str, Iterable[str]] | None = None,
    inside: Iterable[str] | None = None,
    voices: bool = False,
) -> dict:
    """`{"calls", "unrouted", "blocked", "topics": {slug: {"calls", "callers", "comments",
    "stance", "callbacks"}}}`
    for the calls `played`; every slug in `slugs` is listed (with zeros if never chosen).
    `districts` ({name: ZIP codes}) adds each topic's `district`, `voices` its `per_caller`;
    `inside` (ZIP codes) counts only the calls whose caller entered one of them."""
    topics: dict[str, dict] = {}
    districts = {name: set(zips) for name, zips in (districts or {}).items()}

    def empty_split() -> dict:
        return {place: {"calls": 0, **dict.fromkeys(STANCE_NAMES, 0)} for place in PLACES}

    def topic(slug: str) -> dict:
        counts = topics.get(slug)
        if counts is None:
            counts = topics[slug] = {
                "calls": 0,
                "callers": set(),
                "comments": 0,
                "stance": dict.fromkeys(STANCE_NAMES, 0),
                "callbacks": 0,
                "latest": {},
            }
            if districts:
                counts["district"] = {name: empty_split() for name in districts}
        return counts

    for slug in slugs:
        topic(slug)
    calls = unrouted = blocked = 0
    for call in played:
        if not call.reached or (inside is not None and call.entered_zip not in set(inside)):
            continue
        calls += 1
        chosen = call.topics
        if call.blocked:
            blocked += 1
        elif not chosen:
            unrouted += 1
        for slug in call.callbacks:
            topic(slug)["callbacks"] += 1
        for slug, stance in chosen.items():
            counts = topic(slug)
            counts["calls"] += 1
            if call.caller is not None:
                counts["callers"].add(call.caller)
                if stance is not None:
                    counts["latest"][call.caller] = stance  # a later call's replaces an earlier one's
            if stance is not None:
                counts["stance"][stance] += 1
            for name, zips in districts.items():
                split = counts["district"][name][place_of(call.entered_zip, zips)]
                split["calls"] += 1
                if stance is not None:
                    split[stance] += 1
        for comment in call.comments:
            topic(comment.topic)["comments"] += 1
    for counts in topics.values():
        counts["callers"] = len(counts["callers"]) if callers_known else None
        latest = counts.pop("latest")
        if voices:
            per_caller = dict.fromkeys(STANCE_NAMES, 0)
            for stance in latest.values():
                per_caller[stance] += 1
            counts["per_caller"] = per_caller if callers_known else None
        if districts and len(districts) == 1:
            counts["district"] = next(iter(counts["district"].values()))
    return {"calls": calls, "unrouted": unrouted, "blocked": blocked, "topics": topics}


def counts_shown(body: dict, splits: bool = False) -> dict:
    """`GET /api/v1/counts`'s answer in the shape of `expected_counts` (without `voices` or
    `districts`; with `splits`, each topic's `per_caller` and `district` too), every topic
    listed."""
    return {
        "calls": body["calls"],
        "unrouted": body["unrouted"],
        "blocked": body.get("blocked", 0),
        "topics": {
            t["slug"]: {
                "calls": t["calls"],
                "callers": t["callers"],
                "comments": t["comments"],
                "stance": {name: t["stance"][name] for name in STANCE_NAMES},
                "callbacks": t.get("callbacks", 0),
                **({"per_caller": t.get("per_caller"), "district": t.get("district")} if splits else {}),
            }
            for t in body["topics"]
        },
    }


def compare_counts(expected: dict, body: dict) -> list[str]:
    """Every difference between the expected counts and the API's answer `body`; [] when they
    agree. A topic the record does not name must show nothing."""
    shown = counts_shown(body, splits=True)
    problems = []
    for name in ("calls", "unrouted", "blocked"):
        if shown[name] != expected.get(name, 0):
            problems.append(f"{name}: the API says {shown[name]}, the callers played {expected[name]}")
    nothing = {"calls": 0, "callers": 0, "comments": 0, "stance": dict.fromkeys(STANCE_NAMES, 0), "callbacks": 0}
    for slug in sorted(expected["topics"].keys() | shown["topics"].keys()):
        want, got = expected["topics"].get(slug), shown["topics"].get(slug)
        if got is None:
            problems.append(f"topic {slug}: missing from the API")
            continue
        if want is None:
            want = {**nothing, "callers": got["callers"] if got["callers"] is None else 0}
        for name in ("calls", "callers", "comments", "callbacks"):
            if got[name] != want.get(name, 0):
                problems.append(f"topic {slug} {name}: the API says {got[name]}, the callers played {want[name]}")
        for stance in STANCE_NAMES:
            if got["stance"][stance] != want["stance"][stance]:
                problems.append(
                    f"topic {slug} {stance}: the API says {got['stance'][stance]}, "
                    f"the callers played {want['stance'][stance]}"
                )
        for name in ("per_caller", "district"):  # compared when the record counts them
            if name in want and got[name] != want[name]:
                problems.append(f"topic {slug} {name}: the API says {got[name]}, the callers played {want[name]}")
    return problems
