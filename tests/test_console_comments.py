"""The inbox (filters, search, pages, review, notes, corrections), the audio endpoint,
redaction and the public-records export, with comments left through signed webhooks."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

import staff.console
from models import AuditEntry, Call, Recording, Transcription, db, summary, utcnow
from tests.console_support import leave_comment, wav_bytes


def shown(page) -> list[str]:
    """The reference numbers an inbox page lists, in order."""
    return re.findall(r'data-ref="(\d+)"', page.get_data(as_text=True))


def audit_of(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


def move_to_yesterday(app, call_sid: str) -> None:
    """Shift one call's facts back a day, as if it had come in yesterday."""
    with app.app_context():
        call = db.session.get(Call, call_sid)
        call.started_at -= timedelta(days=1)
        for recording in db.session.scalars(select(Recording).where(Recording.call_sid == call_sid)):
            recording.created_at -= timedelta(days=1)
        summary.rebuild(db.session)  # as `flask counts rebuild` does after facts are edited
        db.session.commit()


@pytest.fixture
def app_factory_tz(settings):
    """The line with LINE_TIMEZONE=America/Los_Angeles, and a staff client signed in to it."""
    from app import create_app
    from models.line import load_script, read_script_file
    from tests.console_support import Console, make_user

    app = create_app({**settings, "LINE_TIMEZONE": "America/Los_Angeles"})
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
    make_user(app, "ann@example.org")
    console = Console(app.test_client())
    console.sign_in("ann@example.org")
    yield app, console
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def twilio_tz(app_factory_tz):
    from tests.conftest import in_process_twilio

    return in_process_twilio(app_factory_tz[0])


@pytest.fixture
def comments(twilio):
    """Five comments: (reference, sid, caller) by name."""
    made = {}
    for name, topic, stance, text, language in [
        ("budget_yes", "1", "1", "I support the budget for the library.", "1"),
        ("budget_no", "1", "2", "The budget cuts the bus service.", "1"),
        ("transit", "2", "3", None, "1"),
        ("housing", "3", None, "Rents are too high near the river.", "1"),
        ("spanish", "1", "1", None, "2"),
    ]:
        call, sid, reference = leave_comment(twilio, topic, stance, text=text, language=language)
        made[name] = (reference, sid, call)
    return made


def test_inbox_lists_newest_first_with_what_staff_need(sign_in, comments):
    staff_client = sign_in("staff")
    page = staff_client.get("/inbox")
    body = page.get_data(as_text=True)
    assert shown(page) == [comments[n][0] for n in ("spanish", "housing", "transit", "budget_no", "budget_yes")]
    assert "The budget cuts the bus service." in body and "No transcript yet." in body
    assert "es-US" in body and "0:12" in body and "caller " in body  # hashed caller tag
    assert f'src="/audio/{comments["housing"][0]}"' in body
    assert "api.twilio.com" not in body and "AC111" not in body  # no Twilio URL or account in the page


@pytest.mark.parametrize(
    "query, expected",
    [
        ("topic=budget", ["spanish", "budget_no", "budget_yes"]),
        ("topic=budget&stance=oppose", ["budget_no"]),
        ("stance=none", ["housing"]),
        ("language=es-US", ["spanish"]),
        ("transcript=yes", ["housing", "budget_no", "budget_yes"]),
        ("transcript=no", ["spanish", "transit"]),
        ("q=BUS+service", ["budget_no"]),
        ("q=100%25", []),
    ],
)
def test_inbox_filters_live_in_the_url(sign_in, comments, query, expected):
    page = sign_in("staff").get("/inbox?" + query)
    assert page.status_code == 200
    assert shown(page) == [comments[n][0] for n in expected]


def test_search_by_reference_number(sign_in, comments):
    staff_client = sign_in("staff")
    reference = comments["transit"][0]
    assert shown(staff_client.get(f"/inbox?q={reference}")) == [reference]
    assert "No comment has the reference number" in staff_client.get("/inbox?q=1000003").get_data(as_text=True)


def test_time_window_in_the_line_time_zone(app, sign_in, comments):
    move_to_yesterday(app, comments["budget_no"][2].sid)
    staff_client = sign_in("staff")
    links = re.findall(
        r'href="/inbox\?from=([\d-]+)&amp;to=([\d-]+)"[^>]*>([^<]+)<', staff_client.get("/inbox").get_data(as_text=True)
    )
    presets = {label: (first, last) for first, last, label in links}
    first, last = presets["Yesterday"]
    assert shown(staff_client.get(f"/inbox?topic=budget&from={first}&to={last}")) == [comments["budget_no"][0]]
    first, last = presets["Today"]
    assert comments["budget_no"][0] not in shown(staff_client.get(f"/inbox?from={first}&to={last}"))
    bad = staff_client.get("/inbox?from=yesterday")
    assert "Dates are written like" in bad.get_data(as_text=True)


