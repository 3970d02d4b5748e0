"""`python -m bench run --db sqlite --db postgresql`: the benchmark of issue 5 (docs/benchmark.md).

Exit status: 0 when every run counted exactly and the driver stayed under half the machine;
1 when the counts differ from what was played (always so with `--drop-one`), a webhook
failed, or the driver took too much of the machine for the figures to count.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from config import DEFAULT_LINE_CONFIG, PROJECT_DIR

from . import bulk, inprocess, load, public, report, sidebyside, summary, writer
from .driver import LineFacts
from .servers import DEFAULT_PG, drop_database, fresh_database
from .summary import RESULTS


def code_version() -> str:
    """The commit the code under test is at, `-modified` when the checkout has changes; empty
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("-modified" if changed else "")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="load (ours vs the ceiling), a million calls, memory")
    run.add_argument(
        "--db", action="append", choices=["sqlite", "postgresql"], help="database(s) to run on (repeat; default both)"
    )
    run.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG),
        help="PostgreSQL database the benchmark may drop and create (default %(default)s)",
    )
    run.add_argument("--calls", type=int, default=2000, help="whole calls per round (default %(default)s)")
    run.add_argument("--first", type=int, default=6000, help="first webhooks per round (default %(default)s)")
    run.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="rounds of ours and the ceiling, who goes first swapping (default %(default)s)",
    )
    run.add_argument("--in-flight", type=int, default=64, help="calls in flight (default %(default)s)")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--workers", type=int, default=os.cpu_count(), help="WEB_WORKERS (default: cores)")
    run.add_argument("--threads", type=int, default=4, help="WEB_THREADS (default %(default)s)")
    run.add_argument("--bulk-calls", type=int, default=1_000_000, help="calls in the big database (0: skip)")
    run.add_argument("--memory-calls", type=int, default=100_000, help="calls for the memory run (0: skip)")
    run.add_argument("--no-load", action="store_true", help="skip the load part (ours vs the ceiling)")
    run.add_argument(
        "--drop-one",
        action="store_true",
        help="self-test: leave one comment out of the driver's expectations; the check must fail",
    )
    run.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    run.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where the JSON and markdown go (default bench/results)",
    )
    one = sub.add_parser("inprocess", help="one server's cost per webhook, in this process (bench/inprocess.py)")
    one.add_argument("--server", choices=["ours", "ceiling"], default="ours")
    one.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite", help="ours' database")
    one.add_argument("--calls", type=int, default=1000, help="whole calls measured, after a warm-up")
    one.add_argument(
        "--instructions", action="store_true", help="count instructions per webhook under valgrind (repeatable)"
    )
    one.add_argument("--prepared", type=int, default=0, help=argparse.SUPPRESS)
    one.add_argument("--no-collector", dest="collector", action="store_false", help=argparse.SUPPRESS)
    views = sub.add_parser("public", help="a public tally view's cost beside a webhook's (bench/public.py)")
    views.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    views.add_argument("--calls", type=int, default=200, help="whole calls played first (default %(default)s)")
    views.add_argument("--views", type=int, default=2000, help="cached views timed per page (default %(default)s)")
    views.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG),
        help="PostgreSQL database it may drop and create (default %(default)s)",
    )
    batches = sub.add_parser("writer", help="the writer's cost per webhook by batch size (bench/writer.py)")
    batches.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    batches.add_argument("--calls", type=int, default=1000, help="whole calls played (default %(default)s)")
    batches.add_argument(
        "--batch", type=int, action="append", help="webhooks per batch (repeat; default 100, 250, 500, 1000)"
    )
    batches.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG),
        help="PostgreSQL database it may drop and create, with a suffix (default %(default)s)",
    )
    batches.add_argument(
        "--pages", action="store_true", help="SQLite: count the pages each batch changes, by table, instead"
    )
    paired = sub.add_parser(
        "side-by-side", help="ours and the ceiling served at once: CPU a webhook by thread (bench/sidebyside.py)"
    )
    paired.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    paired.add_argument("--calls", type=int, default=1000, help="whole calls each a round (default %(default)s)")
    paired.add_argument("--rounds", type=int, default=4, help="rounds (default %(default)s)")
    paired.add_argument("--in-flight", type=int, default=64, help="calls in flight, the two together (default 64)")
    paired.add_argument("--workers", type=int, default=os.cpu_count(), help="WEB_WORKERS each (default: cores)")
    paired.add_argument("--threads", type=int, default=4, help="WEB_THREADS (default %(default)s)")
    paired.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG),
        help="PostgreSQL database it may drop and create (default %(default)s)",
    )
    pooled = sub.add_parser(
        "summary", help="ours / the ceiling over many runs, with a 95 %% interval (bench/summary.py)"
    )
    pooled.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="result JSON files of `bench run` (a folder: its bench-*.json) or CSV files of recorded runs "
        "(default: bench/results)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "inprocess":
        return inprocess.main(args.server, args.calls, args.db, args.instructions, args.prepared, args.collector)
    if args.command == "public":
        return public.main(args.db, args.calls, args.views, args.pg_url)
    if args.command == "side-by-side":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop both servers on a TERM
        return sidebyside.main(
            args.db, args.calls, args.rounds, args.in_flight, args.workers, args.threads, args.pg_url
        )
    if args.command == "summary":
        return summary.main(args.files)
    if args.command == "writer":
        return writer.main(args.db, args.calls, args.batch or [100, 250, 500, 1000], args.pg_url, args.pages)
    # A TERM (e.g. from a CI timeout) unwinds normally, so every gunicorn started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    databases = args.db or ["sqlite", "postgresql"]
    line = LineFacts.from_file(os.environ.get("LINE_CONFIG") or DEFAULT_LINE_CONFIG)
    workdir = Path(tempfile.mkdtemp(prefix="commentline-bench-"))
    results = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "code": code_version(),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.platform()}",
        "workers": args.workers,
        "threads": args.threads,
        "in_flight": args.in_flight,
        "calls": args.calls,
        "first_calls": args.first,
        "rounds": args.rounds,
        "databases": {},
        "warnings": [],
    }
    failed = []
    print(f"Working in {workdir}; gunicorn logs there.")
    for kind in databases:
        out = results["databases"].setdefault(kind, {})
        if not args.no_load:
            print(f"{kind}: ours and the ceiling, {args.rounds} rounds, who goes first swapping each round")
            db = fresh_database(kind, workdir, args.pg_url)
            result = load.run_load(
                db,
                workdir,
                line,
                calls=args.calls,
                first_calls=args.first,
                rounds=args.rounds,
                in_flight=args.in_flight,
                seed=args.seed,
                workers=args.workers,
                threads=args.threads,
                drop_one=args.drop_one,
            )
            out["load"] = {
                "compare": load.compare(result),
                "rounds": [m.summary() for m in result.measures],
                "counts_problems": result.counts_problems,
                "errors": result.errors[:50],
                "calls_checked": result.calls_checked,
            }
            for problem in result.counts_problems:
                print(f"  COUNTS DIFFER ({kind}): {problem}")
            if result.counts_problems:
                failed.append(f"{kind}: the counts differ from what was played")
            if result.errors:
                failed.append(f"{kind}: {len(result.errors)} call(s) went wrong, e.g. {result.errors[0]}")
            for m in result.measures:
                if m.driver_share > 0.5:
                    warning = (
                        f"{kind} {m.server} {m.mode} round {m.round}: the driver took "
                        f"{100 * m.driver_share:.0f}% of the machine; this run does not count"
                    )
                    results["warnings"].append(warning)
                    failed.append(warning)
            if not args.keep:
                drop_database(db)
        if args.bulk_calls:
            print(f"{kind}: {args.bulk_calls:,} calls in bulk, then the counts and the inbox timed")
            db = fresh_database(kind, workdir, args.pg_url, "_bulk")
            out["bulk"] = bulk.run_bulk(
                db, workdir, line, n_calls=args.bulk_calls, workers=args.workers, threads=args.threads
            )
            if not args.keep:
                drop_database(db)
        if args.memory_calls:
            print(f"{kind}: one web worker, {args.memory_calls:,} whole calls")
            db = fresh_database(kind, workdir, args.pg_url, "_memory")
            out["memory"] = bulk.run_memory(
                db, workdir, line, n_calls=args.memory_calls, in_flight=args.in_flight, seed=args.seed
            )
            if out["memory"]["counts_problems"] or out["memory"]["errors"]:
                failed.append(f"{kind}: the memory run did not count exactly")
            if not args.keep:
                drop_database(db)
    json_path, md_path = report.write(results, args.results)
    print()
    print(report.markdown(results))
    print(f"Written to {json_path} and {md_path}")
    if args.drop_one:
        print(
            "--drop-one: the driver left one comment out of its expectations; the check "
            + ("caught it, as it must." if any("counts differ" in f for f in failed) else "DID NOT catch it.")
        )
    for f in failed:
        print(f"FAILED: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
