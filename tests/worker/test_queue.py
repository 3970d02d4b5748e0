"""The job queue's rules, on the real database: one row per piece of work, one holder at a
time, a dead holder's job taken again when its lease runs out, retries, then failed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from models import Job, db, utcnow
from models.jobs import claim, enqueue, fail, finish, renew_lease


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


def test_work_is_queued_once_however_often_it_is_asked_for(session):
    later = utcnow() + timedelta(minutes=15)
    enqueue(session, "transcribe", "RE1", max_attempts=3, run_after=later)
    enqueue(session, "transcribe", "RE1", max_attempts=3, run_after=later + timedelta(minutes=5))
    session.commit()
    job = session.query(Job).one()
    assert (job.state, job.run_after) == ("queued", later)  # asking later never delays it
    enqueue(session, "transcribe", "RE1", max_attempts=3)  # asking for it now brings it forward
    session.commit()
    session.refresh(job)
    assert job.run_after <= utcnow() and session.query(Job).count() == 1


def test_one_job_one_holder_and_done_work_is_not_redone_unless_asked_again(session):
    enqueue(session, "download", "RE1", max_attempts=3)
    session.commit()
    first = claim(session, "w1", 60)
    session.commit()
    assert (first.key, first.attempt) == ("RE1", 1)
    assert claim(session, "w2", 60) is None  # held by w1
    assert finish(session, first.id, "w1")
    enqueue(session, "download", "RE1", max_attempts=3)
    session.commit()
    assert claim(session, "w2", 60) is None  # done stays done
    enqueue(session, "download", "RE1", max_attempts=5, again=True, options={"refetch": True})
    session.commit()
    again = claim(session, "w2", 60)
    assert (again.attempt, again.max_attempts, again.options) == (1, 5, {"refetch": True})


def test_a_dead_workers_job_is_taken_again_when_its_lease_runs_out(session):
    enqueue(session, "download", "RE1", max_attempts=3)
    session.commit()
    dead = claim(session, "dead", 60)
    session.commit()
    assert claim(session, "alive", 60) is None
    session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))  # 60 s later, no heartbeat
    taken = claim(session, "alive", 60)
    session.commit()
    assert (taken.id, taken.attempt) == (dead.id, 2)
    assert not renew_lease(session, dead.id, "dead", 60)  # the dead worker's writes are fenced off
    assert not finish(session, dead.id, "dead")
    assert renew_lease(session, taken.id, "alive", 60) and finish(session, taken.id, "alive")
    session.commit()
    assert session.get(Job, taken.id).state == "done"


def test_a_failed_try_waits_its_backoff_and_the_last_one_ends_failed(session):
    enqueue(session, "download", "RE1", max_attempts=2)
    session.commit()
    job = claim(session, "w", 60)
    fail(session, job.id, "w", "Twilio answered 500", retry_in=30)
    session.commit()
    row = session.get(Job, job.id)
    assert (row.state, row.last_error) == ("queued", "Twilio answered 500")
    assert 20 <= (row.run_after - utcnow()).total_seconds() <= 30
    assert claim(session, "w", 60) is None  # not due yet
    row.run_after = utcnow()
    session.commit()
    job = claim(session, "w", 60)
    assert job.last_try
    fail(session, job.id, "w", "Twilio answered 500 again", retry_in=None)
    session.commit()
    session.refresh(row)
    assert (row.state, row.attempts, row.finished_at is not None) == ("failed", 2, True)


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("TRANSCRIBERS", "es-US=google", "TRANSCRIBERS: 'es-US=google' must be LANGUAGE=whisper|none"),
        ("RECORDINGS_STORAGE", "s3", "S3_BUCKET is not set"),
        ("JOB_MAX_ATTEMPTS", "many", "JOB_MAX_ATTEMPTS must be a whole number"),
        ("DELETE_FROM_TWILIO", "maybe", "DELETE_FROM_TWILIO must be true or false"),
    ],
)
def test_a_wrong_worker_setting_is_named(name, value, says):
    from config import SettingsError, load_settings

    with pytest.raises(SettingsError, match=re.escape(says)):
        load_settings(
            {"APP_ENV": "test", "SECRET_KEY": "s", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", name: value}
        )
