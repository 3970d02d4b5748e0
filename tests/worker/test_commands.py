"""The back-fill, repair and retention commands, on recordings fetched from the stand-in."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text

from facts import write_path
from models import AuditEntry, Job, db, utcnow

from .sound import silence_wav


def forget_jobs(line) -> None:
    """As on a line that took comments before it had a worker: the facts, and no jobs."""
    with line.app.app_context():
        db.session.execute(text("DELETE FROM jobs"))
        db.session.commit()


def test_fetch_missing_fetches_every_recording_not_yet_stored_with_progress(line):
    line = line()
    sids = [line.comment(silence_wav(2), seconds=2) for _ in range(3)]
    forget_jobs(line)
    result = line.cli("recordings", "fetch-missing")
    assert "3 recording(s) to fetch." in result.output and "Fetching" in result.output
    assert "3 done, 0 failed, 0 left to the worker" in result.output
    assert all(line.recording(sid).stored_at for sid in sids)
    again = line.cli("recordings", "fetch-missing")
    assert "0 recording(s) to fetch." in again.output
    assert len(line.standin.requests("GET")) == 3


def test_fetch_missing_gives_failed_downloads_a_fresh_set_of_tries(line):
    line = line(JOB_MAX_ATTEMPTS="2")
    sid = line.comment(silence_wav(2), seconds=2)
    line.standin.failures[sid] = 2
    line.work()
    assert line.job("download", sid).state == "failed"
    line.cli("recordings", "fetch-missing")
    job = line.job("download", sid)
    assert (job.state, job.attempts) == ("done", 1)
    assert line.recording(sid).stored_at is not None


def test_transcribe_missing_does_not_wait_for_twilio(line):
    line = line()
    sids = [line.comment(silence_wav(3), seconds=3) for _ in range(2)]
    line.work()  # stored; transcription waits 15 minutes for Twilio's
    assert {line.job("transcribe", sid).state for sid in sids} == {"queued"}
    result = line.cli("recordings", "transcribe-missing")
    assert "2 comment(s) to transcribe." in result.output and "2 done, 0 failed" in result.output
    assert {line.transcripts(sid)["whisper"].reason for sid in sids} == {"no transcriber is set for en-US"}


def test_verify_finds_a_damaged_copy_and_refetch_repairs_it(line, settings):
    line = line()
    good, bad = line.comment(silence_wav(2), seconds=2), line.comment(silence_wav(3), seconds=3)
    line.work()
    line.cli("recordings", "verify")
    damaged = Path(settings["INSTANCE_DIR"], "recordings", line.recording(bad).storage_key)
    damaged.write_bytes(damaged.read_bytes()[:-100])
    result = line.cli("recordings", "verify", "--refetch", code=1)
    assert f"{bad}: {line.recording(bad).storage_key} does not match its checksum" in result.output
    assert good not in result.output and "1 of 2 stored recording(s) failed the check" in result.output
    line.work()
    assert "All 2 stored recording(s) match their checksums." in line.cli("recordings", "verify").output
    assert len(line.standin.requests("GET", bad)) == 2


def test_purge_deletes_old_audio_keeps_counts_and_transcripts_and_audits_it(line, settings):
    line = line()
    old, new = line.comment(silence_wav(2), seconds=2), line.comment(silence_wav(2), seconds=2)
    line.callers[old].transcription(old, text="Keep this, please.")
    line.work()
    with line.app.app_context():
        db.session.execute(
            text("UPDATE recordings SET created_at = :at WHERE recording_sid = :sid"),
            {"at": utcnow() - timedelta(days=40), "sid": old},
        )
        db.session.commit()
    counts = line.cli("counts", "show").output
    old_file = Path(settings["INSTANCE_DIR"], "recordings", line.recording(old).storage_key)
    assert (
        "1 recording(s) older than 30 days would be deleted"
        in line.cli("recordings", "purge", "--older-than", "30", "--dry-run").output
    )
    assert old_file.exists()
    result = line.cli("recordings", "purge", "--older-than", "30")
    assert "Deleted the audio of 1 recording(s) older than 30 days." in result.output
    assert not old_file.exists()
    row = line.recording(old)
    assert row.purged_at is not None and row.storage_key is None and row.checksum
    assert line.recording(new).storage_key and line.stored_bytes(new)
    assert line.transcripts(old)["twilio"].text == "Keep this, please."
    assert json.loads(line.cli("counts", "show").output) == json.loads(counts)
    with line.app.app_context():
        entries = db.session.scalars(select(AuditEntry)).all()
        assert [(e.action, e.target, e.actor_label) for e in entries] == [
            ("recording.purge", old, "system:flask recordings purge")
        ]
        assert entries[0].detail["older_than_days"] == 30
    assert "0 recording(s) to fetch." in line.cli("recordings", "fetch-missing").output
    assert "All 1 stored recording(s) match" in line.cli("recordings", "verify").output


def test_purge_can_drop_transcripts_and_twilio_copies(line):
    line = line(RETENTION_DAYS="7", RETENTION_KEEP_TRANSCRIPTS="false")
    sid = line.comment(silence_wav(2), seconds=2)
    line.callers[sid].transcription(sid, text="Delete me too.")
    line.work()
    with line.app.app_context():
        db.session.execute(text("UPDATE recordings SET created_at = :at"), {"at": utcnow() - timedelta(days=8)})
        db.session.commit()
    line.cli("recordings", "purge", "--also-twilio")
    assert line.transcripts(sid) == {}
    line.work()
    assert line.standin.deleted() == [sid]


def test_purge_needs_an_age(line):
    line = line()
    assert "give --older-than DAYS or set RETENTION_DAYS" in line.cli("recordings", "purge", code=2).output


def test_failed_jobs_are_listed_and_can_be_retried(line):
    line = line(JOB_MAX_ATTEMPTS="1")
    sid = line.comment(silence_wav(2), seconds=2)
    line.standin.failures[sid] = 1
    line.work()
    listing = line.cli("worker", "jobs").output
    assert "download       failed   1" in listing and "Twilio answered 500" in listing
    assert "1 job(s) queued again." in line.cli("worker", "retry", "--failed").output
    line.work()
    assert line.job("download", sid).state == "done"
    with line.app.app_context():
        assert db.session.scalar(select(Job.state).where(Job.kind == "download")) == "done"


def test_the_worker_writes_what_webhooks_spooled(line):
    """Facts a web process kept on this machine's disk while the database was away are written
    by the worker too, exactly once."""
    from facts.record import Fact
    from models.base import utcnow
    from models.tally import tally

    running = line()
    spool = write_path(running.app).spool
    now = utcnow()
    call = {"call_sid": "CA" + "9" * 32, "started_at": now, "caller_hash": None}
    facts = [
        Fact("call", {"values": call}),
        Fact("choice", {"call_sid": call["call_sid"], "step": 2, "kind": "topic", "at": now, "topic": "housing"}),
    ]
    spool.append(facts)
    spool.append(facts)  # the same webhook, retried while the database was still away
    running.work()
    assert spool.depth() == 0
    with running.app.app_context():
        counted = tally(db.session)
    housing = next(t for t in counted.topics if t.slug == "housing")
    assert (counted.calls, housing.calls) == (1, 1)
