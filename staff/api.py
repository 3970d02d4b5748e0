"""The JSON API for staff tools, under `/api/v1`, with `Authorization: Bearer <token>`."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, g, jsonify, request
from sqlalchemy import exists, select, tuple_
from werkzeug.exceptions import HTTPException

from models import Call, CommentState, Recording, Topic, Transcription, db, utcnow
from models.flags import FlagRules
from models.line import District, LineScript, line_script
from models.recordings import NOT_A_COMMENT
from models.tally import STANCE_NAMES, Tally, district_columns, tally
from models.tokens import find_token

from .csvfiles import csv_text
from .params import BadParameter, row_id, text, whole_number
from .windows import parse_window

api = Blueprint("api", __name__, url_prefix="/api/v1")
COUNTS_CSV_HEADER = ["slug", "digit", "name", "calls", "callers", "comments", "support", "oppose", "other"]
# After the columns above, in this order: calls flagged and call-backs asked, one voice per
# caller, then each district's split (`models.tally.district_columns`: inside_calls …
# unknown_other, prefixed by the district's name when the line has several).
FLAG_COLUMNS = ["flagged", "callbacks"]
PER_CALLER_COLUMNS = [f"per_caller_{name}" for name in STANCE_NAMES]
MAX_PAGE = 200
LAST_USED_RESOLUTION = timedelta(minutes=1)


@api.before_request
def require_token() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    row = find_token(db.session, token.strip()) if scheme.lower() == "bearer" else None
    if row is None:
        abort(401, description="A valid bearer token is required (see `flask tokens create`).")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now  # to the minute: not a write on every request
        db.session.commit()
    g.api_token = row


@api.errorhandler(HTTPException)
def json_error(error: HTTPException):
    response = jsonify(error=error.description)
    response.status_code = error.code
    if error.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="comment-line"'
    return response


def window():
    """`since` and `until` as naive UTC; a bad value is a BadParameter (400 with `error`)."""
    return parse_window(request.args.get("since"), request.args.get("until"), current_app.config["LINE_TIMEZONE"])


def current_script() -> LineScript:
    return line_script(current_app).get(db.session)


MAX_DISTRICT_NAME = 64


def district_named(value: str | None, script: LineScript) -> District | None:
    """The district a `district` parameter names (None when empty), for the API and the
    console's counts alike: a name the line does not have (any name, on a line with none), a
    control character or more than `MAX_DISTRICT_NAME` characters is a BadParameter (400)
    whose message names the districts the line has."""
    known = ", ".join(d.name for d in script.districts)
    try:
        name = text(value, "district", MAX_DISTRICT_NAME)
    except BadParameter as exc:
        has = f"The line's districts: {known}." if known else "The line has no district."
        raise BadParameter("district", f"{exc} {has}") from None
    if name is None:
        return None
    found = script.district(name)
    if found is None:
        raise BadParameter("district", f"The line has no district {name!r} (its districts: {known or 'none'}).")
    return found


def current_tally(script: LineScript) -> Tally:
    since, until = window()
    inside = district_named(request.args.get("district"), script)
    config = current_app.config
    return tally(
        db.session,
        since,
        until,
        callers_known=config["CALLER_NUMBERS"] != "none",
        districts=script.districts,
        inside=inside,
        flag_rules=FlagRules.from_config(config),
    )


@api.get("/line")
def line():
    script = current_script()
    first = script.languages[0].code
    return jsonify(
        languages=[{"code": lang.code, "digit": lang.digit} for lang in script.languages],
        topics=[
            {"slug": t.slug, "digit": t.digit, "name": t.name(first), "stance": t.stance, "callback": t.callback}
            for t in script.menu
        ],
        zip_step=script.zip_step,
        asks_zip=script.zip_step != "off",
        districts=[{"name": d.name, "zips": sorted(d.zips)} for d in script.districts],
    )


@api.get("/counts")
def counts():
    """`tally()` as JSON. Each topic's `per_caller` is null with `CALLER_NUMBERS=none`, its
    `district` null when the line has none (keyed by name when it has several)."""
    return jsonify(current_tally(current_script()).as_dict())


def counts_csv_text(result: Tally, districts: tuple[District, ...]) -> str:
    """The counts as CSV: `COUNTS_CSV_HEADER`'s columns first, then the flags', one voice per
    caller's and each district's (the README lists them). The public tally's CSV is this too."""
    header = [*COUNTS_CSV_HEADER, *FLAG_COLUMNS, *PER_CALLER_COLUMNS, *district_columns(districts)]
    rows = (
        [
            *(t.slug, t.digit, t.name),
            *t.figures(),
            *(t.flagged, t.callbacks),
            *t.voice_figures(),
            *t.district_figures(districts),
        ]
        for t in result.topics
    )
    return csv_text(header, rows)


