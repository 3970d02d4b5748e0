"""`flask worker` runs and inspects the job queue; `flask recordings` back-fills, repairs and
applies the retention rule."""

from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import delete, func, select, update

from models import Job, Recording, Transcription, db, utcnow
from models.audit import audit
from models.holds import LegalHold, destroy_released_originals, holds_covering, refusal
from models.jobs import Claimed
from models.recordings import recording_for_reference
from storage import checksum, storage_for

from . import prompts, recordings, transcripts  # noqa: F401  (registers the job kinds)
from .runner import KINDS, Worker, queue
from .work import missing_audio, missing_transcript, sweep

worker_cli = AppGroup("worker", help="The background worker and its job queue.")
recordings_cli = AppGroup("recordings", help="Our copies of the recordings: back-fill, repair, retention.")


@worker_cli.command("run")
@click.option("--burst", is_flag=True, help="Stop when no job is due instead of waiting for more.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)), help="Only jobs of this kind.")
def worker_run(burst: bool, kinds: tuple[str, ...]) -> None:
    """Run jobs one at a time until stopped (SIGTERM or Ctrl-C finish the current job first)."""
    app = current_app._get_current_object()
    Worker(app, kinds or None).run(burst=burst, sweep=lambda: sweep(db.session, app.config))


@worker_cli.command("jobs")
@click.option("--state", type=click.Choice(["queued", "running", "done", "failed"]), help="Only jobs in this state.")
@click.option("--limit", default=50, show_default=True)
def worker_jobs(state: str | None, limit: int) -> None:
    """How many jobs are in each state, then the latest ones (with their last error)."""
    counts = db.session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)).all()
    for kind, job_state, n in sorted(counts):
        click.echo(f"{kind:14} {job_state:8} {n}")
    query = select(Job).order_by(Job.updated_at.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    for job in db.session.scalars(query):
        error = f"  {job.last_error}" if job.last_error else ""
        click.echo(
            f"#{job.id} {job.kind} {job.key} {job.state} try {job.attempts}/{job.max_attempts} "
            f"next {job.run_after:%Y-%m-%d %H:%M:%S}{error}"
        )


@worker_cli.command("retry")
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed job.")
def worker_retry(job_ids: tuple[int, ...], all_failed: bool) -> None:
    """Queue failed jobs again, with a fresh set of tries."""
    query = select(Job).where(Job.state == "failed")
    if not all_failed:
        if not job_ids:
            raise click.UsageError("name the jobs to retry, or pass --failed")
        query = query.where(Job.id.in_(job_ids))
    jobs = list(db.session.scalars(query))
    for job in jobs:
        queue(db.session, current_app.config, job.kind, job.key, options=job.options, again=True)
    db.session.commit()
    click.echo(f"{len(jobs)} job(s) queued again.")


def work_through(kind: str, keys: list[str], label: str) -> None:
    """Run the queued `kind` jobs here, with a progress bar over `keys`; a worker running
    elsewhere shares them. Jobs left waiting for a retry are the worker's to finish."""
    pending, outcomes = set(keys), Counter()

    with click.progressbar(length=len(pending), label=label, show_pos=True) as bar:

        def finished(claimed: Claimed, outcome: str) -> None:
            if claimed.key in pending and outcome in ("done", "failed"):
                pending.discard(claimed.key)
                outcomes[outcome] += 1
                bar.update(1)

        worker = Worker(current_app._get_current_object(), (kind,), name=f"cli:{socket.gethostname()}:{os.getpid()}")
        worker.run(burst=True, on_finished=finished)
    click.echo(
        f"{outcomes['done']} done, {outcomes['failed']} failed, "
        f"{len(pending)} left to the worker (waiting for a retry, or taken by another worker)."
    )


def _queue_all(kind: str, keys: list[str], **kwargs) -> None:
    for key in keys:
        queue(db.session, current_app.config, kind, key, again=True, **kwargs)
    db.session.commit()


@recordings_cli.command("fetch-missing")
@click.option("--queue-only", is_flag=True, help="Leave the work to the worker.")
def fetch_missing(queue_only: bool) -> None:
    """Fetch every recording Twilio has finished that is not stored yet."""
    sids = missing_audio(db.session)
    _queue_all("download", sids)
    click.echo(f"{len(sids)} recording(s) to fetch.")
    if sids and not queue_only:
        work_through("download", sids, "Fetching")


@recordings_cli.command("transcribe-missing")
@click.option("--queue-only", is_flag=True, help="Leave the work to the worker.")
def transcribe_missing(queue_only: bool) -> None:
    """Transcribe every stored comment that has no transcript, now (no wait for Twilio's)."""
    sids = [row.recording_sid for row in missing_transcript(db.session)]
    _queue_all("transcribe", sids)
    click.echo(f"{len(sids)} comment(s) to transcribe.")
    if sids and not queue_only:
        work_through("transcribe", sids, "Transcribing")


@recordings_cli.command("retranscribe")
@click.argument("comments", nargs=-1, required=True)
@click.option("--language", help="Transcribe as this language (e.g. es-US) instead of the caller's choice.")
@click.option("--queue-only", is_flag=True, help="Leave the work to the worker.")
def retranscribe(comments: tuple[str, ...], language: str | None, queue_only: bool) -> None:
    """Transcribe the chosen COMMENTS again (reference numbers or recording sids) with the
    offline transcriber, replacing its earlier transcript."""
    sids = []
    for value in comments:
        row = recording_for_reference(db.session, value)
        if row is None:
            raise click.BadParameter(f"no comment {value!r}", param_hint="COMMENTS")
        holds = holds_covering(db.session, row)
        if holds:  # a new transcript would replace the offline one the hold keeps
            raise click.ClickException(refusal(holds, f"Comment {row.reference} cannot be transcribed again"))
        sids.append(row.recording_sid)
    _queue_all("transcribe", sids, options={"force": True, **({"language": language} if language else {})})
    click.echo(f"{len(sids)} comment(s) to transcribe again.")
    if not queue_only:
        work_through("transcribe", sids, "Transcribing")


@recordings_cli.command("verify")
@click.option("--refetch", is_flag=True, help="Queue a new fetch from Twilio for each bad copy.")
def verify(refetch: bool) -> None:
    """Read every stored copy back and compare it with its SHA-256. Exits 1 on any difference."""
    store = storage_for(current_app.config)
    rows = list(
        db.session.scalars(
            select(Recording)
            .where(Recording.stored_at.is_not(None), Recording.purged_at.is_(None))
            .order_by(Recording.id)
        )
    )
    bad = []
    with click.progressbar(rows, label="Verifying", show_pos=True) as bar:
        for row in bar:
            if not store.exists(row.storage_key):
                bad.append((row.recording_sid, f"{row.storage_key} is missing"))
                continue
            with store.open(row.storage_key) as stored:
                if checksum(stored.read()) != row.checksum:
                    bad.append((row.recording_sid, f"{row.storage_key} does not match its checksum"))
    for sid, problem in bad:
        click.echo(f"{sid}: {problem}")
    if refetch and bad:
        _queue_all("download", [sid for sid, _ in bad], options={"refetch": True})
        click.echo(f"{len(bad)} recording(s) queued to be fetched again.")
    if bad:
        raise click.ClickException(f"{len(bad)} of {len(rows)} stored recording(s) failed the check")
    click.echo(f"All {len(rows)} stored recording(s) match their checksums.")


@recordings_cli.command("purge")
@click.option("--older-than", "days", type=int, help="Age in days (default: RETENTION_DAYS).")
@click.option(
    "--keep-transcripts/--drop-transcripts",
    default=None,
    help="Keep the transcripts (default: RETENTION_KEEP_TRANSCRIPTS).",
)
@click.option("--also-twilio", is_flag=True, help="Delete Twilio's copies too.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
def purge(days: int | None, keep_transcripts: bool | None, also_twilio: bool, dry_run: bool) -> None:
    """Delete the audio of comments older than the retention age. The call, the comment's row
    (so every count) and, by setting, its transcript are kept; each deletion is audited.
    Comments under a legal hold are kept whole, and the output names the holds."""
    cfg = current_app.config
    days = cfg["RETENTION_DAYS"] if days is None else days
    if not days or days < 1:
        raise click.UsageError("give --older-than DAYS or set RETENTION_DAYS")
    keep = cfg["RETENTION_KEEP_TRANSCRIPTS"] if keep_transcripts is None else keep_transcripts
    cutoff = utcnow() - timedelta(days=days)
    rows = list(
        db.session.scalars(
            select(Recording).where(Recording.created_at < cutoff, Recording.purged_at.is_(None)).order_by(Recording.id)
        )
    )
    held: dict[int, tuple[LegalHold, int]] = {}
    if dry_run:
        doomed = [row for row in rows if not note_held(row, held)]
        click.echo(f"{len(doomed)} recording(s) older than {days} days would be deleted (dry run).")
        say_held(held, "would be kept")
        return
    store = storage_for(cfg)
    deleted = 0
    with click.progressbar(rows, label="Deleting", show_pos=True) as bar:
        for row in bar:
            if note_held(row, held):  # checked as each one is deleted: a hold placed meanwhile counts
                continue
            purge_recording(row, store, keep_transcripts=keep, days=days, also_twilio=also_twilio)
            deleted += 1
    destroy_released_originals(db.session, "system:flask recordings purge")
    db.session.commit()
    click.echo(
        f"Deleted the audio of {deleted} recording(s) older than {days} days{'' if keep else ' and their transcripts'}."
    )
    say_held(held, "were kept")


def note_held(row: Recording, held: dict[int, tuple[LegalHold, int]]) -> bool:
    """Whether a legal hold covers this recording; if so, count it under the first such hold."""
    holds = holds_covering(db.session, row)
    if holds:
        hold, n = held.get(holds[0].id, (holds[0], 0))
        held[hold.id] = (hold, n + 1)
    return bool(holds)


def say_held(held: dict[int, tuple[LegalHold, int]], verb: str) -> None:
    if not held:
        return
    total = sum(n for _, n in held.values())
    click.echo(f"{total} recording(s) under legal hold {verb} (audio and transcripts):")
    for hold, n in held.values():
        click.echo(f"  {n} under {hold.describe()}")


def purge_recording(row: Recording, store, *, keep_transcripts: bool, days: int, also_twilio: bool) -> None:
    session, now = db.session, utcnow()
    if row.storage_key:
        store.delete(row.storage_key)
    session.execute(update(Recording).where(Recording.id == row.id).values(purged_at=now, storage_key=None))
    dropped = 0
    if not keep_transcripts:
        gone = delete(Transcription).where(Transcription.recording_sid == row.recording_sid)
        dropped = session.execute(gone).rowcount
    if also_twilio:
        queue(session, current_app.config, "forget_twilio", row.recording_sid, again=True)
    audit(
        session,
        "system:flask recordings purge",
        "recording.purge",
        row.recording_sid,
        {
            "older_than_days": days,
            "storage_key": row.storage_key,
            "checksum": row.checksum,
            "transcripts_deleted": dropped,
            "twilio": also_twilio,
        },
    )
    session.commit()
