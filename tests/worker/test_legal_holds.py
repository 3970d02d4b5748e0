"""Legal holds: what a hold covers outlives the retention rule and every deletion, redaction
hides a held original without destroying it, and releasing the hold gives the normal rules
back. Comments are left by calls played as Twilio plays them, their audio fetched by the
worker from the Twilio stand-in."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import timedelta

from sqlalchemy import select, text

from models import AuditEntry, HeldTranscript, Transcription, db, utcnow

from .sound import silence_wav

SECRET = "My card number is four two four two"


def comment_on(line, digit: str, transcript: str | None = None) -> str:
    """A caller leaves a comment on the topic with this key (no position asked); returns its sid."""
    wav = silence_wav(2)
    call = line.twilio.call()
    call.dial()
    call.press("1")
    call.press(digit)
    _, sid = call.speak(seconds=2)
    line.standin.add(sid, wav)
    call.recording_status(sid, seconds=2)
    if transcript:
        call.transcription(sid, transcript)
    call.hang_up()
    line.callers[sid] = call
    return sid


def age(line, sid: str, days: int) -> None:
    with line.app.app_context():
        db.session.execute(
            text("UPDATE recordings SET created_at = :at WHERE recording_sid = :sid"),
            {"at": utcnow() - timedelta(days=days), "sid": sid},
        )
        db.session.commit()


def actions(line, prefix: str) -> list[tuple[str, str, str]]:
    with line.app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action.like(f"{prefix}%"))).all()
        return [(e.action, e.target, e.actor_label) for e in entries]


def local_day(line, sid: str) -> str:
    """The day a comment was recorded, in the line's zone (UTC in the tests)."""
    return line.recording(sid).created_at.date().isoformat()


def test_purge_keeps_what_each_kind_of_hold_covers_and_says_why(line, settings):
    line = line()
    named, in_window, on_topic, free = (comment_on(line, d) for d in ("3", "3", "9", "3"))
    line.work()
    for days, sid in zip((40, 50, 60, 70), (named, in_window, on_topic, free), strict=True):
        age(line, sid, days)
    ref = line.recording(named).reference
    placed = [
        line.cli("holds", "add", "--reason", "Smith v. County", "--by", "ann@example.org", "--comment", ref),
        line.cli("holds", "add", "--reason", "Records request 12", "--by", "bo", "--from", local_day(line, in_window),
                 "--to", local_day(line, in_window)),
        line.cli("holds", "add", "--reason", "Audit of the general line", "--by", "cy", "--topic", "general"),
    ]  # fmt: skip
    assert [p.output.splitlines()[0] for p in placed] == [f"Placed legal hold #{n}." for n in (1, 2, 3)]
    assert f"covers comments {ref} (1 comment(s) now)" in placed[0].output
    listed = line.cli("holds", "list").output
    assert "#1 in force: Smith v. County" in listed and "placed" in listed and "by cli:ann@example.org" in listed
    assert "covers topics general (1 comment(s) now)" in listed

    dry = line.cli("recordings", "purge", "--older-than", "30", "--dry-run").output
    assert "1 recording(s) older than 30 days would be deleted (dry run)." in dry
    assert "3 recording(s) under legal hold would be kept" in dry
    result = line.cli("recordings", "purge", "--older-than", "30", "--drop-transcripts").output
    assert "Deleted the audio of 1 recording(s) older than 30 days and their transcripts." in result
    assert "3 recording(s) under legal hold were kept (audio and transcripts):" in result
    assert '1 under legal hold #1 ("Smith v. County", placed by cli:ann@example.org)' in result
    assert '1 under legal hold #2 ("Records request 12", placed by cli:bo)' in result
    assert '1 under legal hold #3 ("Audit of the general line", placed by cli:cy)' in result
    for sid in (named, in_window, on_topic):
        assert line.recording(sid).purged_at is None and line.stored_bytes(sid)
    assert line.recording(free).purged_at is not None

    for n in (1, 2, 3):
        assert line.cli("holds", "release", str(n), "--by", "dee", "--note", "case closed").output.startswith(
            f"Released legal hold #{n}."
        )
    assert line.cli("holds", "list").output == "No legal hold is in force.\n"
    everything = line.cli("holds", "list", "--all").output
    assert everything.count(" released: ") == 3 and "by cli:dee (case closed)" in everything
    again = line.cli("recordings", "purge", "--older-than", "30").output
    assert "Deleted the audio of 3 recording(s)" in again and "legal hold" not in again
    assert all(line.recording(sid).purged_at is not None for sid in (named, in_window, on_topic))
    assert [a for a, _, _ in actions(line, "hold.")] == ["hold.place"] * 3 + ["hold.release"] * 3
    assert ("hold.place", "hold 1", "cli:ann@example.org") in actions(line, "hold.")


