"""Making, checking and exporting the daily receipts.

A receipt is the signed statement of one day (in LINE_TIMEZONE) of the count:

    {"version": 1, "day": "2026-11-30", "zone": "America/New_York", "kind": "final",
     "covers": {"since": "…Z", "until": "…Z"}, "counts": {tally(), "line_callers"},
     "facts": digest of the day's facts (receipts/digest.py), "previous": hash of the receipt
     before it in the chain ("" for the first), "amends": hash of the day's receipt it
     replaces or null, "why": why it replaces it or null, "made_at": "…Z", "key_id": "…"}

Its `hash` is the SHA-256 of the body's canonical form, and its signature is Ed25519 over the
same bytes. Kinds: `partial` (today, so far: `covers.until` says up to when), `final` (made
once the day has ended; it amends the day's partial, if there was one), `amended` (facts
arrived or changed after the day was closed: it names the receipt it amends and why).
Receipts are only ever added (models/receipts.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import Call, utcnow
from models.receipts import TallyReceipt, chain, last_receipt, receipts_of
from models.tally import line_callers, tally
from staff.windows import local_midnight

from . import signing
from .digest import canonical, differences, digest, only_grew, sha256_hex, taken_away
from .facts import fact_counts, window_facts

log = logging.getLogger("receipts")
VERSION = 1
MOST_DAYS_PER_SWEEP = 31


def iso(moment: datetime) -> str:
    """A naive-UTC moment as a receipt states it: to the microsecond, so that a window read
    back from a receipt is exactly the one its facts were read for."""
    return moment.isoformat(timespec="microseconds") + "Z"


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


def day_window(day: date, zone: str) -> tuple[datetime, datetime]:
    """[start, end) of the local `day` as naive UTC."""
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


def local_day(moment: datetime, zone: str) -> date:
    return moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).date()


@dataclass(frozen=True)
class Statement:
    """What the database says of a window now: its counts and its facts' digest."""

    counts: dict
    facts: dict


def window_counts(session, since: datetime, until: datetime, callers_known: bool) -> dict:
    """`tally()` of [since, until) as a receipt states it: the line's calls, unrouted calls and
    callers, and per topic with anything counted (by slug, which never changes) its calls,
    callers, comments and positions; no names, which staff may edit."""
    counted = tally(session, since, until, callers_known=callers_known)
    return {
        "calls": counted.calls,
        "unrouted": counted.unrouted,
        "line_callers": line_callers(session, since, until) if callers_known else None,
        "topics": {
            t.slug: {"calls": t.calls, "callers": t.callers, "comments": t.comments, "stance": t.stance}
            for t in counted.topics
            if t.calls or t.comments
        },
    }


def statement(session, since: datetime, until: datetime, callers_known: bool) -> Statement:
    return Statement(window_counts(session, since, until, callers_known), digest(window_facts(session, since, until)))


def body_of(receipt: TallyReceipt) -> dict:
    return json.loads(receipt.body)


def counts_differences(was, now, path: str = "") -> list[str]:
    """Each figure of a receipt's counts (`was`) that the database now gives otherwise
    (`now`), named by where it is ("topics.budget.callers: 3 in the receipt, 2 now"). A figure
    the line no longer knows (None now: callers, since CALLER_NUMBERS=none), or the receipt
    did not state (None in it), cannot be checked and is not named."""
    if isinstance(was, dict) or isinstance(now, dict):
        was, now = was if isinstance(was, dict) else {}, now if isinstance(now, dict) else {}
        found = []
        for name in sorted(set(was) | set(now)):
            found += counts_differences(was.get(name, 0), now.get(name, 0), f"{path}.{name}" if path else name)
        return found
    if now is None or was is None or was == now:
        return []
    return [f"{path}: {was} in the receipt, {now} now"]


def describe_change(was: dict, now: Statement) -> str:
    """Why a receipt is amended: the facts that differ, and the counts that moved."""
    parts = [str(d) for d in differences(was["facts"], now.facts)]
    if was["counts"] != now.counts:
        parts.append("the counts changed")
    return "; ".join(parts) or "closed again"


