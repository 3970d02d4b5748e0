"""Redaction is a promise: once staff remove a comment's transcript (or the whole comment),
no transcript that arrives later, from any source, shows again anywhere staff or the API
can look: the inbox, its search, the comment's page, the JSON API, the export."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest

from facts import write_path
from facts.writer import note_transcription
from models import db, utcnow

from .conftest import ACCOUNT, recording_url
from .console_support import leave_comment, wav_bytes

SECRET = "My card number is four two four two"


def twilio_transcribes(twilio, call, sid: str) -> None:
    """Twilio's transcription callback, with only the parameters Twilio sends."""
    twilio.post(
        "/twilio/transcription",
        {
            "AccountSid": ACCOUNT,
            "CallSid": call.sid,
            "RecordingSid": sid,
            "RecordingUrl": recording_url(sid),
            "TranscriptionSid": "TR" + sid[2:],
            "TranscriptionText": SECRET,
            "TranscriptionStatus": "completed",
            "TranscriptionUrl": recording_url(sid) + "/Transcriptions",
            "TranscriptionType": "fast",
        },
    )


def whisper_transcribes(app, call, sid: str) -> None:
    """The worker's offline transcriber storing its result, as jobs/transcripts.py does."""
    with app.app_context():
        note_transcription(
            db.session,
            sid,
            call.sid,
            at=utcnow(),
            source="whisper",
            transcription_sid=None,
            status="completed",
            text=SECRET,
            language="en",
        )
        db.session.commit()


SOURCES = ("twilio", "whisper", "replayed journal")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("what", ["transcript", "comment"])
def test_nothing_brings_a_removed_transcript_back(app, twilio, sign_in, api, media_server, source, what):
    call, sid, reference = leave_comment(twilio, "3", None, text=None)
    media_server.audio[sid] = wav_bytes(0.2)
    path = write_path(app)
    if source == "replayed journal":  # facts written before the removal, replayed after it
        path.breaker.trip()
        twilio_transcribes(twilio, call, sid)
        path.breaker.reset()
        path.replayer.stop()
        assert path.spool.depth() == 1
    admin = sign_in("admin")
    admin.get(f"/comments/{reference}")
    response = admin.post(f"/comments/{reference}/remove", {"what": what, "reason": "A card number"})
    assert response.status_code == 302
    if source == "twilio":
        twilio_transcribes(twilio, call, sid)
    elif source == "whisper":
        whisper_transcribes(app, call, sid)
    else:
        with app.app_context():
            assert path.spool.replay(db.session).written == 1

    assert SECRET not in api("/api/v1/comments").get_data(as_text=True)
    assert {c["reference"]: c["transcript"] for c in api("/api/v1/comments").json["comments"]}[reference] is None
    assert SECRET not in admin.get(f"/comments/{reference}").get_data(as_text=True)
    assert SECRET not in admin.get("/inbox").get_data(as_text=True)
    assert reference not in re.findall(r'data-ref="(\d+)"', admin.get("/inbox?q=card").get_data(as_text=True))
    form = admin.get("/export").get_data(as_text=True)
    today = re.search(r'name="from" value="([\d-]+)"', form).group(1)
    bundle = zipfile.ZipFile(io.BytesIO(admin.post("/export", {"from": today, "to": today, "topic": ["housing"]}).data))
    rows = list(csv.DictReader(io.StringIO(bundle.read("comments.csv").decode())))
    assert all(SECRET not in row["transcript"] for row in rows)