def test_console_refuses_deletion_and_redaction_keeps_the_original_until_release(line, settings, request):
    line = line()
    sid = comment_on(line, "3", transcript=SECRET)
    line.work()
    ref = line.recording(sid).reference
    admin = request.getfixturevalue("sign_in")("admin")
    api = request.getfixturevalue("api")
    admin.get("/admin/holds")
    placed = admin.post("/admin/holds", {"reason": "Smith v. County", "comments": f"#{ref}"})
    assert placed.status_code == 302
    page = admin.get("/admin/holds").get_data(as_text=True)
    assert "Placed legal hold #1: comments " + ref in page and "in force" in page

    comment_page = admin.get(f"/comments/{ref}").get_data(as_text=True)
    assert "Under legal hold #1 (Smith v. County, placed by admin@example.org)" in comment_page
    assert 'value="audio" required disabled' in comment_page and 'value="comment" required disabled' in comment_page
    for what, refused in (("audio", "The audio cannot be removed"), ("comment", "The comment cannot be deleted")):
        response = admin.post(f"/comments/{ref}/remove", {"what": what, "reason": "caller asked"})
        assert response.status_code == 302
        shown = admin.get(f"/comments/{ref}").get_data(as_text=True)
        assert (
            f"{refused}: this comment is under legal hold #1 (&#34;Smith v. County&#34;, placed by admin@example.org)."
            " Release the hold first." in shown
        )
    assert line.stored_bytes(sid) and line.recording(sid).storage_key
    assert [a for a, _, _ in actions(line, "hold.refused")] == ["hold.refused", "hold.refused"]

    admin.post(f"/comments/{ref}/remove", {"what": "transcript", "reason": "A card number"})
    shown = admin.get(f"/comments/{ref}").get_data(as_text=True)
    assert "Its original is kept out of sight under legal hold #1" in shown and SECRET not in shown
    assert SECRET not in admin.get("/inbox").get_data(as_text=True)
    assert SECRET not in api("/api/v1/comments").get_data(as_text=True)
    day = local_day(line, sid)
    bundle = zipfile.ZipFile(io.BytesIO(admin.post("/export", {"from": day, "to": day, "topic": ["housing"]}).data))
    rows = list(csv.DictReader(io.StringIO(bundle.read("comments.csv").decode())))
    assert [row["transcript"] for row in rows] == ["[removed]"]
    with line.app.app_context():
        assert [t.text for t in db.session.scalars(select(HeldTranscript))] == [SECRET]
        assert SECRET not in [t.text for t in db.session.scalars(select(Transcription))]

    age(line, sid, 40)
    assert "1 recording(s) under legal hold were kept" in line.cli("recordings", "purge", "--older-than", "30").output
    released = admin.post("/admin/holds/1/release", {"note": "settled"})
    assert released.status_code == 302
    page = admin.get("/admin/holds").get_data(as_text=True)
    assert "Released legal hold #1. 1 kept original transcript(s) were destroyed" in page
    assert re.search(r"released .* by admin@example.org: settled", page)
    with line.app.app_context():
        assert db.session.scalars(select(HeldTranscript)).all() == []
    assert ("hold.original_destroyed", sid, "admin@example.org") in actions(line, "hold.")
    assert "Deleted the audio of 1 recording(s)" in line.cli("recordings", "purge", "--older-than", "30").output
    assert line.recording(sid).purged_at is not None
    assert admin.post(f"/comments/{ref}/remove", {"what": "comment", "reason": "caller asked"}).status_code == 302
    assert f"Comment {ref} was deleted." in admin.get("/inbox").get_data(as_text=True)


