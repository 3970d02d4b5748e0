"""Signed daily receipts: made by hand and by the worker, chained, append-only, published;
`flask tally verify` passes on an untouched database and names the day, topic and kind of
fact after a call row is deleted or a position altered by hand in SQL; the standalone
checker (scripts/verify_receipts.py, without the app) agrees."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from config import PROJECT_DIR
from jobs.runner import Worker
from models import Call, Choice, TallyReceipt, db, utcnow
from receipts import digest as receipt_digest
from receipts.chain import close_day, close_due, local_day
from receipts.publish import queue_publication
from receipts.signing import new_private_key
from tests.console_support import leave_comment

SCRIPT = PROJECT_DIR / "scripts" / "verify_receipts.py"


@pytest.fixture
def signed(settings):
    settings.update(TALLY_SIGNING_KEY=new_private_key(), PUBLIC_TALLY="on")
    return settings


def play_calls(twilio) -> None:
    leave_comment(twilio, "1", "1", From="+15035550111")
    leave_comment(twilio, "1", "2", From="+15035550112")
    leave_comment(twilio, "2", "3", From="+15035550113")


def today(app) -> date:
    return local_day(utcnow(), app.config["LINE_TIMEZONE"])


def after_today(app) -> datetime:
    """A moment just after today has ended (for making today's final receipt)."""
    return datetime.combine(today(app) + timedelta(days=1), time(0, 30))


def close_today_finally(app) -> TallyReceipt:
    with app.app_context():
        receipt = close_day(db.session, app.config, today(app), now=after_today(app))
        db.session.commit()
        return receipt.hash


def download(client, tmp_path, day: date | None = None) -> list[str]:
    """The public files a reader downloads, written where the standalone checker reads them."""
    files = {"key": "/public/tally-key", "receipts": "/public/receipts"}
    if day:
        files["facts"] = f"/public/receipts/{day}.facts.json"
    args = []
    for name, path in files.items():
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.get_data(as_text=True))
        assert "Set-Cookie" not in answer.headers
        (tmp_path / f"{name}.json").write_bytes(answer.get_data())
        args += [f"--{name}", str(tmp_path / f"{name}.json")]
    return args