def test_keyset_pages_walk_every_comment_once(sign_in, comments, monkeypatch):
    monkeypatch.setattr(staff.console, "PAGE_SIZE", 2)
    staff_client = sign_in("staff")
    seen, url = [], "/inbox"
    while url:
        page = staff_client.get(url)
        seen += shown(page)
        found = re.search(r'href="([^"]+)" rel="next"', page.get_data(as_text=True))
        url = found.group(1).replace("&amp;", "&") if found else None
    newest_first = [comments[n][0] for n in ("spanish", "housing", "transit", "budget_no", "budget_yes")]
    assert seen == newest_first
    first = staff_client.get("/inbox")
    second = staff_client.get(
        re.search(r'href="([^"]+)" rel="next"', first.get_data(as_text=True)).group(1).replace("&amp;", "&")
    )
    assert shown(second) == newest_first[2:4]
    newer = re.search(r'href="([^"]+)" rel="prev"', second.get_data(as_text=True)).group(1).replace("&amp;", "&")
    assert shown(staff_client.get(newer)) == newest_first[:2]
    bad = staff_client.get("/inbox?before=garbage")  # a bad cursor: 400, saying so, with the first page
    assert bad.status_code == 400 and "not a page link" in bad.get_data(as_text=True)
    assert shown(bad) == newest_first[:2]


def test_bulk_mark_reviewed_then_filter(app, sign_in, comments):
    staff_client = sign_in("staff")
    staff_client.get("/inbox")
    picked = [comments["budget_yes"][0], comments["housing"][0]]
    response = staff_client.post("/inbox/review", {"ref": picked, "mark": "reviewed", "back": "/inbox?reviewed=no"})
    assert response.status_code == 302 and response.headers["Location"] == "/inbox?reviewed=no"
    assert set(shown(staff_client.get("/inbox?reviewed=yes"))) == set(picked)
    assert not set(picked) & set(shown(staff_client.get("/inbox?reviewed=no")))
    entries = audit_of(app, "review")
    assert sorted(e.target for e in entries) == sorted(f"comment {r}" for r in picked)
    assert {e.actor_label for e in entries} == {"staff@example.org"}
    # Marking again changes nothing and writes nothing.
    staff_client.post("/inbox/review", {"ref": picked, "mark": "reviewed"})
    assert len(audit_of(app, "review")) == 2
    assert "by staff@example.org" in staff_client.get(f"/comments/{picked[0]}").get_data(as_text=True)
    staff_client.post(f"/comments/{picked[0]}/review", {"mark": "unreviewed"})
    assert shown(staff_client.get("/inbox?reviewed=yes")) == [picked[1]]


def test_note_and_tags(app, sign_in, comments):
    staff_client = sign_in("staff")
    reference = comments["transit"][0]
    staff_client.get(f"/comments/{reference}")
    staff_client.post(
        f"/comments/{reference}/note", {"note": "Call back re: route 12", "tags": "Follow up, route 12,, "}
    )
    body = staff_client.get("/inbox").get_data(as_text=True)
    assert "Note: Call back re: route 12" in body and ">follow up<" in body and ">route 12<" in body
    entry = audit_of(app, "note")[-1]
    assert entry.detail["after"] == {"note": "Call back re: route 12", "tags": ["follow up", "route 12"]}


def test_transcript_correction_keeps_the_original(app, sign_in, comments, api):
    staff_client = sign_in("staff")
    reference, sid, _ = comments["budget_no"]
    staff_client.get(f"/comments/{reference}")
    staff_client.post(f"/comments/{reference}/transcript", {"text": "The budget cuts the bus service on Sundays."})
    page = staff_client.get(f"/comments/{reference}").get_data(as_text=True)
    assert "The budget cuts the bus service on Sundays." in page and "Original (twilio)" in page
    with app.app_context():
        texts = dict(
            db.session.execute(
                select(Transcription.source, Transcription.text).where(Transcription.recording_sid == sid)
            ).all()
        )
    assert texts == {
        "twilio": "The budget cuts the bus service.",
        "staff": "The budget cuts the bus service on Sundays.",
    }
    entry = audit_of(app, "transcript_correct")[-1]
    assert entry.detail == {
        "before": "The budget cuts the bus service.",
        "after": "The budget cuts the bus service on Sundays.",
    }
    assert shown(staff_client.get("/inbox?q=sundays")) == [reference]


