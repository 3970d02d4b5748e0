"""Through failures: the database away (a private PostgreSQL cluster stopped; SQLite locked
by another process), the Fallback URL. Every webhook still answers valid TwiML, what could not
be written waits in the spool, and after recovery the counts equal what was played."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from app import create_app
from facts import write_path
from ivr.caller import HTTP_CONNECTION_FAILURE, Recording
from models import db
from models.line import load_script, read_script_file
from models.tokens import create_token
from tests.conftest import SECRETS, Caller, Twilio, free_port, in_process_twilio, migrate_to_head

WEBHOOK_BUDGET = 5.0  # seconds a webhook may take while the database is away


def line_app(url: str, instance: Path, **extra: str):
    app = create_app({**SECRETS, "DATABASE_URL": url, "INSTANCE_DIR": str(instance), **extra})
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        token = create_token(db.session, "faults")
        db.session.commit()
    return app, token


class TimedTwilio(Twilio):
    """Checks that every webhook is answered within the budget."""

    def post(self, *args, **kwargs):
        started = time.monotonic()
        response = super().post(*args, **kwargs)
        assert time.monotonic() - started < WEBHOOK_BUDGET
        return response


def counts(client, token) -> dict:
    body = client.get("/api/v1/counts", headers={"Authorization": f"Bearer {token}"}).json
    return {
        "calls": body["calls"],
        "unrouted": body["unrouted"],
        **{t["slug"]: (t["calls"], t["comments"], t["stance"]["support"]) for t in body["topics"]},
    }


def play_whole_call(twilio, keys, seconds=10) -> Caller:
    call = twilio.call()
    call.dial()
    for key in keys:
        call.press(key)
    reply, sid = call.speak(seconds=seconds)
    assert "Thank you" in reply.said or "Gracias" in reply.said
    call.recording_status(sid, seconds=seconds)
    call.hang_up()
    return call


def wait_for_empty_spool(app, timeout=40.0) -> None:
    spool = write_path(app).spool
    deadline = time.monotonic() + timeout
    while spool.depth() and time.monotonic() < deadline:
        write_path(app).replayer.start()
        time.sleep(0.5)
    assert spool.depth() == 0, "the spool was not replayed"


EXPECTED = {
    "calls": 3,
    "unrouted": 0,
    "budget": (1, 1, 1),
    "transit": (0, 0, 0),
    "housing": (1, 1, 0),
    "general": (1, 1, 0),
}


def play_through_outage(app, client, break_database, mend_database) -> None:
    twilio = TimedTwilio(lambda u, p, h: client.post(u, data=p, headers=h))
    play_whole_call(twilio, ["1", "1", "1"])  # before: budget, support
    write_path(app).flush()
    break_database()
    spool = write_path(app).spool
    during = play_whole_call(twilio, ["2", "3"])  # during: Spanish, housing
    write_path(app).flush()  # with write-behind: the writer found the database away
    assert spool.depth() >= 6, "the webhooks did not use the spool"
    during.hang_up()  # a duplicate status callback, spooled too
    retried = twilio.call()
    retried.dial()
    retried.dial()  # Twilio retries the first webhook
    retried.press("1")
    retried.press("9")
    retried.speak()
    write_path(app).flush()
    mend_database()
    wait_for_empty_spool(app)
    assert counts(client, app.extensions["api_token"]) == EXPECTED


def find_pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivateCluster:
    """A PostgreSQL cluster of the test's own, made with initdb, on a port of its own."""

    def __init__(self, root: Path) -> None:
        self.bin = find_pg_bin()
        self.data, self.port = root / "pgdata", free_port()
        self.sockets = root / "sock"
        self.sockets.mkdir()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "line")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/line"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", str(self.data.parent / "log"), "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_cluster():
    if find_pg_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb is not installed: the outage test cannot run")
        pytest.skip("initdb is not installed")
    root = Path(tempfile.mkdtemp(prefix="commentline-pg-"))  # not under pytest's root-only folder
    try:
        cluster = PrivateCluster(root)
        yield cluster
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


# The line as in production (write-behind: journalled, then written in batches) and with each
# webhook committing before it answers.
WRITE_MODES = pytest.mark.parametrize("write_behind", ["1", "0"], ids=["write-behind", "direct"])


@WRITE_MODES
def test_postgresql_stopped_mid_call_then_back(private_cluster, tmp_path, write_behind):
    migrate_to_head(private_cluster.url, tmp_path)
    app, token = line_app(
        private_cluster.url, tmp_path / "instance", DB_COOL_OFF_SECONDS="0.5", WRITE_BEHIND=write_behind
    )
    app.extensions["api_token"] = token
    play_through_outage(app, app.test_client(), private_cluster.stop, private_cluster.start)
    with app.app_context():
        db.engine.dispose()


HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


@WRITE_MODES
def test_sqlite_locked_by_another_process_then_released(sqlite_template, tmp_path, write_behind):
    path = tmp_path / "line.db"
    shutil.copy(sqlite_template, path)
    app, token = line_app(
        f"sqlite:///{path}",
        tmp_path / "instance",
        SQLITE_BUSY_SECONDS="0.5",
        DB_COOL_OFF_SECONDS="0.5",
        WRITE_BEHIND=write_behind,
    )
    app.extensions["api_token"] = token
    holder: list[subprocess.Popen] = []

    def lock():
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout.readline().strip() == "locked"
        holder.append(process)

    def unlock():
        process = holder.pop()
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(10)

    try:
        play_through_outage(app, app.test_client(), lock, unlock)
    finally:
        for process in holder:
            process.kill()
    with app.app_context():
        db.engine.dispose()


