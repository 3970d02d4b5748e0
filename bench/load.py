"""Part 1: whole calls and first webhooks, ours alternated with the ceiling, counts checked."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .driver import KINDS, Driver, LineFacts, Record, RoundStats, compare_counts, expected_counts, settled_counts
from .driver import percentile as pct
from .servers import (
    CEILING,
    OURS,
    TOKEN,
    Database,
    Server,
    api_token,
    machine_cpu_seconds,
    ms_per_webhook_by_thread,
)

CORES = os.cpu_count() or 1
WARMUP_CALLS = 40


@dataclass
class Measure:
    """One round of one mode against one server, with who used the CPU meanwhile."""

    server: str  # ours | ceiling
    mode: str  # whole | first
    round: int
    stats: RoundStats
    driver_cpu: float
    server_cpu: float
    machine_busy: float
    wall: float
    server_threads: dict[str, float] = field(default_factory=dict)  # server_cpu by THREAD_KINDS

    @property
    def driver_share(self) -> float:
        """The driver's CPU as a share of the whole machine (all cores) over the round."""
        return self.driver_cpu / (self.wall * CORES)

    def summary(self) -> dict:
        s = self.stats
        return {
            "server": self.server,
            "mode": self.mode,
            "round": self.round,
            "calls": s.calls,
            "webhooks": s.webhooks,
            "seconds": round(s.seconds, 3),
            "errors": s.errors,
            "calls_per_s": s.calls / s.seconds,
            "webhooks_per_s": s.webhooks / s.seconds,
            "driver_cpu_share": self.driver_share,
            "server_cpu_ms_per_webhook": 1000 * self.server_cpu / s.webhooks,
            "server_cpu_ms_per_webhook_by_thread": ms_per_webhook_by_thread(self.server_threads, s.webhooks),
            "machine_busy_share": self.machine_busy / (self.wall * CORES),
            "other_cpu_share": max(0.0, self.machine_busy - self.driver_cpu - self.server_cpu) / (self.wall * CORES),
        }


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(server: Server, name: str, driver: Driver, mode: str, round_no: int, calls: int, record: Record) -> Measure:
    driver_before, server_before, (busy_before, _) = cpu_now(), server.cpu_seconds_by_thread(), machine_cpu_seconds()
    started = time.perf_counter()
    stats = asyncio.run(driver.run(calls, round_no, record, first_only=(mode == "first")))
    wall = time.perf_counter() - started
    threads = server.cpu_seconds_by_thread()
    threads.subtract(server_before)
    return Measure(
        name,
        mode,
        round_no,
        stats,
        cpu_now() - driver_before,
        sum(threads.values()),
        machine_cpu_seconds()[0] - busy_before,
        wall,
        dict(threads),
    )


@dataclass
class LoadResult:
    database: str
    measures: list[Measure] = field(default_factory=list)
    counts_problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls_checked: int = 0


def run_load(
    db: Database,
    workdir: Path,
    line: LineFacts,
    *,
    calls: int,
    first_calls: int,
    rounds: int,
    in_flight: int,
    seed: int,
    workers: int,
    threads: int,
    drop_one: bool,
    say=print,
) -> LoadResult:
    """Alternate ours and the ceiling `rounds` times, each playing `calls` whole calls and
    then `first_calls` first webhooks; then check the counts against what ours was played.

    The order swaps every round (ours first, then the ceiling first, ...): the machine's speed
    drifts over minutes, and a fixed order would hand whichever runs second the drift of every
    round; swapped, a steady drift cancels over each pair of rounds."""
    result = LoadResult(db.kind)
    ours_record = Record()
    token = api_token(db, "bench-load")
    log = workdir / f"gunicorn-{db.kind}.log"
    round_base = 0
    for r in range(rounds):
        for name, spec in serving_order(r):
            record = ours_record if name == "ours" else Record()
            server = Server(spec, db, log, workers=workers, threads=threads)
            try:
                driver = Driver(server.base, TOKEN, line, in_flight=in_flight, seed=seed, run_id=f"{seed}-{name}")
                asyncio.run(driver.run(WARMUP_CALLS, 900 + round_base + r, record))
                for mode, n in (("whole", calls), ("first", first_calls)):
                    if n <= 0:
                        continue
                    # ours and the ceiling play the same calls (the same seeds) in round r
                    m = measure(server, name, driver, mode, (100 if mode == "first" else 0) + r, n, record)
                    result.measures.append(m)
                    s = m.summary()
                    say(
                        f"  {db.kind:10} {name:7} {mode:5} round {r + 1}: {s['calls_per_s']:7.1f} calls/s "
                        f"{s['webhooks_per_s']:7.1f} webhooks/s  p99 {1000 * all_p(m.stats, 0.99):6.1f} ms  "
                        f"driver {100 * s['driver_cpu_share']:4.1f}% of the machine  server "
                        f"{s['server_cpu_ms_per_webhook']:.2f} ms CPU/webhook ({threads_line(s)})  errors {s['errors']}"
                    )
                if name == "ours":
                    expected = expected_counts(ours_record.calls, line.slugs, drop_one)
                    shown = asyncio.run(settled_counts(server.base, token, expected))
                    problems = compare_counts(expected, shown)
                    result.counts_problems = problems
            finally:
                server.stop()
            result.errors += record.errors
    result.calls_checked = len(ours_record.calls)
    return result


