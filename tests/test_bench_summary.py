"""`python -m bench summary`: the load's ratio over many runs, with the interval that says how
well the runs know it; and the per-round line each run's report gives."""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.summary import T_975, main, spread, t_975
from config import PROJECT_DIR

RATIOS = st.lists(st.floats(min_value=0.3, max_value=1.5, allow_nan=False), min_size=2, max_size=40)


def test_the_interval_of_three_runs_is_students():
    s = spread([0.8, 0.9, 1.0])
    assert s.mean == pytest.approx(0.9) and s.sd == pytest.approx(0.1)
    # 4.303 (t, two degrees of freedom) × 0.1 / √3
    assert (s.low, s.high) == (pytest.approx(0.9 - 0.24844, abs=1e-5), pytest.approx(0.9 + 0.24844, abs=1e-5))
    assert s.verdict(0.85) == "at the target"
    assert spread([0.9, 0.91, 0.92, 0.9]).verdict(0.85) == "met"
    assert spread([0.7, 0.71, 0.72]).verdict(0.85) == "missed"


def test_one_run_says_nothing_of_its_spread():
    s = spread([0.9])
    assert s.mean == 0.9 and s.low == -math.inf and s.high == math.inf
    assert s.verdict(0.85) == "at the target"


def test_students_t_narrows_with_more_runs_and_errs_wide_between_rows():
    table = [T_975[d] for d in sorted(T_975)]
    assert table == sorted(table, reverse=True) and table[-1] > 1.96
    assert t_975(35) == T_975[30] and t_975(500) == 1.960
    with pytest.raises(ValueError):
        t_975(0)


@given(RATIOS, st.floats(min_value=0.5, max_value=1.2))
def test_the_verdict_is_where_the_interval_lies(values, target):
    s = spread(values)
    assert s.low <= s.mean <= s.high
    assert s.mean == pytest.approx(statistics.fmean(values))
    if s.low >= target:
        assert s.verdict(target) == "met"
    elif s.high < target:
        assert s.verdict(target) == "missed"
    else:
        assert s.verdict(target) == "at the target"


@given(RATIOS)
def test_more_of_the_same_runs_narrow_the_interval(values):
    once, twice = spread(values), spread(values * 2)
    assert twice.mean == pytest.approx(once.mean)
    assert twice.high - twice.low <= once.high - once.low + 1e-12


def test_the_recorded_runs_are_summarized(capsys):
    """The runs the project recorded by hand (`bench/recorded-runs.csv`) read as the docs say."""
    assert main([str(PROJECT_DIR / "bench" / "recorded-runs.csv")]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^\| SQLite \| whole calls \| (\d+) \| ([\d.]+) \| ([\d.]+)-([\d.]+) \|", out, re.MULTILINE)
    assert row and int(row[1]) >= 20
    assert float(row[3]) < float(row[2]) < float(row[4])
    assert re.search(r"^\| PostgreSQL \| first webhooks \| \d+ \|", out, re.MULTILINE)


def test_a_malformed_record_is_named_by_its_line(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text(
        "started,code,database,rounds,whole_calls,first_webhooks,where\n2026-12-01,abc,sqlite,4,0.9x,,here\n"
    )
    with pytest.raises(SystemExit, match=r"runs.csv, line 2: could not convert string to float"):
        main([str(bad)])
    bad.write_text("started,database,ratio\n")
    with pytest.raises(SystemExit, match="lacks code, first_webhooks, rounds, where, whole_calls"):
        main([str(bad)])
    with pytest.raises(SystemExit, match="no such file"):
        main([str(tmp_path / "absent.json")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=f"no results in {empty}"):
        main([str(empty)])


def test_a_run_reports_its_rounds_and_is_summarized_from_its_file(tmp_path):
    """A short `bench run` as a user types it, into a folder of its own: its report gives each
    round's ratio and the code it ran; `bench summary` reads the file it wrote."""
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--db", "sqlite", "--calls", "20", "--first", "30", "--rounds", "2"]
        + ["--in-flight", "8", "--bulk-calls", "0", "--memory-calls", "0", "--results", str(results)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    failures = re.findall(r"^FAILED: (.*)$", run.stdout, re.MULTILINE)
    # A busy machine may let the driver take over half of it in a round this short: that
    # run does not count (exit 1), but it must not be for anything else.
    assert run.returncode == 0 or all("of the machine" in f for f in failures), run.stdout[-3000:] + run.stderr[-3000:]
    written = sorted(results.glob("bench-*.json"))
    assert len(written) == 1
    report = (results / "latest.md").read_text()
    rounds = re.search(r"SQLite, whole calls, ours / the ceiling by round: ([\d.]+), ([\d.]+) \(mean ([\d.]+)", report)
    assert rounds, report
    assert float(rounds[3]) == pytest.approx((float(rounds[1]) + float(rounds[2])) / 2, abs=0.006)
    if (PROJECT_DIR / ".git").exists():  # a checkout: the run names its commit
        assert re.search(r"code at [0-9a-f]{7,}", report)
        assert json.loads(written[0].read_text())["code"]

    summary = subprocess.run(
        [sys.executable, "-m", "bench", "summary", str(results)], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert summary.returncode == 0, summary.stderr
    assert re.search(r"^\| SQLite \| whole calls \| 1 \| [\d.]+ \| – \|", summary.stdout, re.MULTILINE)