def test_spool_replays_exactly_once_even_when_replayed_twice(sqlite_template, tmp_path):
    """Facts spooled while the database was away are written once it is back, exactly once,
    however often the spool is replayed (a torn last line skipped)."""
    from facts.record import loads

    path = tmp_path / "line.db"
    shutil.copy(sqlite_template, path)
    healthy, token = line_app(f"sqlite:///{path}", tmp_path / "instance")
    spool = write_path(healthy).spool
    write_path(healthy).breaker.trip()  # the database is away for the calls below
    client = healthy.test_client()
    play_whole_call(in_process_twilio(healthy), ["1", "1", "1"])
    write_path(healthy).breaker.reset()
    write_path(healthy).replayer.stop()
    lines = [loads(line) for f in spool.files() for line in f.read_text().splitlines()]
    assert len(lines) >= 6
    copy = spool.files()[0].read_bytes()
    with healthy.app_context():
        first = spool.replay(db.session)
        (spool.dir / f"{spool.stamp.current}~again.jsonl").write_bytes(copy + b'[["call",{"values"')
        second = spool.replay(db.session)
        db.engine.dispose()
    assert first.written == len(lines) and second.written == len(lines) and second.torn == 1
    assert spool.depth() == 0
    assert counts(client, token)["budget"] == (1, 1, 1)
    assert counts(client, token)["calls"] == 1


def test_a_spool_written_for_another_database_is_never_replayed_here(sqlite_template, tmp_path):
    """A journal or spool file left by a process that wrote to another database is set aside,
    reported, and written here only when an operator names it."""
    path = tmp_path / "line.db"
    shutil.copy(sqlite_template, path)
    away = create_app(
        {**SECRETS, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "INSTANCE_DIR": str(tmp_path / "instance")}
    )
    client = away.test_client()
    play_whole_call(Twilio(lambda u, p, h: client.post(u, data=p, headers=h)), ["1", "1", "1"])
    write_path(away).replayer.stop()
    healthy, token = line_app(f"sqlite:///{path}", tmp_path / "instance")
    spool = write_path(healthy).spool
    assert spool.files() == [] and len(spool.foreign()) == 1
    runner = healthy.test_cli_runner()
    status = runner.invoke(args=["spool", "status"])
    assert "1 file(s) written for another database" in status.output
    replayed = runner.invoke(args=["spool", "replay"])
    assert replayed.exit_code == 0 and "set aside 1 file(s)" in replayed.output
    healthy_client = healthy.test_client()
    assert counts(healthy_client, token)["calls"] == 0
    (aside,) = spool.foreign()
    assert aside.parent == spool.aside
    metrics = healthy_client.get("/metrics").get_data(as_text=True)
    assert "commentline_spool_foreign_files 1.0" in metrics
    forced = runner.invoke(args=["spool", "replay", "--into-this-database", str(aside)])
    assert forced.exit_code == 0, forced.output
    assert counts(healthy_client, token)["calls"] == 1
    assert counts(healthy_client, token)["budget"] == (1, 1, 1)


def test_fallback_url_answers_the_failed_webhook_without_double_counting(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    # The topic webhook failed as Twilio saw it (its facts may or may not have been stored):
    # Twilio asks the Fallback URL with the same parameters, and the caller goes on.
    failed = call.simulated.gather(call.reply.action, "3")
    reply = call.send(call.simulated.fallback(failed))
    assert reply.record is not None and "Please leave your comment" in reply.said
    again = call.send(call.simulated.fallback(failed))  # Twilio retried the fallback too
    assert again.body == reply.body
    call.send(failed)  # and the main path had stored it
    call.reply = again
    saved, _ = call.speak(seconds=7)
    assert "Your reference number is" in saved.said
    body = api("/api/v1/counts").json
    housing = next(t for t in body["topics"] if t["slug"] == "housing")
    assert (body["calls"], body["unrouted"], housing["calls"], housing["comments"]) == (1, 0, 1, 1)


def test_fallback_for_a_url_not_ours_takes_a_general_comment(twilio, api):
    call = twilio.call()
    reply = call.post(
        "/twilio/fallback", CallStatus="ringing", ErrorCode="11200", ErrorUrl="https://elsewhere.example.org/voice"
    )
    assert reply.record is not None and "We are sorry, we are having trouble." in reply.said
    call.speak(seconds=7)
    body = api("/api/v1/counts").json
    general = next(t for t in body["topics"] if t["slug"] == "general")
    assert (body["calls"], body["unrouted"], general["calls"], general["comments"]) == (1, 0, 1, 1)


def test_fallback_after_a_failed_record_action_stores_the_comment_once(twilio, api):
    call = twilio.call()
    call.dial()
    call.press("1")
    record = call.press("3")
    sid = "RE" + "f" * 32
    failed = call.simulated.record_action(record.record.get("action"), Recording(sid, 9))
    fallback = call.send(call.simulated.fallback(failed, HTTP_CONNECTION_FAILURE))
    assert "Your reference number is" in fallback.said
    call.reply = record
    main, _ = call.speak(seconds=9, sid=sid)  # the main path's retry got through after all
    assert main.said.split("number is")[1] == fallback.said.split("number is")[1]
    housing = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "housing")
    assert (housing["calls"], housing["comments"]) == (1, 1)


def test_an_unexpected_error_in_a_webhook_asks_for_a_general_comment(twilio, api, app):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    call = twilio.call()
    call.dial()
    call.press("1")
    app.extensions["line_script"].get = broken  # a bug, not an outage: the script cannot be built
    reply = call.press("2")
    assert reply.record is not None and "We are sorry, we are having trouble." in reply.said
    assert "general" in reply.record.get("action")
    del app.extensions["line_script"].get
    call.speak(seconds=5)
    general = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "general")
    assert (general["calls"], general["comments"]) == (1, 1)
