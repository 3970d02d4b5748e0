#!/usr/bin/env python3
"""Check a comment line's published receipts without the line's code: Python's standard
library and the `cryptography` package only (`pip install cryptography`).

    python verify_receipts.py --base https://line.example.org/public [--day 2026-11-30]
    python verify_receipts.py --key tally-key.json --receipts receipts.json [--facts 2026-11-30.facts.json]

With `--base` it downloads `tally-key`, `receipts` and, for `--day`, that day's
`receipts/DAY.facts.json`; with files, it reads what you downloaded. It checks that each
receipt's hash is the SHA-256 of its body's canonical form, that its Ed25519 signature holds
for the key, and that each names the one before it; with a day's facts, it recomputes the
digest (a Merkle tree per topic and kind of fact) and compares it with the receipt the export
names. Exit 0 when everything holds, 1 naming the first thing that does not.

The canonical form and the digest are stated in the line's receipts/digest.py; this file says
them again on purpose, so that checking needs nothing of the line's.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.request

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


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


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


def check_facts(receipts: list[dict], export: dict) -> list[str]:
    """Whether the export's facts give the digest of the receipt it names."""
    named = next((r for r in receipts if r["hash"] == export["receipt"]), None)
    if named is None:
        return [f"{export['day']}: the facts name receipt {export['receipt'][:12]}, which is not in the chain"]
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
    if args.base:
        base = args.base.rstrip("/")
        key, receipts = fetch(f"{base}/tally-key"), fetch(f"{base}/receipts")["receipts"]
        export = fetch(f"{base}/receipts/{args.day}.facts.json") if args.day else None
    elif args.key and args.receipts:
        with open(args.key, encoding="utf-8") as f:
            key = json.load(f)
        with open(args.receipts, encoding="utf-8") as f:
            receipts = json.load(f)["receipts"]
        export = None
        if args.facts:
            with open(args.facts, encoding="utf-8") as f:
                export = json.load(f)
    else:
        parser.error("give --base, or --key and --receipts")
    problems = check_chain(key, receipts)
    if export is not None:
        problems += check_facts(receipts, export)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    days = sorted({r["body"]["day"] for r in receipts})
    span = f"{days[0]} to {days[-1]}" if days else "no days"
    print(
        f"{len(receipts)} receipts ({span}): hashes, signatures and chain hold"
        + (", and the facts match" if export else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