def threads_line(summary: dict) -> str:
    """The server's CPU a webhook by kind of thread, the kinds that used any."""
    by = summary["server_cpu_ms_per_webhook_by_thread"]
    return ", ".join(f"{kind} {ms:.2f}" for kind, ms in by.items() if ms >= 0.005)


def serving_order(round_no: int) -> tuple[tuple[str, object], ...]:
    """Who serves first in round `round_no` (from 0): ours in even rounds, the ceiling in odd."""
    pair = (("ours", OURS), ("ceiling", CEILING))
    return pair if round_no % 2 == 0 else pair[::-1]


def all_p(stats: RoundStats, q: float) -> float:
    values = [v for kind in KINDS for v in stats.latencies[kind]]
    return pct(values, q) or 0.0


def pooled(measures: list[Measure]) -> dict:
    """Figures over several rounds: rates from the summed counts and times, latency
    percentiles over every request of every round."""
    if not measures:
        return {}
    seconds = sum(m.stats.seconds for m in measures)
    calls = sum(m.stats.calls for m in measures)
    webhooks = sum(m.stats.webhooks for m in measures)
    latency = {}
    every = []
    for kind in KINDS:
        values = [v for m in measures for v in m.stats.latencies[kind]]
        every += values
        if values:
            latency[kind] = {
                "n": len(values),
                "p50": pct(values, 0.5) * 1000,
                "p95": pct(values, 0.95) * 1000,
                "p99": pct(values, 0.99) * 1000,
            }
    latency["all"] = {
        "n": len(every),
        "p50": pct(every, 0.5) * 1000,
        "p95": pct(every, 0.95) * 1000,
        "p99": pct(every, 0.99) * 1000,
    }
    wall = sum(m.wall for m in measures)
    return {
        "rounds": len(measures),
        "calls": calls,
        "webhooks": webhooks,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "webhooks_per_s": webhooks / seconds,
        "latency_ms": latency,
        "errors": sum(m.stats.errors for m in measures),
        "driver_cpu_share": sum(m.driver_cpu for m in measures) / (wall * CORES),
        "driver_cpu_share_max": max(m.driver_share for m in measures),
        "server_cpu_ms_per_webhook": 1000 * sum(m.server_cpu for m in measures) / webhooks,
        "server_cpu_ms_per_webhook_by_thread": ms_per_webhook_by_thread(
            sum((Counter(m.server_threads) for m in measures), Counter()), webhooks
        ),
        "other_cpu_share": sum(m.summary()["other_cpu_share"] * m.wall for m in measures) / wall,
        "per_round_calls_per_s": [m.stats.calls / m.stats.seconds for m in measures],
    }


def compare(result: LoadResult) -> dict:
    """Ours and the ceiling per mode, and ours as a ratio of the ceiling."""
    out = {}
    for mode in ("whole", "first"):
        ours = pooled([m for m in result.measures if m.server == "ours" and m.mode == mode])
        ceiling = pooled([m for m in result.measures if m.server == "ceiling" and m.mode == mode])
        if not ours or not ceiling:
            continue
        ratios = {
            "calls_per_s": ours["calls_per_s"] / ceiling["calls_per_s"],
            "webhooks_per_s": ours["webhooks_per_s"] / ceiling["webhooks_per_s"],
            "per_round": [
                o / c for o, c in zip(ours["per_round_calls_per_s"], ceiling["per_round_calls_per_s"], strict=False)
            ],
            "latency": {
                kind: {q: ours["latency_ms"][kind][q] / ceiling["latency_ms"][kind][q] for q in ("p50", "p95", "p99")}
                for kind in ours["latency_ms"]
                if kind in ceiling["latency_ms"]
            },
        }
        out[mode] = {"ours": ours, "ceiling": ceiling, "ratio": ratios}
    return out
