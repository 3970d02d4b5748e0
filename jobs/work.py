"""What background work is outstanding, found from the facts themselves: the back-fill
commands and the worker's periodic sweep both start here, so a lost enqueue or a status
callback that never came still ends with the audio stored and a transcript (or a reason)."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, exists, or_, select

from models import Recording, Transcription, utcnow
from models.audit import audit
from models.callbacks import purge_numbers
from models.holds import destroy_released_originals
from models.jobs import Job
from models.prompts import takes_to_fetch
from models.recordings import NOT_A_COMMENT
from models.tally import keep_all_time

from .runner import queue
from .transcripts import plan_transcription

QUIET_MINUTES = 10  # a recording with no status callback after this long is fetched anyway


def _no_job(kind: str):
    return ~exists().where(Job.kind == kind, Job.key == Recording.recording_sid)


def missing_audio(session, *, unqueued_only: bool = False) -> list[str]:
    """Comments whose audio is not stored yet (and was not deleted under retention)."""
    quiet_since = utcnow() - timedelta(minutes=QUIET_MINUTES)
    conditions = [
        Recording.stored_at.is_(None),
        Recording.purged_at.is_(None),
        or_(
            Recording.status == "completed",
            and_(Recording.status.is_(None), Recording.media_url.is_not(None), Recording.created_at < quiet_since),
            and_(Recording.status.not_in(NOT_A_COMMENT), Recording.created_at < quiet_since),
        ),
    ]
    if unqueued_only:
        conditions.append(_no_job("download"))
    return list(session.scalars(select(Recording.recording_sid).where(*conditions).order_by(Recording.id)))


def missing_transcript(session, *, unqueued_only: bool = False) -> list[Recording]:
    """Stored comments with no transcript."""
    done = exists().where(Transcription.recording_sid == Recording.recording_sid, Transcription.status == "completed")
    conditions = [Recording.stored_at.is_not(None), Recording.purged_at.is_(None), ~done]
    if unqueued_only:
        conditions.append(_no_job("transcribe"))
    return list(session.scalars(select(Recording).where(*conditions).order_by(Recording.id)))


def sweep(session, config) -> int:
    """Queue the work no job exists for yet, and make the receipts of days that have ended
    (receipts/chain.py `close_due`); return how many jobs and receipts were made. Also
    destroys the kept originals of redacted transcripts whose legal hold has expired, and
    erases call-back numbers kept longer than CALLBACK_KEEP_DAYS, and counts all time so that
    the figures of past days the counts keep are kept before a request asks for them
    (models/tally.py `keep_all_time`)."""
    destroy_released_originals(session, "system:worker")
    sids = missing_audio(session, unqueued_only=True)
    for sid in sids:
        queue(session, config, "download", sid)
    rows = missing_transcript(session, unqueued_only=True)
    for row in rows:
        plan_transcription(session, config, row)
    erased = purge_numbers(session, config["CALLBACK_KEEP_DAYS"])
    if erased:  # call-back numbers past CALLBACK_KEEP_DAYS (models/callbacks.py)
        audit(session, "system:worker", "callback_purge", "callbacks", erased=erased)
    takes = takes_to_fetch(session, utcnow() - timedelta(minutes=QUIET_MINUTES))
    for sid in takes:  # queued once: a take already fetched is no longer waiting
        queue(session, config, "fetch_prompt", sid)
    session.commit()
    # Imported here: receipts registers its publish job with this package (jobs.runner).
    from receipts.chain import close_due
    from receipts.publish import queue_publication

    made = close_due(session, config, after_made=lambda s, receipt: queue_publication(s, config, receipt))
    keep_all_time(session, current_app)
    return len(sids) + len(rows) + len(takes) + len(made)
