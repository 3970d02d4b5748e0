"""`python -m bench summary [FILE ...]`: ours / the ceiling over many runs of the load.

One run's ratio carries the machine's drift between ours' rounds and the ceiling's
(docs/benchmark.md, "One run and many"). What the code costs is the mean over runs, known to
within its 95 % confidence interval (Student's t over the runs' ratios). The verdict against
a target says which side of it the interval lies on: `met` when all of it is at or above the
target, `missed` when all of it is below, `at the target` when it holds the target, so that
more runs are needed to tell.

It reads the JSON files `python -m bench run` writes (`bench/results/bench-*.json`, the
default; a folder named stands for its `bench-*.json`) and CSV files of ratios recorded by
hand (`bench/recorded-runs.csv`: runs whose JSON was not kept), with the columns
`started,code,database,rounds,whole_calls,first_webhooks,where`.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from config import PROJECT_DIR

RESULTS = PROJECT_DIR / "bench" / "results"
TARGETS = {"whole_calls": 0.85, "first_webhooks": 0.8}  # ours / the ceiling, as issue 5 set them
MODES = {"whole_calls": "whole", "first_webhooks": "first"}  # the JSON's name of each
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}  # as the reports name the databases
CSV_COLUMNS = ("started", "code", "database", "rounds", "whole_calls", "first_webhooks", "where")

# Student's t, two-sided 95 % (the 0.975 quantile), by degrees of freedom; the normal's
# 1.96 beyond the table. A table of constants rather than SciPy, a large dependency for one
# function.
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
    26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip


def t_975(degrees: int) -> float:
    """The 0.975 quantile of Student's t; for degrees between the table's rows, the next
    smaller row's (a little wider: the interval errs on the side of saying less)."""
    if degrees < 1:
        raise ValueError("an interval needs two values or more")
    return T_975[max(d for d in T_975 if d <= degrees)] if degrees <= 120 else 1.960


@dataclass(frozen=True)
class Spread:
    """The mean of some ratios and its 95 % confidence interval."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    def verdict(self, target: float) -> str:
        if self.low >= target:
            return "met"
        if self.high < target:
            return "missed"
        return "at the target"


def spread(values: list[float]) -> Spread:
    """Mean, standard deviation and the mean's 95 % interval (Student's t) of two or more
    values; with one, an interval as wide as nothing can tell (−∞, ∞)."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Spread(1, mean, math.nan, -math.inf, math.inf)
    sd = statistics.stdev(values)
    half = t_975(len(values) - 1) * sd / math.sqrt(len(values))
    return Spread(len(values), mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Run:
    """One database's load in one run: its ratios (None where not recorded)."""

    started: str
    code: str
    database: str
    rounds: int
    whole_calls: float | None
    first_webhooks: float | None
    where: str


def runs_of_json(path: Path) -> list[Run]:
    """The load of each database in a `bench run` result file (none when it ran no load)."""
    results = json.loads(path.read_text())
    found = []
    for database, parts in results.get("databases", {}).items():
        compare = parts.get("load", {}).get("compare")
        if not compare:
            continue
        ratios = {
            name: compare[mode]["ratio"]["calls_per_s"] if mode in compare else None for name, mode in MODES.items()
        }
        found.append(
            Run(results["started"], results.get("code", ""), database, results["rounds"], where=path.name, **ratios)
        )
    return found


def runs_of_csv(path: Path) -> list[Run]:
    """Runs recorded by hand, a row each (`CSV_COLUMNS`; a ratio left empty was not recorded)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: lacks {', '.join(sorted(missing))} (the columns: {','.join(CSV_COLUMNS)})")
        found = []
        for line, row in enumerate(reader, start=2):
            try:
                found.append(
                    Run(
                        row["started"],
                        row["code"],
                        row["database"],
                        int(row["rounds"]),
                        float(row["whole_calls"]) if row["whole_calls"] else None,
                        float(row["first_webhooks"]) if row["first_webhooks"] else None,
                        row["where"],
                    )
                )
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from None
        return found


def read_runs(paths: list[Path]) -> list[Run]:
    runs = []
    for path in paths:
        runs += runs_of_csv(path) if path.suffix == ".csv" else runs_of_json(path)
    return runs


def summary_lines(runs: list[Run]) -> list[str]:
    """A markdown table: per database and figure, how many runs, their mean, its 95 % interval,
    a run's standard deviation, how many fell short, and the verdict against the target."""
    lines = [
        "| database | figure | runs | mean | 95 % interval of the mean | SD of a run | runs short | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(NAMES)
    for database in sorted({r.database for r in runs}, key=lambda d: (order.index(d) if d in order else len(order), d)):
        for figure, target in TARGETS.items():
            values = [getattr(r, figure) for r in runs if r.database == database and getattr(r, figure) is not None]
            if not values:
                continue
            s = spread(values)
            short = sum(v < target for v in values)
            interval = "–" if s.n == 1 else f"{s.low:.3f}-{s.high:.3f}"
            sd = "–" if s.n == 1 else f"{s.sd:.3f}"
            lines.append(
                f"| {NAMES.get(database, database)} | {figure.replace('_', ' ')} | {s.n} | {s.mean:.3f} | {interval} "
                f"| {sd} | {short} | ≥ {target} | {s.verdict(target)} |"
            )
    return lines


def result_files(path: Path) -> list[Path]:
    """The files a named path stands for: a folder, its `bench-*.json`; a file, itself."""
    return sorted(path.glob("bench-*.json")) if path.is_dir() else [path]


def main(paths: list[str]) -> int:
    named = [Path(p) for p in paths] or [RESULTS]
    absent = [str(p) for p in named if not p.exists()]
    if absent and paths:
        raise SystemExit(f"no such file: {', '.join(absent)}")
    files = [f for p in named if p.exists() for f in result_files(p)]
    if not files:
        where = ", ".join(map(str, named))
        raise SystemExit(f"no results in {where}: run `python -m bench run` first, or name files")
    try:
        runs = read_runs(files)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise SystemExit(f"cannot read the runs: {exc}") from None
    if not runs:
        raise SystemExit("none of these files holds a load run (ours against the ceiling)")
    print(f"{len(runs)} load(s) of ours against the ceiling, from {len(files)} file(s):")
    print()
    print("\n".join(summary_lines(runs)))
    return 0
