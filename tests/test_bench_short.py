"""A short version of the benchmark's load (docs/benchmark.md): a few hundred whole calls
played by the benchmark's driver against the line under gunicorn, on SQLite and on
PostgreSQL; the counts must equal what the driver played. No timing is asserted."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

from bench.ceiling import create_app as create_ceiling
from bench.driver import Driver, LineFacts, Record, compare_counts, expected_counts, settled_counts
from config import PROJECT_DIR
from ivr.caller import CallPlayer, Phone, Response, Script, SimulatedCall, Take, TwilioAccount, play
from ivr.menu import NO_KEY
from tests.conftest import PG_URL


def test_short_load_counts_exactly(app, served_line, api_token):
    line = served_line(workers=2, threads=4)
    facts = LineFacts.from_file(app.config["LINE_CONFIG"])
    record = Record()
    driver = Driver(line.base, app.config["TWILIO_AUTH_TOKEN"], facts, in_flight=16, seed=5)
    whole = asyncio.run(driver.run(300, 0, record))
    first = asyncio.run(driver.run(60, 1, record, first_only=True))
    assert record.errors == []
    assert whole.calls == 300 and first.calls == 60 and whole.webhooks > 5 * 300

    shown = asyncio.run(settled_counts(line.base, api_token, expected_counts(record.calls, facts.slugs)))
    assert compare_counts(expected_counts(record.calls, facts.slugs), shown) == []
    # The self-test: with one comment left out of what the driver expects, the check fails.
    dropped = compare_counts(expected_counts(record.calls, facts.slugs, drop_one=True), shown)
    assert len(dropped) == 1 and "comments" in dropped[0]

    # The mix holds what the benchmark promises.
    played = record.calls[:300]
    numbers = [c.caller for c in played if c.caller]
    assert len(numbers) > len(set(numbers))  # some callers called twice
    assert any(c.caller is None for c in played)  # some withheld their number
    assert any(not c.topics for c in played)  # some hung up before choosing a topic
    assert any(len(c.topics) > 1 for c in played)  # some commented on another topic
    assert {"budget", "transit", "housing", "general"} <= {slug for c in played for slug in c.topics}
    assert {s for c in played for s in c.topics.values()} >= {"support", "oppose", "other"}


def test_ceiling_answers_what_the_line_answers(app, monkeypatch):
    """The ceiling serves the same TwiML for the same keys (bar the reference number)."""
    token = app.config["TWILIO_AUTH_TOKEN"]
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)
    ceiling = create_ceiling()

    def sender(client):
        def send(request):
            response = client.post(request.url, data=request.params, headers=request.headers())
            return Response(response.status_code, response.get_data(as_text=True))

        return send

    account = TwilioAccount(app.config["TWILIO_ACCOUNT_SID"], token)
    line = LineFacts.from_file(app.config["LINE_CONFIG"])
    for presses in (
        ["1", "1", "2", "2"],
        ["2", "3", "1", "9", "2"],
        ["7", NO_KEY, "*", "1", "5", "5", "5", "2"],
        ["1", "2", "8", NO_KEY, "8"],
    ):
        heard = []
        for target in (app, ceiling):
            call = SimulatedCall(account, "http://localhost", Phone("+15035550100"))
            mind = Script(presses, more_takes=Take(12, transcript="A comment."))
            played = play(CallPlayer(call, line, mind, keep_heard=True), sender(target.test_client()))
            heard.append([re.sub(r"\d(, \d)+", "N", said) for said in played.heard])
        assert heard[0] == heard[1]


def test_the_writer_bench_replays_every_webhook_of_the_calls_it_played(tmp_path, capsys):
    """`python -m bench writer`: the facts it times are those of every webhook played."""
    from bench import writer
    from bench.servers import DEFAULT_PG

    webhooks = writer.spooled_webhooks(5, "sqlite", DEFAULT_PG, tmp_path)
    assert len(webhooks) == 5 * 8
    assert sum(1 for facts in webhooks for fact in facts if fact.name == "recording_action") == 5
    assert writer.main("sqlite", 5, [10], DEFAULT_PG) == 0
    assert re.search(r"batches of +10: +[\d.]+ µs", capsys.readouterr().out)


def test_the_writer_bench_counts_the_pages_each_batch_changes(tmp_path, capsys):
    """`python -m bench writer --pages`: the pages a batch changes, by the table or index they
    belong to; every batch stores calls, so the calls table is among them."""
    from bench import writer
    from bench.servers import DEFAULT_PG

    webhooks = writer.spooled_webhooks(5, "sqlite", DEFAULT_PG, tmp_path)
    found = writer.pages_changed(webhooks, 8, tmp_path)
    assert found.pages > 0 and found.page_size == 4096
    assert sum(found.by_btree.values()) == pytest.approx(found.pages)
    assert found.by_btree.get("calls", 0) > 0 and found.by_btree.get("sqlite_autoindex_calls_1", 0) > 0
    assert writer.main("sqlite", 5, [10], DEFAULT_PG, pages=True) == 0
    assert re.search(r"batches of +10: +[\d,]+ pages changed a batch", capsys.readouterr().out)
    with pytest.raises(SystemExit, match="use it with --db sqlite"):
        writer.main("postgresql", 5, [10], DEFAULT_PG, pages=True)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_the_writer_bench_counts_postgresqls_backend_too(tmp_path):
    """On PostgreSQL the writer's cost includes the backend's CPU, when it runs here."""
    from bench import writer

    bench_url = PG_URL + "_writer_bench"  # its own databases, beside the suite's
    webhooks = writer.spooled_webhooks(150, "postgresql", bench_url, tmp_path)
    cost = writer.writer_cost(webhooks, 100, "postgresql", bench_url, tmp_path)
    assert cost.writing > cost.committing > 0
    assert cost.backend is not None and cost.backend > 0


@pytest.mark.parametrize("collector", ["settled", "off"])
def test_the_inprocess_bench_answers_whole_calls_on_both_servers(collector):
    """`python -m bench inprocess`, as a user runs it (in a process of its own: it settles
    or stops the garbage collector there), on ours and the ceiling; every webhook it plays
    must be answered 200, or it fails."""
    args = [] if collector == "settled" else ["--no-collector"]
    for server in ("ours", "ceiling"):
        done = subprocess.run(
            [sys.executable, "-m", "bench", "inprocess", "--server", server, "--calls", "3", *args],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert re.search(rf"^{server} \(sqlite\): [\d,]+ µs of CPU per webhook", done.stdout, re.MULTILINE)


def test_ours_and_the_ceiling_take_turns_going_first():
    """A drift in the machine's speed over a run must not favour one side: who serves first
    swaps every round, so over each pair of rounds both go first once."""
    from bench.load import serving_order

    firsts = [serving_order(r)[0][0] for r in range(4)]
    assert firsts == ["ours", "ceiling", "ours", "ceiling"]
    assert all({name for name, _ in serving_order(r)} == {"ours", "ceiling"} for r in range(4))


def test_a_processs_cpu_is_split_by_the_threads_it_names():
    """The load's per-thread figures: a thread the line names "write-behind" counts as the
    writer's, the process's first thread as gunicorn's loop, and nothing is lost."""
    import os
    import threading
    import time

    from bench.servers import proc_cpu_seconds, thread_cpu_seconds
    from facts.threads import start_named

    burnt, done = threading.Event(), threading.Event()

    def busy() -> None:
        until = time.thread_time() + 0.3
        while time.thread_time() < until:
            pass
        burnt.set()
        done.wait()

    thread = start_named(busy, "write-behind")
    assert burnt.wait(30)
    try:
        used = thread_cpu_seconds(os.getpid())
    finally:
        done.set()
        thread.join()
    assert used["writer"] >= 0.2  # the kernel counts in ticks of 10 ms
    assert used["loop"] > 0
    assert sum(used.values()) == pytest.approx(proc_cpu_seconds(os.getpid()), abs=0.05)


def test_side_by_side_compares_the_cpu_of_both_served_at_once(capsys):
    """`python -m bench side-by-side`: both servers answer the same calls at once; the
    figures say what each spent a webhook, by thread, and ours counted every call."""
    from bench import sidebyside
    from bench.servers import DEFAULT_PG

    assert sidebyside.main("sqlite", 60, 1, 8, 2, 2, DEFAULT_PG) == 0
    out = capsys.readouterr().out
    assert re.search(r"round 1: ours +[\d.]+ calls/s, [\d.]+ ms a webhook .* ceiling +[\d.]+ calls/s", out)
    ours, ceiling = map(float, re.search(r"requests +([\d.]+) / +([\d.]+)", out).groups())
    assert ours > 0 and ceiling > 0
    assert re.search(r"counts after \d+ calls: exact", out)
