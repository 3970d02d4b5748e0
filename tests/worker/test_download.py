"""Recordings fetched from the Twilio stand-in, checked, stored with their checksum, once."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import text

from facts import write_path
from models import db

from .sound import silence_wav, to_mp3


def test_completed_recording_is_fetched_with_basic_auth_and_stored_with_its_checksum(line):
    line = line()
    wav = silence_wav(4)
    sid = line.comment(wav, seconds=4)
    assert line.job("download", sid).state == "queued"  # the webhook only queued it
    assert line.standin.requests("GET") == []
    line.work()
    row = line.recording(sid)
    assert row.checksum == hashlib.sha256(wav).hexdigest()
    assert (row.size_bytes, row.content_type) == (len(wav), "audio/wav")
    assert row.storage_key.endswith(f"/{sid}.wav") and row.stored_at is not None
    assert line.stored_bytes(sid) == wav
    gets = line.standin.requests("GET", sid)
    assert [(g.ext, g.status) for g in gets] == [(".wav", 200)]
    assert line.job("download", sid).state == "done"


def test_not_ready_and_server_errors_are_retried_until_the_media_comes(line):
    line = line(JOB_MAX_ATTEMPTS="6")
    wav = silence_wav(3)
    sid = line.comment(wav, seconds=3)
    line.standin.not_ready[sid] = 2
    line.standin.failures[sid] = 2
    line.work()
    assert [g.status for g in line.standin.requests("GET", sid)] == [404, 404, 500, 500, 200]
    job = line.job("download", sid)
    assert (job.state, job.attempts, job.last_error) == ("done", 5, None)
    assert line.stored_bytes(sid) == wav


def test_a_retry_waits_out_the_backoff(line):
    line = line(JOB_BACKOFF_SECONDS="60")
    sid = line.comment(silence_wav(3), seconds=3)
    line.standin.not_ready[sid] = 1
    line.work()
    job = line.job("download", sid)
    assert (job.state, job.attempts, job.last_error) == ("queued", 1, "not ready yet (404)")
    waited = (job.run_after - job.updated_at).total_seconds()
    assert 48 <= waited <= 72  # 60 s, ±20 % jitter
    assert line.recording(sid).stored_at is None


def test_wrong_credentials_end_failed_after_the_last_try_with_the_reason_kept(line):
    line = line(JOB_MAX_ATTEMPTS="3")
    line.standin.token = "a-token-the-line-does-not-have"
    sid = line.comment(silence_wav(3), seconds=3)
    line.work()
    assert [g.status for g in line.standin.requests("GET", sid)] == [401, 401, 401]
    job = line.job("download", sid)
    assert (job.state, job.attempts) == ("failed", 3)
    assert "401" in job.last_error
    failed = line.transcripts(sid)["whisper"]
    assert failed.status == "failed" and "could not be fetched" in failed.reason and "401" in failed.reason
    listing = line.cli("worker", "jobs", "--state", "failed").output
    assert f"download {sid} failed try 3/3" in listing


def test_a_recording_url_outside_the_api_base_is_never_fetched(line):
    line = line()
    sid = line.comment(silence_wav(3), seconds=3)
    with line.app.app_context():
        db.session.execute(
            text("UPDATE recordings SET media_url = :u WHERE recording_sid = :s"),
            {"u": f"http://127.0.0.1:9/elsewhere/{sid}", "s": sid},
        )
        db.session.commit()
    line.work()
    job = line.job("download", sid)
    assert (job.state, job.attempts) == ("failed", 1)  # no retry can fix it
    assert "not under" in job.last_error
    assert line.standin.seen == []


def test_media_that_fails_its_checks_is_not_stored(line):
    line = line(JOB_MAX_ATTEMPTS="2")
    short = line.comment(silence_wav(4), seconds=40)  # Twilio says 40 s; the file lasts 4 s
    html = line.comment(silence_wav(3), seconds=3)
    line.standin.wrong_type[html] = "text/html"
    line.work()
    assert "lasts 4.0 s but Twilio said 40 s" in line.job("download", short).last_error
    assert "expected WAV, got text/html" in line.job("download", html).last_error
    assert line.recording(short).stored_at is None and line.recording(html).stored_at is None


def test_mp3_by_setting(line, tmp_path):
    line = line(RECORDING_FORMAT="mp3")
    wav = silence_wav(3)
    mp3 = to_mp3(tmp_path, "quiet", wav)
    sid = line.comment(wav, mp3=mp3, seconds=3)
    line.work()
    row = line.recording(sid)
    assert (row.content_type, row.checksum) == ("audio/mpeg", hashlib.sha256(mp3).hexdigest())
    assert row.storage_key.endswith(".mp3") and line.stored_bytes(sid) == mp3
    assert [g.ext for g in line.standin.requests("GET", sid)] == [".mp3"]


def test_twilio_copy_is_deleted_only_after_ours_is_verified_when_set(line):
    line = line(DELETE_FROM_TWILIO="true")
    sid = line.comment(silence_wav(3), seconds=3)
    line.work()
    assert line.standin.deleted() == [sid]
    assert line.recording(sid).checksum
    assert line.job("forget_twilio", sid).state == "done"
    delete = line.standin.requests("DELETE")[0]
    assert delete.ext == ".json" and delete.at > line.standin.requests("GET", sid)[-1].at


def test_twilio_copy_is_kept_by_default(line):
    line = line()
    line.comment(silence_wav(3), seconds=3)
    line.work()
    assert line.standin.requests("DELETE") == []


def test_an_absent_recording_is_not_fetched(line):
    line = line()
    sid = line.comment(silence_wav(3), seconds=0, status="absent")
    line.work()
    assert line.job("download", sid) is None and line.standin.seen == []


def test_a_queue_failure_never_breaks_the_webhook_and_loses_nothing(line):
    """The download job is queued in the same transaction as the recording's status. When the
    database refuses it, the caller is answered and both wait in the spool; the worker writes
    them when it can, then runs the job."""
    line = line()
    with line.app.app_context():
        db.session.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
        db.session.commit()
    try:
        call = line.twilio.call()
        call.dial()
        call.press("1")
        call.press("3")
        _, sid = call.speak(seconds=3)
        line.standin.add(sid, silence_wav(3))
        reply = call.recording_status(sid, seconds=3)  # the queue cannot be written to
        assert reply.status == 200 and reply.root.tag == "Response"
        assert write_path(line.app).spool.depth() == 1  # the fact and its job, kept together
    finally:
        with line.app.app_context():
            db.session.execute(text("ALTER TABLE jobs_away RENAME TO jobs"))
            db.session.commit()
    line.work()
    assert write_path(line.app).spool.depth() == 0
    assert line.recording(sid).status == "completed" and line.recording(sid).stored_at is not None


def test_the_sweep_queues_work_for_a_comment_that_has_none(line):
    line = line()
    sid = line.comment()
    with line.app.app_context():
        db.session.execute(text("DELETE FROM jobs"))  # as if the job had been lost
        db.session.commit()
    line.app.config["WORKER_SWEEP_SECONDS"] = 60
    line.work()
    assert line.recording(sid).stored_at is not None


def test_recordings_in_s3_compatible_storage(line, tmp_path, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="comments")
        line = line(RECORDINGS_STORAGE="s3", S3_BUCKET="comments", S3_PREFIX="line-a", S3_ENDPOINT_URL=endpoint)
        wav = silence_wav(3)
        sid = line.comment(wav, seconds=3)
        line.work()
        row = line.recording(sid)
        body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket="comments", Key=f"line-a/{row.storage_key}")
        assert body["Body"].read() == wav and body["ContentType"] == "audio/wav"
        assert row.checksum == hashlib.sha256(wav).hexdigest()
        assert not any(Path(tmp_path).rglob(f"{sid}.wav"))  # nothing kept locally
        line.cli("recordings", "verify")
    finally:
        server.stop()