def test_an_expired_hold_lets_the_retention_rule_and_the_redaction_take_effect(line, request):
    line = line()
    sid = comment_on(line, "3", transcript=SECRET)
    line.work()
    ref = line.recording(sid).reference
    hold = ("--reason", "Preservation letter", "--by", "ann", "--comment", ref, "--expires", "9999-01-01")
    line.cli("holds", "add", *hold)
    admin = request.getfixturevalue("sign_in")("admin")
    admin.get(f"/comments/{ref}")
    admin.post(f"/comments/{ref}/remove", {"what": "transcript", "reason": "A card number"})
    age(line, sid, 40)
    with line.app.app_context():  # the hold's last day has passed
        db.session.execute(text("UPDATE legal_holds SET expires_at = :at"), {"at": utcnow() - timedelta(minutes=1)})
        db.session.commit()
    listed = line.cli("holds", "list", "--all").output
    assert "#1 expired: Preservation letter" in listed and "; expired after " in listed
    assert line.cli("holds", "list").output == "No legal hold is in force.\n"
    result = line.cli("recordings", "purge", "--older-than", "30").output
    assert "Deleted the audio of 1 recording(s)" in result
    with line.app.app_context():
        assert db.session.scalars(select(HeldTranscript)).all() == []


def test_twilios_copy_is_kept_when_it_is_the_last_one_under_a_hold(line):
    line = line()
    sid = comment_on(line, "3")
    line.work()
    age(line, sid, 40)
    line.cli("recordings", "purge", "--older-than", "30", "--also-twilio")  # queues the deletion at Twilio
    line.cli("holds", "add", "--reason", "Smith v. County", "--by", "ann", "--comment", line.recording(sid).reference)
    line.work()
    assert line.standin.deleted() == []
    job = line.job("forget_twilio", sid)
    assert job.state == "failed"
    assert job.last_error.startswith("Twilio's copy is the only one and cannot be deleted: this comment is under")


def test_retranscribing_a_held_comment_is_refused(line):
    line = line()
    sid = comment_on(line, "3")
    line.work()
    ref = line.recording(sid).reference
    line.cli("holds", "add", "--reason", "Smith v. County", "--by", "ann", "--comment", ref)
    result = line.cli("recordings", "retranscribe", ref, code=1)
    assert f"Comment {ref} cannot be transcribed again: this comment is under legal hold #1" in result.output


def test_a_transcript_arriving_after_a_held_redaction_keeps_its_original_out_of_sight(line, request):
    """The transcript staff removed had not come yet: when Twilio's callback brings it (twice,
    as a retry does), nothing shows it, and its original is kept under the hold, once, until
    the hold ends."""
    line = line()
    sid = comment_on(line, "3")
    line.work()
    ref = line.recording(sid).reference
    admin = request.getfixturevalue("sign_in")("admin")
    admin.get("/admin/holds")
    assert admin.post("/admin/holds", {"reason": "Smith v. County", "comments": f"#{ref}"}).status_code == 302
    admin.get(f"/comments/{ref}")
    assert admin.post(f"/comments/{ref}/remove", {"what": "transcript", "reason": "caller asked"}).status_code == 302

    for _ in range(2):
        line.callers[sid].transcription(sid, SECRET)
    assert SECRET not in admin.get(f"/comments/{ref}").get_data(as_text=True)
    assert SECRET not in request.getfixturevalue("api")("/api/v1/comments").get_data(as_text=True)
    with line.app.app_context():
        assert SECRET not in [t.text for t in db.session.scalars(select(Transcription))]
        kept = db.session.scalars(select(HeldTranscript)).all()
        assert [(k.recording_sid, k.source, k.text) for k in kept] == [(sid, "twilio", SECRET)]

    assert admin.post("/admin/holds/1/release", {"note": "settled"}).status_code == 302
    with line.app.app_context():
        assert db.session.scalars(select(HeldTranscript)).all() == []