@api.get("/counts.csv")
def counts_csv():
    script = current_script()
    return Response(
        counts_csv_text(current_tally(script), script.districts),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=counts.csv"},
    )


def _limit() -> int:
    return whole_number(request.args.get("limit"), "limit", 1, MAX_PAGE, default=50)


@api.get("/comments")
def comments():
    """Comments newest first (by when each was recorded, then by id); `next_cursor` (the last
    comment's id) fetches the next page: the comments recorded before that one. Each page is
    read from the index on (created_at, id), however many comments its window holds."""
    since, until = window()
    limit = _limit()
    topic = text(request.args.get("topic"), "topic", 64)
    cursor = row_id(request.args.get("cursor"), "cursor", "cursor must be a value from next_cursor")
    query = (
        select(Recording, Topic.slug)
        .outerjoin(Topic, Topic.id == Recording.topic_id)
        .where(~exists().where(Call.call_sid == Recording.call_sid, Call.is_test.is_(True)))  # never public
    )
    if topic is not None:
        query = query.where(Topic.slug == topic)
    if since is not None:
        query = query.where(Recording.created_at >= since)
    if until is not None:
        query = query.where(Recording.created_at < until)
    if cursor is not None:
        query = query.where(older_than(cursor))
    newest_first = (Recording.created_at.desc(), Recording.id.desc())
    rows = db.session.execute(query.order_by(*newest_first).limit(limit + 1)).all()
    page = rows[:limit]
    transcripts = _transcripts([r.recording_sid for r, _ in page])
    items = [_comment(recording, slug, transcripts.get(recording.recording_sid)) for recording, slug in page]
    next_cursor = str(page[-1][0].id) if len(rows) > limit else None
    return jsonify(comments=items, next_cursor=next_cursor)


def older_than(cursor: int):
    """The condition for the comments after the one whose id is `cursor` in the newest-first
    order; a cursor naming no stored comment (no `next_cursor` does): those with smaller ids."""
    at = db.session.scalar(select(Recording.created_at).where(Recording.id == cursor))
    if at is None:
        return Recording.id < cursor
    return tuple_(Recording.created_at, Recording.id) < tuple_(at, cursor)


def _transcripts(sids: list[str]) -> dict[str, Transcription]:
    """The best transcript per recording: staff corrections, then the first completed one;
    none for a comment whose transcripts staff removed."""
    if not sids:
        return {}
    rank = {"staff": 0, "whisper": 1, "twilio": 2}
    best: dict[str, Transcription] = {}
    removed = (
        select(Recording.recording_sid)
        .join(CommentState, CommentState.recording_id == Recording.id)
        .where(Recording.recording_sid.in_(sids), CommentState.transcript_removed_at.is_not(None))
    )
    query = select(Transcription).where(
        Transcription.recording_sid.in_(sids), Transcription.recording_sid.not_in(removed)
    )
    for t in db.session.scalars(query):
        current = best.get(t.recording_sid)
        if t.status == "completed" and (current is None or rank.get(t.source, 9) < rank.get(current.source, 9)):
            best[t.recording_sid] = t
    return best


def _comment(recording: Recording, slug: str | None, transcript: Transcription | None) -> dict:
    if recording.status in NOT_A_COMMENT:
        status = recording.status
    elif recording.action_at is None and recording.status is None:
        status = "pending"
    else:
        status = recording.status or "recorded"
    return {
        "reference": recording.reference,
        "recording_sid": recording.recording_sid,
        "call_sid": recording.call_sid,
        "topic": slug,
        "stance": recording.stance,
        "language": recording.language,
        "duration": recording.duration,
        "status": status,
        "recorded_at": recording.created_at.isoformat() + "Z",
        "transcript": transcript.text if transcript else None,
        "transcript_source": transcript.source if transcript else None,
    }