def standalone(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_closing_today_makes_a_partial_receipt_then_the_final_one(signed, app, runner, twilio, client, tmp_path):
    play_calls(twilio)
    day = today(app)
    made = runner.invoke(args=["tally", "close", "--day", day.isoformat()])
    assert made.exit_code == 0, made.output
    assert "partial receipt" in made.output
    again = runner.invoke(args=["tally", "close", "--day", day.isoformat()])
    assert "nothing made" in again.output
    final = close_today_finally(app)
    receipts = client.get("/public/receipts").get_json()["receipts"]
    assert [r["body"]["kind"] for r in receipts] == ["partial", "final"]
    partial, last = receipts
    assert (
        last["hash"] == final and last["body"]["amends"] == partial["hash"] and last["body"]["why"] == "the day ended"
    )
    assert last["body"]["previous"] == partial["hash"] and partial["body"]["previous"] == ""
    assert last["body"]["counts"]["calls"] == 3 and last["body"]["counts"]["topics"]["budget"]["calls"] == 2
    assert partial["body"]["covers"]["until"] < last["body"]["covers"]["until"]
    assert client.get(f"/public/receipts/{day}.json").get_json()["receipts"][-1]["hash"] == final
    # Nothing about a person in what is published.
    published = client.get(f"/public/receipts/{day}.facts.json").get_data(as_text=True)
    assert "+1503555" not in published and '"CA' not in published and '"RE' not in published
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0
    checked = standalone(download(client, tmp_path, day))
    assert checked.returncode == 0, checked.stderr
    assert "2 receipts" in checked.stdout and "the facts match" in checked.stdout


def test_verify_names_the_day_topic_and_kind_after_a_call_row_is_deleted(signed, app, runner, twilio, client, tmp_path):
    play_calls(twilio)
    close_today_finally(app)
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0
    args = download(client, tmp_path, today(app))
    assert standalone(args).returncode == 0
    with app.app_context():
        sid = db.session.scalar(
            select(Choice.call_sid).where(Choice.kind == "stance", Choice.stance == "oppose").limit(1)
        )
        row = db.session.execute(select(Call.__table__).where(Call.call_sid == sid)).mappings().one()
        db.session.execute(text("DELETE FROM calls WHERE call_sid = :sid"), {"sid": sid})
        db.session.commit()
    checked = runner.invoke(args=["tally", "verify"])
    assert checked.exit_code == 1
    assert f"First difference: {today(app)}: topic budget: a deleted call (2 in the receipt, 1 now)" in checked.output
    app.extensions["public_cache"].clear()
    theirs = standalone(download(client, tmp_path, today(app)))
    assert theirs.returncode == 1
    assert f"{today(app)}, topic budget: the call facts differ (2 in the receipt, 1 in the export)" in theirs.stderr
    with app.app_context():  # put it back: the receipt holds again
        db.session.execute(Call.__table__.insert().values(**row))
        db.session.commit()
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0


def test_verify_names_a_position_altered_by_hand(signed, app, runner, twilio, client, tmp_path):
    play_calls(twilio)
    close_today_finally(app)
    with app.app_context():
        sid, step = db.session.execute(
            select(Choice.call_sid, Choice.step).where(Choice.kind == "stance", Choice.stance == "support")
        ).one()
        db.session.execute(
            text("UPDATE choices SET stance = 'oppose' WHERE call_sid = :sid AND step = :step"),
            {"sid": sid, "step": step},
        )
        db.session.commit()
    checked = runner.invoke(args=["tally", "verify"])
    assert checked.exit_code == 1
    assert f"First difference: {today(app)}: topic budget: a changed position" in checked.output
    theirs = standalone(download(client, tmp_path, today(app)))
    assert theirs.returncode == 1
    assert f"{today(app)}, topic budget: the position facts differ (2 in the receipt, 2 in the export)" in theirs.stderr
    with app.app_context():
        db.session.execute(
            text("UPDATE choices SET stance = 'support' WHERE call_sid = :sid AND step = :step"),
            {"sid": sid, "step": step},
        )
        db.session.commit()
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0


def test_a_partial_receipt_shows_a_deleted_call_too(signed, app, runner, twilio):
    play_calls(twilio)
    assert runner.invoke(args=["tally", "close", "--day", today(app).isoformat()]).exit_code == 0
    leave_comment(twilio, "3", None, From="+15035550119")  # more facts today: not a difference
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0
    with app.app_context():
        sid = db.session.scalar(select(Choice.call_sid).where(Choice.stance == "other"))
        row = db.session.execute(select(Call.__table__).where(Call.call_sid == sid)).mappings().one()
        db.session.execute(text("DELETE FROM calls WHERE call_sid = :sid"), {"sid": sid})
        db.session.commit()
    checked = runner.invoke(args=["tally", "verify"])
    assert checked.exit_code == 1 and "topic transit: a deleted call" in checked.output
    with app.app_context():
        db.session.execute(Call.__table__.insert().values(**row))
        db.session.commit()


def test_a_late_fact_makes_an_amended_receipt_and_nothing_changes_a_published_one(signed, app, twilio):
    play_calls(twilio)
    final = close_today_finally(app)
    leave_comment(twilio, "1", "1", From="+15035550120")  # a fact for the closed day
    with app.app_context():
        made = close_due(db.session, app.config, now=after_today(app) + timedelta(minutes=20))
        assert [r.kind for r in made] == ["amended"]
        body = json.loads(made[0].body)
        assert body["amends"] == final and body["why"] == "late facts arrived after the day was closed"
        assert body["counts"]["calls"] == 4
        assert close_due(db.session, app.config, now=after_today(app) + timedelta(minutes=25)) == []
        for statement in ("UPDATE tally_receipts SET kind = 'final'", "DELETE FROM tally_receipts"):
            with pytest.raises(Exception, match="never changed or deleted"):
                db.session.execute(text(statement))
            db.session.rollback()
        assert db.session.scalar(select(TallyReceipt.hash).where(TallyReceipt.hash == final)) == final


def test_the_worker_closes_each_ended_day_and_publishes_the_receipt(signed, app, twilio):
    posted: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.config["TALLY_PUBLISH_URL"] = f"http://127.0.0.1:{server.server_port}/receipts"
    try:
        play_calls(twilio)
        with app.app_context():
            made = close_due(
                db.session,
                app.config,
                now=after_today(app),
                after_made=lambda s, r: queue_publication(s, app.config, r),
            )
            assert [r.kind for r in made] == ["final"]
            hashes = [r.hash for r in made]
        Worker(app, ("publish_receipt",)).run(burst=True)
    finally:
        server.shutdown()
    assert [p["hash"] for p in posted] == hashes
    assert posted[0]["body"]["kind"] == "final" and posted[0]["signature"]


def test_keygen_and_the_public_key(signed, runner, client, tmp_path):
    made = runner.invoke(args=["tally", "keygen"])
    assert made.exit_code == 0 and made.stdout.startswith("TALLY_SIGNING_KEY=")
    env = tmp_path / ".env"
    assert runner.invoke(args=["tally", "keygen", "--env-file", str(env)]).exit_code == 0
    assert env.read_text().startswith("TALLY_SIGNING_KEY=")
    key = client.get("/public/tally-key").get_json()
    assert key["algorithm"] == "Ed25519" and len(key["key_id"]) == 16


def test_without_a_key_nothing_is_signed_and_it_says_so(settings, runner, client):
    settings["PUBLIC_TALLY"] = "on"
    closed = runner.invoke(args=["tally", "close", "--day", "2026-11-30"])
    assert closed.exit_code == 1 and "flask tally keygen" in closed.output
    assert client.get("/public/tally-key").status_code == 404


def test_bad_days_are_clear_answers(signed, runner, client):
    assert "is not a day" in runner.invoke(args=["tally", "close", "--day", "yesterday"]).output
    assert runner.invoke(args=["tally", "close", "--day", "2999-01-01"]).exit_code == 1
    for edge in ("9999-12-31", "0001-01-01", "2026-W49-5"):  # the calendar's ends; a week day
        closed = runner.invoke(args=["tally", "close", "--day", edge])
        assert closed.exit_code == 2 and "is not a day" in closed.output, closed.output
        assert client.get(f"/public/receipts/{edge}.json").status_code == 400
    assert client.get("/public/receipts/2026-13-45.json").status_code == 400
    assert client.get("/public/receipts/nope.json").status_code == 400
    assert client.get("/public/receipts/2026-11-30.txt").status_code == 404
    assert client.get("/public/receipts/2026-11-30.json").status_code == 404


FACTS = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(receipt_digest.KINDS),
            "key": st.text(min_size=1, max_size=8),
            "topic": st.sampled_from(["budget", "transit", "(none)"]),
            "position": st.none() | st.sampled_from(["support", "oppose"]),
            "counted": st.booleans(),
        }
    ),
    max_size=30,
    unique_by=lambda fact: fact["key"],
)


