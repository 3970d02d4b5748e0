"""`python -m bench side-by-side`: ours and the ceiling under the same load at the same time.

The load part (bench/load.py) serves one at a time and compares their rates; on a machine whose
speed drifts by ±10 % from one half-minute to the next, one run's ratio moves by as much. Here
both are served at once, each by gunicorn as the Procfile runs it, and two drivers play the same
calls to both, half the calls in flight each: whatever the machine does meanwhile, it does to
both. What it compares is the CPU each server spends a webhook (in all, and by kind of thread:
bench/servers.py `THREAD_KINDS`), not their rates (they share the machine; each is as fast as
the other lets it be). Then the counts ours' API gives are checked against what was played.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from pathlib import Path

from config import DEFAULT_LINE_CONFIG

from .driver import Driver, LineFacts, Record, compare_counts, expected_counts, settled_counts
from .servers import (
    CEILING,
    OURS,
    THREAD_KINDS,
    TOKEN,
    Server,
    api_token,
    drop_database,
    fresh_database,
    ms_per_webhook_by_thread,
)

WARMUP_CALLS = 40
SERVERS = (("ours", OURS), ("ceiling", CEILING))


def ms_per_webhook(used: Counter, webhooks: int) -> dict[str, float]:
    """`ms_per_webhook_by_thread`, and "all": every thread's together."""
    return {**ms_per_webhook_by_thread(used, webhooks), "all": 1000 * sum(used.values()) / webhooks}


def main(kind: str, calls: int, rounds: int, in_flight: int, workers: int, threads: int, pg_url: str) -> int:
    line = LineFacts.from_file(os.environ.get("LINE_CONFIG") or DEFAULT_LINE_CONFIG)
    workdir = Path(tempfile.mkdtemp(prefix="commentline-sidebyside-"))
    db = fresh_database(kind, workdir, pg_url)
    servers: dict[str, Server] = {}
    played = Record()
    totals = {name: Counter() for name, _ in SERVERS}
    webhooks = Counter()
    try:
        for name, spec in SERVERS:
            servers[name] = Server(spec, db, workdir / f"gunicorn-{name}.log", workers=workers, threads=threads)
        drivers = {
            name: Driver(s.base, TOKEN, line, in_flight=max(1, in_flight // 2), seed=1, run_id=f"1-{name}")
            for name, s in servers.items()
        }
        records = {"ours": played, "ceiling": Record()}

        async def both(n: int, round_no: int):
            runs = (drivers[name].run(n, round_no, records[name]) for name in drivers)
            return dict(zip(drivers, await asyncio.gather(*runs), strict=True))

        asyncio.run(both(WARMUP_CALLS, 900))
        print(f"{kind}: ours and the ceiling at once, {calls} whole calls each a round, {rounds} rounds")
        for r in range(rounds):
            before = {name: s.cpu_seconds_by_thread() for name, s in servers.items()}
            stats = asyncio.run(both(calls, r))
            figures = {}
            for name, s in servers.items():
                used = s.cpu_seconds_by_thread()
                used.subtract(before[name])
                totals[name].update(used)
                webhooks[name] += stats[name].webhooks
                figures[name] = ms_per_webhook(used, stats[name].webhooks)
            print(
                f"  round {r + 1}: "
                + "  ".join(
                    f"{name} {stats[name].calls / stats[name].seconds:6.1f} calls/s, "
                    f"{figures[name]['all']:.2f} ms a webhook (requests {figures[name]['requests']:.2f}, "
                    f"writer {figures[name]['writer']:.2f})"
                    for name in servers
                )
                + f"  ratio {figures['ours']['all'] / figures['ceiling']['all']:.2f}"
            )
        ours, ceiling = (ms_per_webhook(totals[n], webhooks[n]) for n in ("ours", "ceiling"))
        print(f"{kind}, all rounds: server CPU a webhook, ours / the ceiling, ms")
        for what in ("all", *THREAD_KINDS):
            if ours[what] or ceiling[what]:
                ratio = f"{ours[what] / ceiling[what]:.2f}" if ceiling[what] else "–"
                print(f"  {what:9} {ours[what]:6.3f} / {ceiling[what]:6.3f}  {ratio}")
        expected = expected_counts(played.calls, line.slugs, False)
        shown = asyncio.run(settled_counts(servers["ours"].base, api_token(db, "side-by-side"), expected))
        problems = compare_counts(expected, shown)
        for problem in problems:
            print(f"  COUNTS DIFFER ({kind}): {problem}")
        print(f"  counts after {len(played.calls):,} calls: {'exact' if not problems else 'DIFFERENT'}")
        return 1 if problems or played.errors else 0
    finally:
        for s in servers.values():
            s.stop()
        drop_database(db)
