#!/usr/bin/env python3
"""Check a comment line's published receipts without the line's code: Python's standard
library and the `cryptography` package only (`pip install cryptography`).

    python verify_receipts.py --base https://line.example.org/public [--day 2026-11-30]
    python verify_receipts.py --key tally-key.json --receipts receipts.json [--facts 2026-11-30.facts.json]

With `--base` it downloads `tally-key`, `receipts` and, for `--day`, that day's
`receipts/DAY.facts.json`; with files, it reads what you downloaded; a file given beside
`--base` is used instead of downloading it (`--key` pins a key you kept). It checks that each
receipt's hash is the SHA-256 of its body's canonical form, that its Ed25519 signature holds
for the key, and that each names the one before it; with a day's facts, it recomputes the
digest (a Merkle tree per topic and kind of fact) and compares it with the receipt the export
names, which must be a receipt of the day the export says (and, with `--day`, of that day).
Exit 0 when everything holds; 1 naming what does not, or what could not be read.

The canonical form and the digest are stated in the line's receipts/digest.py; this file says
them again on purpose, so that checking needs nothing of the line's.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import urllib.error
import urllib.request
from datetime import date

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KINDS = ("call", "choice", "position", "comment")


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4))


def merkle_root(leaves: list[bytes]) -> str:
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = leaves
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def mapping_root(roots: dict) -> str:
    return hashlib.sha256(b"\x02" + canonical(roots)).hexdigest()


def digest(facts: list[dict]) -> dict:
    groups: dict = {}
    for fact in facts:
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


class Unreadable(Exception):
    """What was to be checked could not be read; the message says what and why."""


def fetch(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        raise Unreadable(f"{url}: the line answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreadable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError:
        raise Unreadable(f"{url}: not JSON") from None


def read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror}") from None
    except ValueError:
        raise Unreadable(f"{path}: not JSON") from None


def calendar_day(text: str) -> str:
    """`text` if it is a day written YYYY-MM-DD, else Unreadable."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) and date.fromisoformat(text):
            return text
    except ValueError:
        pass
    raise Unreadable(f"--day {text!r}: give a day as YYYY-MM-DD")


def check_chain(key: dict, receipts: list[dict]) -> list[str]:
    """What is wrong with the receipts, in chain order (empty when nothing is)."""
    public = Ed25519PublicKey.from_public_bytes(unb64(key["public_key"]))
    problems, previous = [], ""
    for receipt in receipts:
        body, message = receipt["body"], canonical(receipt["body"])
        name = f"{body.get('day')} {body.get('kind')} receipt {receipt['hash'][:12]}"
        if hashlib.sha256(message).hexdigest() != receipt["hash"]:
            problems.append(f"{name}: its body does not match its hash")
        try:
            public.verify(unb64(receipt["signature"]), message)
        except (InvalidSignature, ValueError):
            problems.append(f"{name}: the signature does not hold for key {key.get('key_id')}")
        if body.get("previous") != previous:
            problems.append(f"{name}: it does not follow the receipt before it")
        previous = receipt["hash"]
    return problems


def check_facts(receipts: list[dict], export: dict, day: str | None = None) -> list[str]:
    """Whether the export is of `day` (when given), names a receipt of its own day, and its
    facts give that receipt's digest."""
    if day is not None and export["day"] != day:
        return [f"{day}: the facts export is of {export['day']}"]
    named = next((r for r in receipts if r["hash"] == export["receipt"]), None)
    if named is None:
        return [f"{export['day']}: the facts name receipt {export['receipt'][:12]}, which is not in the chain"]
    if named["body"]["day"] != export["day"]:
        return [f"{export['day']}: the facts name receipt {export['receipt'][:12]}, which is of {named['body']['day']}"]
    stated, recomputed = named["body"]["facts"], digest(export["facts"])
    if stated == recomputed:
        return []
    problems = []
    for topic in sorted(set(stated["topics"]) | set(recomputed["topics"])):
        for kind in KINDS:
            was = stated["topics"].get(topic, {}).get("kinds", {}).get(kind, {"count": 0, "root": merkle_root([])})
            now = recomputed["topics"].get(topic, {}).get("kinds", {}).get(kind, {"count": 0, "root": merkle_root([])})
            if was != now:
                problems.append(
                    f"{export['day']}, topic {topic}: the {kind} facts differ "
                    f"({was['count']} in the receipt, {now['count']} in the export)"
                )
    return problems or [f"{export['day']}: the day's root differs"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a comment line's signed daily receipts.")
    parser.add_argument("--base", help="the line's public address, e.g. https://line.example.org/public")
    parser.add_argument("--day", help="with --base: also check this day's facts (YYYY-MM-DD)")
    parser.add_argument("--key", help="tally-key.json, as downloaded")
    parser.add_argument("--receipts", help="receipts.json, as downloaded")
    parser.add_argument("--facts", help="a day's facts export (DAY.facts.json), as downloaded")
    args = parser.parse_args(argv)
    if not args.base and not (args.key and args.receipts):
        parser.error("give --base, or --key and --receipts")
    if args.day and not args.base:
        parser.error("--day is for --base: with files, give the day's export as --facts")
    try:
        problems, checked = check(args)
    except Unreadable as exc:
        print(f"could not check: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(checked)
    return 0


def check(args: argparse.Namespace) -> tuple[list[str], str]:
    """(what is wrong, what was checked), checking what `args` name (each file given is used
    instead of the download); Unreadable when something could not be read."""
    base = (args.base or "").rstrip("/")
    day = calendar_day(args.day) if args.day else None
    key = read(args.key) if args.key else fetch(f"{base}/tally-key")
    chain = read(args.receipts) if args.receipts else fetch(f"{base}/receipts")
    export = read(args.facts) if args.facts else fetch(f"{base}/receipts/{day}.facts.json") if day else None
    try:
        receipts = chain["receipts"]
        problems = check_chain(key, receipts)
        if export is not None:
            problems += check_facts(receipts, export, day)
    except (KeyError, TypeError, AttributeError) as exc:
        lacks = f"a field {exc} is missing" if isinstance(exc, KeyError) else "a field is not of its kind"
        raise Unreadable(f"not a key, receipts or facts export as the line publishes them: {lacks}") from None
    days = sorted({r["body"]["day"] for r in receipts})
    span = f"{days[0]} to {days[-1]}" if days else "no days"
    checked = f"{len(receipts)} receipts ({span}): hashes, signatures and chain hold" + (
        ", and the facts match" if export else ""
    )
    return problems, checked


if __name__ == "__main__":
    sys.exit(main())