@given(FACTS, st.randoms())
def test_the_digest_is_the_same_in_any_order_and_the_standalone_checker_agrees(facts, rng):
    sys.path.insert(0, str(SCRIPT.parent))
    import verify_receipts

    shuffled = list(facts)
    rng.shuffle(shuffled)
    ours = receipt_digest.digest(facts)
    assert ours == receipt_digest.digest(shuffled) == verify_receipts.digest(shuffled)
    if facts:
        changed = [dict(facts[0], counted=not facts[0]["counted"]), *facts[1:]]
        assert receipt_digest.digest(changed)["root"] != ours["root"]


def test_a_receipt_is_put_in_an_s3_compatible_bucket_as_it_is_made(signed, app, twilio, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "t",
            "AWS_SECRET_ACCESS_KEY": "t",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="receipts")
        app.config.update(TALLY_PUBLISH_S3_BUCKET="receipts", S3_ENDPOINT_URL=endpoint)
        play_calls(twilio)
        with app.app_context():
            receipt = close_day(db.session, app.config, today(app))
            queue_publication(db.session, app.config, receipt)
            db.session.commit()
            key, day = receipt.hash, receipt.day
        Worker(app, ("publish_receipt",)).run(burst=True)
        stored = json.loads(s3.get_object(Bucket="receipts", Key=f"receipts/{day}/{key}.json")["Body"].read())
        assert stored["hash"] == key and stored["body"]["kind"] == "partial"
    finally:
        server.stop()


