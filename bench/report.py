"""The benchmark's report: a JSON file and a markdown table in bench/results/."""

from __future__ import annotations

import json
from pathlib import Path

from .bulk import CALENDAR_WINDOWS
from .driver import KINDS
from .summary import NAMES, TARGETS, spread

DURABILITY = (
    "SQLite: WAL journal, synchronous=NORMAL (every commit survives a crash of the process; a power "
    "cut may lose the last transactions), busy_timeout 15 s. PostgreSQL 15: server defaults "
    "(fsync=on, synchronous_commit=on, full_page_writes=on)."
)


# The rows under "server CPU per webhook": bench/servers.py THREAD_KINDS, as the table says them.
THREAD_LABELS = {
    "requests": "in request threads",
    "loop": "in gunicorn's loop (each worker's first thread)",
    "writer": "in the write-behind writer",
    "replayer": "in the spool replayer",
    "meter": "in the webhook meter's publisher",
    "arbiter": "in gunicorn's master",
    "ended": "in threads that ended",
}


def _f(value, digits=1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def load_table(results: dict) -> list[str]:
    dbs = [d for d in results["databases"] if "load" in results["databases"][d]]
    if not dbs:
        return []
    head = "| figure | target | " + " | ".join(f"{NAMES[d]} ours | ceiling | ratio | met" for d in dbs) + " |"
    lines = [head, "|" + "---|" * (2 + 4 * len(dbs))]

    def row(label, target, getter, digits=1, check=None):
        cells, oks = [], []
        for d in dbs:
            cmp_ = results["databases"][d]["load"]["compare"]
            ours, ceiling, ratio = getter(cmp_)
            ok = check(ours, ratio) if check and ours is not None else None
            oks.append(ok)
            cells += [_f(ours, digits), _f(ceiling, digits), _f(ratio, 2), _met(ok)]
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")

    def rate(mode, key):
        def get(c):
            if mode not in c:
                return None, None, None
            return c[mode]["ours"][key], c[mode]["ceiling"][key], c[mode]["ratio"][key]

        return get

    def lat(mode, kind, q):
        def get(c):
            if mode not in c or kind not in c[mode]["ours"]["latency_ms"]:
                return None, None, None
            o, ce = c[mode]["ours"]["latency_ms"][kind][q], c[mode]["ceiling"]["latency_ms"].get(kind, {}).get(q)
            return o, ce, (o / ce if ce else None)

        return get

    whole, first = TARGETS["whole_calls"], TARGETS["first_webhooks"]
    row("whole calls / s", f"ratio ≥ {whole}", rate("whole", "calls_per_s"), check=lambda o, r: r >= whole)
    row("webhooks / s (whole calls)", "", rate("whole", "webhooks_per_s"))
    row("first webhooks / s", f"ratio ≥ {first}", rate("first", "calls_per_s"), check=lambda o, r: r >= first)
    row(
        "p99 latency, every webhook (whole calls), ms",
        "< 250 ms",
        lat("whole", "all", "p99"),
        check=lambda o, r: o < 250,
    )
    row("p99 latency, first webhook only, ms", "< 250 ms", lat("first", "voice", "p99"), check=lambda o, r: o < 250)
    for kind in KINDS:
        for q in ("p50", "p95", "p99"):
            row(f"{kind} {q}, ms", "", lat("whole", kind, q))
    row(
        "server CPU per webhook (whole calls), ms",
        "",
        lambda c: (
            (
                c["whole"]["ours"]["server_cpu_ms_per_webhook"],
                c["whole"]["ceiling"]["server_cpu_ms_per_webhook"],
                c["whole"]["ours"]["server_cpu_ms_per_webhook"] / c["whole"]["ceiling"]["server_cpu_ms_per_webhook"],
            )
            if "whole" in c
            else (None, None, None)
        ),
        digits=2,
    )

    def thread_cpu(kind):
        def get(c):
            if "whole" not in c or "server_cpu_ms_per_webhook_by_thread" not in c["whole"]["ours"]:
                return None, None, None
            o = c["whole"]["ours"]["server_cpu_ms_per_webhook_by_thread"].get(kind, 0.0)
            ce = c["whole"]["ceiling"]["server_cpu_ms_per_webhook_by_thread"].get(kind, 0.0)
            return o, ce, (o / ce if ce else None)

        return get

    for kind, label in THREAD_LABELS.items():
        row(f"… of it {label}, ms", "", thread_cpu(kind), digits=2)
    row(
        "driver's share of the machine's CPU, %",
        "≤ 50 %",
        lambda c: (
            (
                100 * c["whole"]["ours"]["driver_cpu_share_max"],
                100 * c["whole"]["ceiling"]["driver_cpu_share_max"],
                None,
            )
            if "whole" in c
            else (None, None, None)
        ),
        check=lambda o, r: o <= 50,
    )
    row(
        "other processes' share of the CPU, %",
        "(noise)",
        lambda c: (
            (100 * c["whole"]["ours"]["other_cpu_share"], 100 * c["whole"]["ceiling"]["other_cpu_share"], None)
            if "whole" in c
            else (None, None, None)
        ),
    )
    return lines


def rounds_lines(results: dict) -> list[str]:
    """Whole calls, ours / the ceiling in each round, and what the rounds say of the ratio: its
    mean and 95 % interval. One run's rounds move with the machine; `bench summary` pools runs."""
    lines = []
    for d, r in results["databases"].items():
        whole = r.get("load", {}).get("compare", {}).get("whole")
        if not whole or not whole["ratio"]["per_round"]:
            continue
        per_round = whole["ratio"]["per_round"]
        s = spread(per_round)
        said = f"mean {s.mean:.2f}" + ("" if s.n == 1 else f", 95 % interval {s.low:.2f}-{s.high:.2f}")
        each = ", ".join(f"{x:.2f}" for x in per_round)
        lines.append(f"- {NAMES[d]}, whole calls, ours / the ceiling by round: {each} ({said})")
    if lines:
        lines.append("- Many runs together: `python -m bench summary` (docs/benchmark.md).")
    return lines


def bulk_table(results: dict) -> list[str]:
    dbs = [d for d in results["databases"] if "bulk" in results["databases"][d]]
    if not dbs:
        return []
    lines = [
        "| p95 of 20 requests, each after a fresh webhook | target | "
        + " | ".join(f"{NAMES[d]} | met" for d in dbs)
        + " |",
        "|" + "---|" * (2 + 2 * len(dbs)),
    ]
    names = list(results["databases"][dbs[0]]["bulk"]["timings"])
    for name in names:
        # The issues' targets: counts for a calendar window (all time, a UTC day, a week from
        # Monday, a month; with or without a district), and the inbox's first page, under
        # 100 ms; other windows under 1 s (the JSON API's comments pages among them).
        calendar = name.startswith("counts, ") and name.split(", ")[1] in CALENDAR_WINDOWS
        target = 100 if calendar or name.startswith("inbox") else 1000
        cells = []
        for d in dbs:
            t = results["databases"][d]["bulk"]["timings"].get(name)
            note = "" if not t or t["n"] >= 20 else f" (n={t['n']}, each about {t['p50_ms'] / 1000:,.0f} s)"
            cells += [f"{t['p95_ms']:,.0f} ms{note}" if t else "–", _met(t["p95_ms"] < target) if t else "–"]
        lines.append(f"| {name} | < {target} ms | " + " | ".join(cells) + " |")
    for d in dbs:
        b = results["databases"][d]["bulk"]
        lines.append("")
        lines.append(
            f"{NAMES[d]}: {b['rows']['calls']:,} calls, {b['rows']['recordings']:,} recordings, "
            f"{b['rows']['choices']:,} choices filled in {b['fill_seconds']:.0f} s"
            + (
                f" (of which {b['kept_seconds']:.0f} s counting the past days' kept figures)."
                if b.get("kept_seconds") is not None
                else "."
            )
        )
    return lines


def memory_table(results: dict) -> list[str]:
    dbs = [d for d in results["databases"] if "memory" in results["databases"][d]]
    lines = []
    for d in dbs:
        m = results["databases"][d]["memory"]
        ok = m["final_mb"] < 150
        lines.append(
            f"- {NAMES[d]}: one web worker after {m['calls']:,} whole calls: {m['final_mb']:.1f} MB "
            f"resident (max {m['max_mb']:.1f} MB, start {m['rss_mb'][0][1]:.1f} MB): "
            f"target < 150 MB {_met(ok)}; counts {'exact' if not m['counts_problems'] else 'WRONG'}"
        )
    return lines


def markdown(results: dict) -> str:
    out = [
        f"# Benchmark, {results['started']}",
        "",
        f"Command: `{results['command']}`" + (f", code at {results['code']}" if results.get("code") else ""),
        "",
        f"Machine: {results['machine']}. {DURABILITY}",
        "",
        f"gunicorn as the Procfile runs it: {results['workers']} workers × {results['threads']} threads (gthread); "
        f"{results['in_flight']} calls in flight; {results['calls']} whole calls and {results['first_calls']} "
        f"first webhooks per round; {results['rounds']} rounds of ours and the ceiling, "
        "who goes first swapping each round.",
        "",
    ]
    for d, r in results["databases"].items():
        if "load" in r:
            load = r["load"]
            verdict = "exact" if not load["counts_problems"] else f"**{len(load['counts_problems'])} difference(s)**"
            out.append(
                f"- {NAMES[d]}: counts after {load['calls_checked']:,} calls played: {verdict}; "
                f"errors: {len(load['errors'])}"
            )
    out.append("")
    out += load_table(results)
    rounds = rounds_lines(results)
    if rounds:
        out += [""] + rounds
    bulk = bulk_table(results)
    if bulk:
        out += ["", "## At a million calls", ""] + bulk
    memory = memory_table(results)
    if memory:
        out += ["", "## Memory", ""] + memory
    if results.get("warnings"):
        out += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    return "\n".join(out) + "\n"


def write(results: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "")
    json_path, md_path = folder / f"bench-{stamp}.json", folder / f"bench-{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    md_path.write_text(markdown(results))
    (folder / "latest.md").write_text(markdown(results))
    return json_path, md_path