def close_day(
    session, config, day: date, *, now: datetime | None = None, why: str | None = None
) -> TallyReceipt | None:
    """Make the day's next receipt, if the database says something its last one does not:
    a partial one while the day lasts, the final one once it has ended, an amended one when
    the facts changed after that. Returns the new receipt (the caller commits), or None when
    the day's last receipt still says it all. Raises signing.KeyMissing without a key."""
    key = signing.private_key(config["TALLY_SIGNING_KEY"])
    zone = config["LINE_TIMEZONE"]
    now = now or utcnow()
    since, end = day_window(day, zone)
    if now < since:
        raise ValueError(f"{day} has not begun in {zone}")
    ended = now >= end
    until = end if ended else now
    said = statement(session, since, until, config["CALLER_NUMBERS"] != "none")
    made = receipts_of(session, day)
    current = made[-1] if made else None
    amends = None
    if current is None:
        kind = "final" if ended else "partial"
    else:
        was = body_of(current)
        unchanged = was["facts"] == said.facts and was["counts"] == said.counts
        if current.kind == "partial" and ended:
            kind, amends, why = "final", current.hash, why or "the day ended"
        elif unchanged:
            return None
        else:
            kind = "amended" if ended else "partial"
            amends, why = current.hash, why or describe_change(was, said)
    previous = last_receipt(session)
    public = signing.public_raw(key)
    body = {
        "version": VERSION,
        "day": day.isoformat(),
        "zone": zone,
        "kind": kind,
        "covers": {"since": iso(since), "until": iso(until)},
        "counts": said.counts,
        "facts": said.facts,
        "previous": previous.hash if previous else "",
        "amends": amends,
        "why": why,
        "made_at": iso(now),
        "key_id": signing.key_id(public),
    }
    message = canonical(body)
    receipt = TallyReceipt(
        day=day,
        kind=kind,
        hash=sha256_hex(message),
        previous=body["previous"],
        body=message.decode("utf-8"),
        signature=signing.sign(key, message),
        made_at=now,
    )
    session.add(receipt)
    session.flush()  # a second receipt after the same one fails here (unique `previous`)
    return receipt


def first_day(session, zone: str) -> date | None:
    """The first local day the line has a call on, or None."""
    first = session.execute(select(func.min(Call.started_at))).scalar()
    return local_day(first, zone) if first is not None else None


def close_due(session, config, *, now: datetime | None = None, after_made=None) -> list[TallyReceipt]:
    """The worker's part, each sweep: make the final receipt of every day that ended
    TALLY_CLOSE_GRACE_MINUTES ago and has none (from the line's first call on, a month at a
    time at most), and an amended receipt for a closed day of the last week whose facts have
    grown since (late facts: a spool replayed after the day was closed). A closed day whose
    facts shrank or changed in place is not amended here: `flask tally verify` reports it.
    Commits each receipt; `after_made(session, receipt)` runs before each commit."""
    if not config["TALLY_SIGNING_KEY"]:
        return []  # no receipts on this line
    zone = config["LINE_TIMEZONE"]
    now = now or utcnow()
    closable = local_day(now - timedelta(minutes=config["TALLY_CLOSE_GRACE_MINUTES"]), zone) - timedelta(days=1)
    made = []
    finals = {r.day for r in chain(session) if r.kind in ("final", "amended")}
    start = first_day(session, zone)
    if start is None:
        return []
    day = max([start, *(d + timedelta(days=1) for d in finals)]) if finals else start
    while day <= closable and len(made) < MOST_DAYS_PER_SWEEP:
        made += _commit(session, config, day, now, after_made)
        day += timedelta(days=1)
    for day in sorted(d for d in finals if d >= closable - timedelta(days=6)):
        if _grew(session, config, day):
            made += _commit(session, config, day, now, after_made, why="late facts arrived after the day was closed")
    return made


def _grew(session, config, day: date) -> bool:
    """Whether the day's facts grew since its last receipt: three counts first, then, if they
    moved, the digest (only growth counts)."""
    receipt = receipts_of(session, day)[-1]
    was = body_of(receipt)
    since, until = from_iso(was["covers"]["since"]), from_iso(was["covers"]["until"])
    kinds = {"call": 0, "choice": 0, "position": 0, "comment": 0}
    for entry in was["facts"]["topics"].values():
        for kind, group in entry["kinds"].items():
            kinds[kind] += group["count"]
    counts = fact_counts(session, since, until)
    stated = {"calls": kinds["call"], "keypresses": kinds["choice"] + kinds["position"], "recordings": kinds["comment"]}
    callers_known = config["CALLER_NUMBERS"] != "none"
    if counts == stated and window_counts(session, since, until, callers_known) == was["counts"]:
        return False
    now = digest(window_facts(session, since, until))
    return now != was["facts"] and only_grew(was["facts"], now)