def test_verify_names_a_comment_removed_by_hand(signed, app, runner, twilio):
    from models import Recording

    play_calls(twilio)
    close_today_finally(app)
    with app.app_context():
        row = db.session.execute(select(Recording.__table__).where(Recording.stance == "other")).mappings().one()
        db.session.execute(text("DELETE FROM recordings WHERE id = :id"), {"id": row["id"]})
        db.session.commit()
    checked = runner.invoke(args=["tally", "verify"])
    assert checked.exit_code == 1
    assert (
        f"First difference: {today(app)}: topic transit: a removed comment (1 in the receipt, 0 now)" in checked.output
    )
    with app.app_context():
        db.session.execute(Recording.__table__.insert().values(**row))
        db.session.commit()
    assert runner.invoke(args=["tally", "verify"]).exit_code == 0


def test_the_standalone_checker_reads_a_served_line_and_keeps_a_pinned_key(
    signed, app, served_line, twilio, client, tmp_path
):
    """`--base` downloads what it was not given: a key kept from before (`--key`) is used,
    not the one the line serves; the export must be of the day asked, and name a receipt of
    its own day; what cannot be read is said in one line."""
    play_calls(twilio)
    day = today(app)
    close_today_finally(app)
    base = served_line().base + "/public"
    checked = standalone(["--base", base, "--day", day.isoformat()])
    assert checked.returncode == 0, checked.stderr
    assert "the facts match" in checked.stdout

    other = tmp_path / "other-key.json"
    other.write_text(json.dumps({**client.get("/public/tally-key").get_json(), "public_key": signing_key_b64()}))
    pinned = standalone(["--base", base, "--key", str(other)])
    assert pinned.returncode == 1 and "the signature does not hold" in pinned.stderr

    missing = standalone(["--base", base, "--day", (day - timedelta(days=3)).isoformat()])
    assert missing.returncode == 1 and "could not check:" in missing.stderr and "404" in missing.stderr
    assert "Traceback" not in missing.stderr
    week = standalone(["--base", base, "--day", "2026-W49-5"])
    assert week.returncode == 1 and "give a day as YYYY-MM-DD" in week.stderr

    args = download(client, tmp_path, day)
    export = json.loads((tmp_path / "facts.json").read_text())
    (tmp_path / "facts.json").write_text(json.dumps({**export, "day": (day - timedelta(days=1)).isoformat()}))
    moved = standalone(args)
    assert moved.returncode == 1 and f"which is of {day}" in moved.stderr
    receipts = json.loads((tmp_path / "receipts.json").read_text())
    del receipts["receipts"][0]["signature"]
    (tmp_path / "receipts.json").write_text(json.dumps(receipts))
    unsigned = standalone(args[:4])
    assert unsigned.returncode == 1 and "a field 'signature' is missing" in unsigned.stderr
    assert "Traceback" not in unsigned.stderr


def signing_key_b64() -> str:
    """The public key of a new signing key, as the line serves one."""
    from receipts import signing

    return signing.b64(signing.public_raw(signing.private_key(new_private_key())))


def test_verify_names_each_count_that_differs_and_skips_what_the_line_no_longer_keeps(signed, app, runner, twilio):
    """Receipts made while the line kept callers still verify once it keeps none
    (CALLER_NUMBERS=none): a figure it cannot know now is not a difference. One it can is
    named, with both values."""
    from receipts.chain import counts_differences

    play_calls(twilio)
    close_today_finally(app)
    app.config["CALLER_NUMBERS"] = "none"
    checked = runner.invoke(args=["tally", "verify"])
    assert checked.exit_code == 0, checked.output
    was = {"calls": 3, "line_callers": 3, "topics": {"budget": {"calls": 2, "stance": {"support": 1}}}}
    now = {"calls": 3, "line_callers": None, "topics": {"budget": {"calls": 1, "stance": {"support": 2}}}}
    assert counts_differences(was, now) == [
        "topics.budget.calls: 2 in the receipt, 1 now",
        "topics.budget.stance.support: 1 in the receipt, 2 now",
    ]
    assert counts_differences({"topics": {}}, {"topics": {"transit": {"calls": 1}}}) == [
        "topics.transit.calls: 0 in the receipt, 1 now"
    ]
