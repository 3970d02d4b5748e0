"""Real worker processes: one killed in the middle of a job, and two sharing 200 comments."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from models import Job, Recording, Transcription, db

from .conftest import eventually
from .sound import silence_wav


def test_a_worker_killed_mid_job_leaves_it_to_run_again_and_its_effects_land_once(line, workers, settings):
    line = line(JOB_LEASE_SECONDS="2")
    wav = silence_wav(5)
    sid = line.comment(wav, seconds=5)
    line.standin.slow[sid] = 3  # the worker will be waiting on Twilio when it is killed
    first = workers()
    eventually(lambda: ("GET", sid) in line.standin.arrived, what="the first worker's request")
    first.kill()
    held = line.job("download", sid)
    assert (held.state, held.attempts) == ("running", 1)  # held by a dead worker, until its lease ends
    assert line.recording(sid).stored_at is None
    line.standin.slow[sid] = 0
    second = workers()
    eventually(lambda: line.job("download", sid).state == "done", what="the job to run again")
    assert second.stop() == 0
    job = line.job("download", sid)
    assert (job.attempts, job.worker) == (2, second.runs()[0]["worker"])
    assert [e for e in line.standin.arrived if e == ("GET", sid)] == [("GET", sid)] * 2
    assert [r["event"] for r in first.runs()] == ["start"]  # killed before it could finish
    assert [r["event"] for r in second.runs()] == ["start", "end"]
    files = [p for p in Path(settings["INSTANCE_DIR"], "recordings").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{sid}.wav"]  # stored once, nothing half-written left
    assert files[0].read_bytes() == wav
    row = line.recording(sid)
    assert row.checksum == hashlib.sha256(wav).hexdigest() and row.size_bytes == len(wav)


def test_two_workers_share_two_hundred_comments_and_every_effect_lands_once(line, workers, settings):
    line = line(JOB_LEASE_SECONDS="30")
    wav = silence_wav(1)
    sids = [line.comment(wav, seconds=1) for _ in range(200)]
    pair = [workers(), workers()]

    def all_finished():
        with line.app.app_context():
            unfinished = Job.state.in_(("queued", "running"))
            open_jobs = db.session.scalar(select(func.count()).select_from(Job).where(unfinished))
            total = db.session.scalar(select(func.count()).select_from(Job))
            db.session.rollback()
        return open_jobs == 0 and total == 400  # a download, then a transcription, per comment

    eventually(all_finished, timeout=180, every=0.2, what="400 jobs to finish")
    assert [worker.stop() for worker in pair] == [0, 0]

    starts = [run for worker in pair for run in worker.runs() if run["event"] == "start"]
    per_job = Counter((run["kind"], run["key"]) for run in starts)
    assert len(per_job) == 400 and set(per_job.values()) == {1}  # no job ran twice
    by_worker = Counter(run["worker"] for run in starts)
    assert len(by_worker) == 2 and min(by_worker.values()) > 0, by_worker  # both took some
    gets = Counter(sid for method, sid in line.standin.arrived if method == "GET")
    assert gets == Counter({sid: 1 for sid in sids})
    files = [p for p in Path(settings["INSTANCE_DIR"], "recordings").rglob("*") if p.is_file()]
    assert sorted(p.stem for p in files) == sorted(sids)
    with line.app.app_context():
        assert db.session.scalar(select(func.count()).where(Recording.stored_at.is_not(None))) == 200
        assert set(db.session.scalars(select(Job.attempts))) == {1}
        reasons = db.session.scalars(select(Transcription.reason).where(Transcription.status == "failed")).all()
        assert reasons == ["no transcriber is set for en-US"] * 200


def test_a_job_longer_than_its_lease_is_not_taken_by_another_worker(line, workers):
    line = line(JOB_LEASE_SECONDS="2", MEDIA_TIMEOUT_SECONDS="30")
    sid = line.comment(silence_wav(2), seconds=2)
    line.standin.slow[sid] = 6  # three leases long: the heartbeat must keep it
    pair = [workers(), workers()]
    eventually(lambda: line.job("download", sid).state == "done", timeout=60, what="the slow download")
    time.sleep(2.5)  # a lease's length more: time for a second worker to take it, were it free
    assert [worker.stop() for worker in pair] == [0, 0]
    starts = [run for worker in pair for run in worker.runs() if run["event"] == "start"]
    assert [(run["kind"], run["key"]) for run in starts if run["kind"] == "download"] == [("download", sid)]
    assert [e for e in line.standin.arrived if e == ("GET", sid)] == [("GET", sid)]
    assert line.job("download", sid).attempts == 1


def test_a_worker_killed_while_transcribing_leaves_one_transcript_after_the_rerun(line, workers, tmp_path):
    from .conftest import whisper_model_dir
    from .sound import speech_wav

    line = line(
        JOB_LEASE_SECONDS="2",
        TRANSCRIBERS="*=whisper",
        WHISPER_MODEL_DIR=whisper_model_dir(),
        TWILIO_TRANSCRIPT_GRACE_SECONDS="0",
    )
    paragraph = (
        "Good evening. I live on Oak Street near the river and I am calling about the proposed city "
        "budget. I think the library needs more money, because the children use it every afternoon."
    )
    sid = line.comment(speech_wav(tmp_path, "paragraph", paragraph, voice="en-us", rate=160), language="1")
    line.work("--kind", "download")  # stored; the transcription is queued
    first = workers()
    eventually(lambda: any(r["kind"] == "transcribe" for r in first.runs()), what="the transcription to start")
    time.sleep(0.3)  # loading the model alone takes longer
    first.kill()
    assert line.transcripts(sid) == {}
    second = workers()
    eventually(lambda: line.job("transcribe", sid).state == "done", timeout=120, what="the rerun")
    second.stop()
    assert line.job("transcribe", sid).attempts == 2
    found = line.transcripts(sid)
    assert set(found) == {"whisper"} and found["whisper"].status == "completed"
    assert {"library", "budget"} <= set(found["whisper"].text.lower().replace(",", " ").replace(".", " ").split())


def test_the_procfile_web_and_worker_processes_together(line, served_line, workers):
    """gunicorn answers Twilio at once while Twilio's media is slow; the worker fetches it."""
    import requests

    line = line(MEDIA_TIMEOUT_SECONDS="30")
    web = served_line(workers=1, threads=2)

    def over_http(url, params, headers):
        return requests.post(url, data=params, headers=headers, timeout=10)

    twilio = type(line.twilio)(over_http, base=web.base)  # the same signing stand-in, over real HTTP
    call = twilio.call()
    call.dial()
    call.press("2")
    call.press("3")
    _, sid = call.speak(seconds=3)
    wav = silence_wav(3)
    line.standin.add(sid, wav)
    line.standin.slow[sid] = 6
    worker = workers()
    started = time.monotonic()
    reply = call.recording_status(sid, seconds=3)
    assert reply.root.tag == "Response" and time.monotonic() - started < 4  # never waits on Twilio

    def stored():  # the recording's row is written behind the reply
        recording = line.recording(sid)
        return recording and recording.stored_at

    eventually(stored, timeout=60, what="the worker to store it")
    eventually(lambda: line.transcripts(sid), timeout=60, what="the worker to settle the transcript")
    assert worker.stop() == 0
    assert line.stored_bytes(sid) == wav
    assert line.transcripts(sid)["whisper"].reason == "no transcriber is set for es-US"