def _commit(session, config, day, now, after_made, why=None) -> list[TallyReceipt]:
    try:
        receipt = close_day(session, config, day, now=now, why=why)
        if receipt is not None and after_made is not None:
            after_made(session, receipt)
        session.commit()
    except IntegrityError:
        session.rollback()  # another worker appended first; the next sweep looks again
        log.info("receipt for %s: another process appended first", day)
        return []
    if receipt is not None:
        log.info("receipt %s for %s (%s)", receipt.hash[:12], day, receipt.kind)
    return [receipt] if receipt is not None else []


# --- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    day: str
    problem: str

    def __str__(self) -> str:
        return f"{self.day}: {self.problem}"


def verify(session, config, *, now: datetime | None = None) -> list[Finding]:
    """Check every receipt: its hash, its signature with this line's key, its place in the
    chain; then recompute each day's standing receipt from the database and compare. Returns
    what differs, the earliest day first (empty when everything matches). A partial receipt
    of a day not yet ended is compared only for facts taken away (more arrive all day)."""
    key = signing.private_key(config["TALLY_SIGNING_KEY"])
    public = signing.public_raw(key)
    now = now or utcnow()
    findings: list[Finding] = []
    previous = ""
    standing: dict[str, TallyReceipt] = {}
    for receipt in chain(session):
        body = body_of(receipt)
        message = canonical(body)
        day = body.get("day", str(receipt.day))
        if sha256_hex(message) != receipt.hash or message.decode("utf-8") != receipt.body:
            findings.append(Finding(day, f"receipt {receipt.hash[:12]}: its body does not match its hash"))
        if not signing.signature_holds(public, message, receipt.signature):
            findings.append(
                Finding(day, f"receipt {receipt.hash[:12]}: the signature does not hold for this line's key")
            )
        if body.get("previous") != previous or receipt.previous != previous:
            findings.append(Finding(day, f"receipt {receipt.hash[:12]}: the chain is broken before it"))
        previous = receipt.hash
        standing[day] = receipt
    callers_known = config["CALLER_NUMBERS"] != "none"
    for day in sorted(standing):
        body = body_of(standing[day])
        since, until = from_iso(body["covers"]["since"]), from_iso(body["covers"]["until"])
        said = statement(session, since, until, callers_known)
        if body["kind"] == "partial" and now < day_window(date.fromisoformat(day), body["zone"])[1]:
            findings += [Finding(day, str(d)) for d in taken_away(body["facts"], said.facts)]
            continue
        for difference in differences(body["facts"], said.facts):
            findings.append(Finding(day, str(difference)))
        if body["facts"]["root"] != said.facts["root"] and not differences(body["facts"], said.facts):
            findings.append(Finding(day, "the day's root differs"))
        findings += [
            Finding(day, f"the counts differ from the receipt's: {d}")
            for d in counts_differences(body["counts"], said.counts)
        ]
    return sorted(findings, key=lambda f: f.day)


# --- publishing what a reader needs -------------------------------------------------------------


def published(receipt: TallyReceipt) -> dict:
    """A receipt as it is published: its body, hash and signature."""
    return {"body": body_of(receipt), "hash": receipt.hash, "signature": receipt.signature}


def facts_export(session, day: date) -> dict | None:
    """The day's canonical facts as its standing receipt covers them, for anyone to check
    against the receipt; None when the day has no receipt."""
    receipts = receipts_of(session, day)
    if not receipts:
        return None
    body = body_of(receipts[-1])
    since, until = from_iso(body["covers"]["since"]), from_iso(body["covers"]["until"])
    return {
        "day": body["day"],
        "receipt": receipts[-1].hash,
        "covers": body["covers"],
        "facts": window_facts(session, since, until),
    }
