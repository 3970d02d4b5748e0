"""The JSON API staff tools rely on: tokens, the line, counts (JSON and CSV), comments."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from sqlalchemy import select, update

from models import Call, Recording, db, summary
from models.recordings import reference_for


def test_api_needs_a_valid_bearer_token(client, api_token):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {api_token}"}):
        response = client.get("/api/v1/counts", headers=headers)
        assert response.status_code == 401 and "error" in response.json
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_line_says_what_callers_hear(api):
    body = api("/api/v1/line").json
    assert body["languages"] == [
        {"code": "en-US", "digit": "1"},
        {"code": "es-US", "digit": "2"},
        {"code": "ht", "digit": "3"},
    ]
    budget = {"slug": "budget", "digit": "1", "name": "the proposed city budget", "stance": True, "callback": False}
    assert body["topics"][0] == budget
    assert [t["slug"] for t in body["topics"]] == ["budget", "transit", "housing", "general"]


def play(twilio, keys, seconds=10, **params):
    call = twilio.call(**params)
    call.dial()
    for key in keys:
        call.press(key)
    if call.reply.record is not None:
        call.speak(seconds=seconds)
    return call


def test_counts_match_what_was_played(twilio, api):
    play(twilio, ["1", "1", "1"], From="+15035550001")
    play(twilio, ["1", "1", "2"], From="+15035550001")
    play(twilio, ["2", "2", "3"], From="+15035550002")
    play(twilio, ["1", "3"], seconds=0, From="anonymous")
    unrouted = twilio.call()
    unrouted.dial()
    body = api("/api/v1/counts").json
    assert (body["calls"], body["unrouted"]) == (5, 1)
    t = {x["slug"]: x for x in body["topics"]}
    assert (t["budget"]["calls"], t["budget"]["callers"], t["budget"]["comments"]) == (2, 1, 2)
    assert t["budget"]["stance"] == {"support": 1, "oppose": 1, "other": 0}
    assert (t["transit"]["calls"], t["transit"]["stance"]["other"]) == (1, 1)
    assert (t["housing"]["calls"], t["housing"]["callers"], t["housing"]["comments"]) == (1, 0, 0)
    keys = {"slug", "digit", "name", "enabled", "calls", "callers", "comments", "stance", "per_caller", "district"}
    assert set(t["budget"]) == keys | {"flagged", "callbacks"}
    assert t["budget"]["per_caller"] == {"support": 0, "oppose": 1, "other": 0}  # one caller, their latest
    assert t["budget"]["district"] is None  # the line has no district


def test_counts_windows_filter_on_the_calls_first_webhook(twilio, api, app):
    old = play(twilio, ["1", "3"])
    play(twilio, ["1", "3"])
    with app.app_context():
        db.session.execute(
            update(Call).where(Call.call_sid == old.sid).values(started_at=datetime(2026, 11, 2, 4, 30))
        )  # 23:30 on the 1st in New York
        summary.rebuild(db.session)  # facts edited by hand: the summaries follow
        db.session.commit()
    assert api("/api/v1/counts", since="2026-11-02", until="2026-11-03").json["calls"] == 1
    assert api("/api/v1/counts", since="2026-11-02T04:30:00Z", until="2026-11-02T04:30:01Z").json["calls"] == 1
    assert api("/api/v1/counts", until="2026-11-02T04:30:00+00:00").json["calls"] == 0
    today = datetime.utcnow().date()
    assert api("/api/v1/counts", since=(today - timedelta(days=1)).isoformat()).json["calls"] == 1


def test_dates_are_in_the_line_timezone(settings):
    from app import create_app
    from models.line import load_script, read_script_file
    from models.tokens import create_token

    app = create_app({**settings, "LINE_TIMEZONE": "America/New_York"})
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.add(Call(call_sid="CA" + "d" * 32, started_at=datetime(2026, 11, 2, 4, 30)))
        token = create_token(db.session, "tz")
        summary.rebuild(db.session)
        db.session.commit()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/counts?since=2026-11-01&until=2026-11-02", headers=auth).json["calls"] == 1
    assert client.get("/api/v1/counts?since=2026-11-02", headers=auth).json["calls"] == 0
    with app.app_context():
        db.engine.dispose()


def test_bad_window_gets_400_with_error(api):
    for params in ({"since": "yesterday"}, {"until": "2026-13-01"}, {"since": "2026-11-03", "until": "2026-11-02"}):
        response = api("/api/v1/counts", **params)
        assert response.status_code == 400 and response.json["error"]
    assert api("/api/v1/counts.csv", since="nope").status_code == 400


def test_counts_csv_has_the_documented_header_and_rows(twilio, api):
    play(twilio, ["1", "1", "1"])
    response = api("/api/v1/counts.csv")
    assert response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    old = ["slug", "digit", "name", "calls", "callers", "comments", "support", "oppose", "other"]
    per_caller = ["per_caller_support", "per_caller_oppose", "per_caller_other"]
    assert table[0] == [*old, "flagged", "callbacks", *per_caller]  # the old ones first
    assert table[1] == [
        "budget",
        "1",
        "the proposed city budget",
        "1",
        "1",
        "1",
        "1",
        "0",
        "0",
        "0",
        "0",
        "1",
        "0",
        "0",
    ]
    assert len(table) == 5


def test_comments_newest_first_with_cursor(twilio, api):
    for keys in (["1", "3"], ["1", "1", "2"], ["2", "9"]):
        play(twilio, keys)
    first = api("/api/v1/comments", limit=2).json
    assert [c["topic"] for c in first["comments"]] == ["general", "budget"]
    assert first["comments"][1]["stance"] == "oppose" and first["comments"][0]["language"] == "es-US"
    assert len(first["comments"][0]["reference"]) >= 6
    second = api("/api/v1/comments", limit=2, cursor=first["next_cursor"]).json
    assert [c["topic"] for c in second["comments"]] == ["housing"] and second["next_cursor"] is None
    assert [c["topic"] for c in api("/api/v1/comments", topic="budget").json["comments"]] == ["budget"]
    assert api("/api/v1/comments", limit=0).status_code == 400
    assert api("/api/v1/comments", cursor="x").status_code == 400


def test_comments_pages_hold_each_comment_once_newest_first_by_when_recorded(app, twilio, api):
    """Pages follow when each comment was recorded, not the order its row was made in (a
    recording's row can be made by a late callback), in a window too; every comment once."""
    for keys in (["1", "3"], ["1", "1", "2"], ["2", "9"], ["1", "2", "1"], ["1", "9"], ["2", "3"]):
        play(twilio, keys)
    with app.app_context():
        ids = db.session.scalars(select(Recording.id).order_by(Recording.id)).all()
        base = datetime(2026, 11, 20, 12)
        minutes = [50, 10, 40, 10, 30, 20]  # two recorded in the same instant
        for recording_id, minute in zip(ids, minutes, strict=True):
            db.session.execute(
                update(Recording)
                .where(Recording.id == recording_id)
                .values(created_at=base + timedelta(minutes=minute))
            )
        db.session.commit()
        recorded = db.session.execute(
            select(Recording.number, Recording.created_at).order_by(Recording.created_at.desc(), Recording.id.desc())
        ).all()
    assert len(recorded) == len(minutes)
    for window in ({}, {"since": "2026-11-20T12:15:00Z", "until": "2026-11-20T12:45:00Z"}):
        for limit in (1, 2, 4):
            seen, cursor = [], None
            while True:
                page = api("/api/v1/comments", limit=limit, **window, **({"cursor": cursor} if cursor else {})).json
                seen += [c["reference"] for c in page["comments"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            wanted = [
                reference_for(number)
                for number, at in recorded
                if not window or timedelta(minutes=15) <= at - base < timedelta(minutes=45)
            ]
            assert seen == wanted, (window, limit)