# --- audio ------------------------------------------------------------------------------------


def test_audio_from_storage_with_ranges(app, sign_in, comments):
    reference, sid, _ = comments["housing"]
    audio = wav_bytes(1.0)
    key = f"recordings/test/{sid}.wav"
    Path(app.config["RECORDINGS_DIR"], key).parent.mkdir(parents=True, exist_ok=True)
    Path(app.config["RECORDINGS_DIR"], key).write_bytes(audio)
    with app.app_context():
        db.session.execute(
            update(Recording)
            .where(Recording.recording_sid == sid)
            .values(storage_key=key, content_type="audio/wav", size_bytes=len(audio))
        )
        db.session.commit()
    staff_client = sign_in("staff")
    whole = staff_client.get(f"/audio/{reference}")
    assert whole.status_code == 200 and whole.data == audio and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.mimetype == "audio/wav"
    part = staff_client.get(f"/audio/{reference}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == audio[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(audio)}"
    tail = staff_client.get(f"/audio/{reference}", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == audio[-10:]
    start = staff_client.get(f"/audio/{reference}", headers={"Range": "bytes=0-"})
    assert start.status_code == 206 and start.data == audio
    outside = staff_client.get(f"/audio/{reference}", headers={"Range": f"bytes={len(audio) + 5}-"})
    assert outside.status_code == 416 and outside.headers["Content-Range"] == f"bytes */{len(audio)}"
    # Four requests by one person: one "listen" entry.
    assert [e.target for e in audit_of(app, "listen")] == [f"comment {reference}"]


@pytest.fixture
def fetched(media_server, twilio):
    """A comment whose audio is only at Twilio (the stand-in)."""
    _, sid, reference = leave_comment(twilio, "3", None, text="Fetch me")
    media_server.audio[sid] = wav_bytes(0.5, pitch=660)
    return reference, sid


def test_audio_not_stored_yet_is_fetched_from_twilio_and_kept(media_server, app, sign_in, fetched):
    reference, sid = fetched
    staff_client = sign_in("staff")
    response = staff_client.get(f"/audio/{reference}", headers={"Range": "bytes=0-43"})
    assert response.status_code == 206 and response.data == media_server.audio[sid][:44]
    path, auth = media_server.requests[0]
    assert path == f"/2010-04-01/Accounts/{app.config['TWILIO_ACCOUNT_SID']}/Recordings/{sid}"
    assert auth == media_server.expected  # the account's credentials, sent by the server only
    with app.app_context():
        recording = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert recording.storage_key and recording.size_bytes == len(media_server.audio[sid])
        stored = Path(app.config["RECORDINGS_DIR"], recording.storage_key).read_bytes()
    assert stored == media_server.audio[sid]
    assert staff_client.get(f"/audio/{reference}").data == media_server.audio[sid]
    assert media_server.recording_hits(sid) == 1  # the second time it came from our storage


def test_audio_when_twilio_fails(media_server, sign_in, fetched):
    media_server.fail = True
    response = sign_in("staff").get(f"/audio/{fetched[0]}")
    assert response.status_code == 502 and "Twilio did not give us" in response.get_data(as_text=True)


# --- redaction and deletion -------------------------------------------------------------------


def test_admin_removes_audio_with_a_reason(media_server, app, sign_in, fetched, api):
    reference, sid = fetched
    admin = sign_in("admin")
    assert admin.get(f"/audio/{reference}").status_code == 200
    with app.app_context():
        key = db.session.scalar(select(Recording.storage_key).where(Recording.recording_sid == sid))
    admin.get(f"/comments/{reference}")
    assert admin.post(f"/comments/{reference}/remove", {"what": "audio", "reason": ""}).status_code == 302
    assert Path(app.config["RECORDINGS_DIR"], key).exists()  # no reason, nothing removed
    admin.post(f"/comments/{reference}/remove", {"what": "audio", "reason": "Caller read out a card number"})
    assert not Path(app.config["RECORDINGS_DIR"], key).exists()
    assert admin.get(f"/audio/{reference}").status_code == 404
    assert media_server.recording_hits(sid) == 1  # not fetched again from Twilio
    entry = audit_of(app, "remove_audio")[-1]
    assert entry.detail == {"reason": "Caller read out a card number"} and entry.actor_label == "admin@example.org"
    assert "Fetch me" in admin.get("/inbox").get_data(as_text=True)  # the transcript stays


def test_admin_removes_a_transcript(app, sign_in, comments, api):
    reference = comments["housing"][0]
    admin = sign_in("admin")
    admin.get(f"/comments/{reference}")
    admin.post(f"/comments/{reference}/remove", {"what": "transcript", "reason": "Address read out"})
    body = admin.get("/inbox").get_data(as_text=True)
    assert "Rents are too high" not in body and "Transcript removed." in body
    assert shown(admin.get("/inbox?q=rents")) == []
    from_api = {c["reference"]: c for c in api("/api/v1/comments").json["comments"]}
    assert from_api[reference]["transcript"] is None


def test_deleting_a_comment_keeps_the_counts(app, sign_in, comments, api):
    before = api("/api/v1/counts").json
    reference = comments["budget_no"][0]
    admin = sign_in("admin")
    admin.get(f"/comments/{reference}")
    response = admin.post(f"/comments/{reference}/remove", {"what": "comment", "reason": "The caller asked us to"})
    assert response.headers["Location"] == "/inbox"
    assert reference not in shown(admin.get("/inbox"))
    assert "The budget cuts" not in admin.get(f"/comments/{reference}").get_data(as_text=True)
    assert api("/api/v1/counts").json == before
    assert audit_of(app, "delete_comment")[-1].detail == {"reason": "The caller asked us to"}


# --- the public-records export ----------------------------------------------------------------


def test_export_zip_holds_the_csv_and_the_audio(media_server, app, sign_in, twilio):
    staff_client = sign_in("staff")

    def today_on_the_form():
        form = staff_client.get("/export").get_data(as_text=True)
        return re.search(r'name="from" value="([\d-]+)"', form).group(1)

    # Read "today" before and after the calls, so a day that turns between them is covered.
    first_day = today_on_the_form()
    kept = {}
    for topic, stance, text in [("1", "1", "Yes to the budget"), ("1", "2", "No to the budget"), ("2", "1", "Buses")]:
        _, sid, reference = leave_comment(twilio, topic, stance, text=text)
        media_server.audio[sid] = wav_bytes(0.2, pitch=300 + len(kept) * 100)
        kept[reference] = (sid, text)
    last_day = today_on_the_form()
    response = staff_client.post("/export", {"from": first_day, "to": last_day, "topic": ["budget"]})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(response.data))
    rows = list(csv.DictReader(io.StringIO(bundle.read("comments.csv").decode())))
    budget = {ref: v for ref, v in kept.items() if v[1] != "Buses"}
    assert {r["reference"] for r in rows} == set(budget)
    for row in rows:
        sid, text = budget[row["reference"]]
        assert row["topic"] == "budget" and row["transcript"] == text and row["language"] == "en-US"
        assert row["stance"] in ("support", "oppose") and row["time"][:10] in (first_day, last_day)
        assert bundle.read(row["audio_file"]) == media_server.audio[sid]
    entry = audit_of(app, "export")[-1]
    assert entry.detail["comments"] == 2 and entry.detail["topics"] == ["budget"]


def test_export_needs_a_window_and_a_topic(sign_in):
    staff_client = sign_in("staff")
    staff_client.get("/export")
    response = staff_client.post("/export", {"from": "2026-01-01", "to": "2026-01-02"})
    assert response.status_code == 302 and response.headers["Location"] == "/export"


def test_bulk_review_returns_to_the_same_filtered_view(sign_in, comments):
    staff_client = sign_in("staff")
    body = staff_client.get("/inbox?topic=budget&reviewed=no").get_data(as_text=True)
    back = re.search(r'name="back" value="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert back == "/inbox?topic=budget&reviewed=no"
    response = staff_client.post("/inbox/review", {"ref": comments["budget_yes"][0], "back": back})
    assert response.headers["Location"] == back


def test_a_lost_copy_is_fetched_again(media_server, app, sign_in, fetched):
    reference, sid = fetched
    staff_client = sign_in("staff")
    assert staff_client.get(f"/audio/{reference}").status_code == 200
    with app.app_context():
        key = db.session.scalar(select(Recording.storage_key).where(Recording.recording_sid == sid))
    Path(app.config["RECORDINGS_DIR"], key).unlink()
    response = staff_client.get(f"/audio/{reference}")
    assert response.status_code == 200 and response.data == media_server.audio[sid]
    assert Path(app.config["RECORDINGS_DIR"], key).read_bytes() == media_server.audio[sid]
    assert media_server.recording_hits(sid) == 2


def test_days_are_the_line_time_zone_days(app_factory_tz, twilio_tz):
    """11 pm in Los Angeles on 29 November is 07:00 UTC on the 30th: the inbox files it under the 29th."""
    app, console = app_factory_tz
    _, sid, reference = leave_comment(twilio_tz, "3", None, text="Late night comment")
    with app.app_context():
        recording = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        recording.created_at = datetime(2026, 11, 30, 7, 0)
        db.session.commit()
    assert shown(console.get("/inbox?from=2026-11-29&to=2026-11-29")) == [reference]
    assert shown(console.get("/inbox?from=2026-11-30&to=2026-11-30")) == []
    assert "2026-11-29 23:00" in console.get("/inbox").get_data(as_text=True)


def test_forged_references_and_off_site_back_links_are_harmless(app, sign_in, comments):
    staff_client = sign_in("staff")
    staff_client.get("/inbox")
    unused = "1000003"  # a well-formed reference no comment has
    response = staff_client.post("/inbox/review", {"ref": [unused], "back": "/\\evil.example/"})
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    assert audit_of(app, "review") == []
    page = staff_client.get(f"/comments/{comments['transit'][0]}?back=//evil.example/x").get_data(as_text=True)
    assert '<a href="/inbox">← Back to the inbox</a>' in page


@pytest.mark.parametrize("mode, shown_as", [("raw", "+15035550177"), ("hash", "caller "), ("none", None)])
def test_caller_column_follows_the_caller_number_setting(settings, request, mode, shown_as):
    settings["CALLER_NUMBERS"] = mode
    twilio, sign_in = request.getfixturevalue("twilio"), request.getfixturevalue("sign_in")
    leave_comment(twilio, "3", None, From="+15035550177")
    body = sign_in("staff").get("/inbox").get_data(as_text=True)
    assert ("+15035550177" in body) == (mode == "raw")
    if shown_as:
        assert shown_as in body
    else:
        assert 'class="muted caller"' not in body


def test_audio_purged_under_the_retention_rule_is_not_fetched_again(media_server, app, sign_in, fetched):
    reference, sid = fetched
    with app.app_context():  # what `flask recordings purge` leaves behind
        recording = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        recording.purged_at, recording.storage_key = utcnow(), None
        db.session.commit()
    staff_client = sign_in("staff")
    response = staff_client.get(f"/audio/{reference}")
    assert response.status_code == 404 and "retention rule" in response.get_data(as_text=True)
    assert media_server.recording_hits(sid) == 0
    assert "Audio deleted under the retention rule." in staff_client.get("/inbox").get_data(as_text=True)


def test_why_a_comment_has_no_transcript(app, sign_in, twilio):
    _, sid, reference = leave_comment(twilio, "3", None)
    with app.app_context():  # as the worker records a comment it cannot transcribe
        db.session.add(
            Transcription(
                recording_sid=sid,
                source="whisper",
                status="failed",
                text=None,
                reason="too quiet to transcribe",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        db.session.commit()
    staff_client = sign_in("staff")
    assert "No transcript: too quiet to transcribe" in staff_client.get("/inbox").get_data(as_text=True)
    assert "No transcript: too quiet to transcribe" in staff_client.get(f"/comments/{reference}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("words", "found"), [("the", 3), ("budget", 2), ("river", 1), ("nothing like it", 0), ("100%", 0)]
)
def test_a_search_finds_the_same_pages_however_it_runs(app, comments, words, found):
    """A search first probes the newest recordings one by one, and searches every transcript
    only when they hold less than a page: the pages are the same either way."""
    from models.comments import InboxFilter, find_comments

    def pages(window: int) -> tuple[list, list]:
        forward, before = [], None
        while True:  # a page of one, oldest-ward
            rows, more = find_comments(
                db.session, InboxFilter(search=words), before=before, limit=1, search_window=window
            )
            forward.append(([row.reference for row in rows], more))
            if not more:
                break
            before = rows[-1].cursor
        back = []
        if before is not None:  # and one page newest-ward again, from the oldest found
            rows, _ = find_comments(db.session, InboxFilter(search=words), after=before, limit=1, search_window=window)
            back = [row.reference for row in rows]
        return forward, back

    with app.app_context():
        whole = pages(10_000)  # every recording fits the window: each probed in turn
        for window in (0, 1, 2, 3):  # too small: the full search decides
            assert pages(window) == whole, window
    assert sum(len(refs) for refs, _ in whole[0]) == found
