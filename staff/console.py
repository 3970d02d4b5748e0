"""The staff console's blueprint, what its pages share, and the inbox of comments.

Every route here requires a signed-in user (see `require_sign_in`); admin-only ones add
`admin_required`. Routes read the URL, call the model layer, write the audit log, commit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from models import Recording, Topic, User, db
from models.audit import AuditEntry
from models.calls import STANCES
from models.comments import (
    CommentRow,
    InboxFilter,
    clean_tags,
    correct_transcript,
    find_comments,
    get_comment,
    mark_reviewed,
    reference_in,
    set_note,
)
from models.flags import FLAG_NAMES, FlagRules, flagged_calls, flags_of
from models.holds import holds_covering
from models.line import District, LineScript, line_script
from models.recordings import number_for

from .auth import check_csrf, load_user, record, safe_next
from .errors import security_headers
from .params import ROW_ID_IN_PATH, BadParameter, RowIdConverter, choice, keyset_cursor, shortened, text
from .windows import Days, parse_days

console = Blueprint("console", __name__)
# Before any of the console's routes is added: they take row ids in their paths.
console.record_once(lambda state: state.app.url_map.converters.update({ROW_ID_IN_PATH: RowIdConverter}))
# Routes that take a file, each up to its own limit rather than MAX_CONTENT_LENGTH: the setting
# that holds it, and what the file is, for the 413's message.
UPLOAD_LIMITS = {"console.upload_prompt": ("PROMPT_MAX_BYTES", "a prompt")}


@console.before_request
def allow_uploads() -> None:
    """The console's first hook (before the CSRF check reads the form): a route that takes a
    file reads a body up to its limit and the form around it, and refuses a larger one by its
    Content-Length, before reading it."""
    found = UPLOAD_LIMITS.get(request.endpoint or "")
    if found is None:
        return
    setting, what = found
    limit = current_app.config[setting]
    request.max_content_length = limit + 64 * 1024
    if (request.content_length or 0) > request.max_content_length:
        abort(413, description=f"The file is larger than the {limit / 1e6:.1f} MB {what} may be.")


console.before_request(load_user)
console.before_request(check_csrf)
console.after_request(security_headers)
PAGE_SIZE = 50
MAX_BULK = 200


@console.before_request
def require_sign_in():
    if g.get("user") is None:
        if request.path.startswith("/audio/"):
            abort(401, description="Sign in to listen to recordings.")
        return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
    return None


# --- what the pages share ----------------------------------------------------------------------


def line_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["LINE_TIMEZONE"])


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored naive-UTC time as the line's local time."""
    if value is None:
        return ""
    return value.replace(tzinfo=ZoneInfo("UTC")).astimezone(line_zone()).strftime(fmt)


def today_local() -> date:
    return datetime.now(line_zone()).date()


def caller_label(comment: CommentRow) -> str:
    """The caller as CALLER_NUMBERS allows: the number, a short tag of its hash, or nothing."""
    mode = current_app.config["CALLER_NUMBERS"]
    if mode == "raw":
        return comment.from_number or "withheld"
    if mode == "hash":
        return f"caller {comment.caller_hash[:8]}" if comment.caller_hash else "withheld"
    return ""


def current_script() -> LineScript:
    return line_script(current_app).get(db.session)


def all_topics() -> list[Topic]:
    return list(db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)))


def topic_name(topic: Topic) -> str:
    return next(iter(topic.names.values()), topic.slug)


def topic_names(topics: list[Topic] | None = None) -> dict[str, str]:
    """Each topic's slug -> its name as the console shows it (as on the counts page)."""
    return {topic.slug: topic_name(topic) for topic in (all_topics() if topics is None else topics)}


def date_window(args) -> Days:
    """`from` and `to` (local dates, both included) and the naive-UTC [since, until) they
    cover. Raises BadWindow (a BadParameter) when one is not a date, lies outside the
    calendar, or `to` is before `from`."""
    return parse_days(args.get("from"), args.get("to"), current_app.config["LINE_TIMEZONE"])


def date_presets() -> list[tuple[str, str, str]]:
    """(label, from, to) for the window shortcuts."""
    today = today_local()
    yesterday = today - timedelta(days=1)
    return [
        ("Today", today.isoformat(), today.isoformat()),
        ("Yesterday", yesterday.isoformat(), yesterday.isoformat()),
        ("Last 7 days", (today - timedelta(days=6)).isoformat(), today.isoformat()),
        ("Last 30 days", (today - timedelta(days=29)).isoformat(), today.isoformat()),
    ]


@console.app_template_filter("local")
def _local_filter(value, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return local_time(value, fmt)


@console.app_template_filter("duration")
def _duration_filter(seconds: int | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds // 60}:{seconds % 60:02d}"


def url_with(endpoint: str, args: dict, **changes) -> str:
    """A URL for `endpoint` with the current filters, some changed (None removes one)."""
    merged = {k: v for k, v in {**args, **changes}.items() if v not in (None, "")}
    return url_for(endpoint) + ("?" + urlencode(merged) if merged else "")


# --- the inbox ----------------------------------------------------------------------------------

FILTER_KEYS = (
    "topic",
    "stance",
    "language",
    "district",
    "from",
    "to",
    "reviewed",
    "transcript",
    "q",
    "flag",
    "callback",
    "tests",
)
TEST_CALLS = ("also", "only")  # the `tests` filter: comments on "Try the line" calls
PLACES = ("inside", "outside", "unknown")
PLACE_LABELS = {"inside": "Inside", "outside": "Outside", "unknown": "ZIP code unknown"}


def district_choices(script: LineScript) -> dict[str, tuple[str, str, District | None]]:
    """The inbox's district filter values, each with its label, place and district: "inside",
    "outside" (one district) or "NAME:inside", "NAME:outside" (several), and "unknown" (no ZIP
    code entered). None when the line has no district."""
    one = len(script.districts) == 1
    choices: dict[str, tuple[str, str, District | None]] = {}
    for d in script.districts:
        for place in ("inside", "outside"):
            choices[place if one else f"{d.name}:{place}"] = (
                PLACE_LABELS[place] + ("" if one else f" {d.name}"),
                place,
                d,
            )
    if script.districts:
        choices["unknown"] = (PLACE_LABELS["unknown"], "unknown", None)
    return choices


def district_filter(value: str | None, name: str, choices: dict) -> str | None:
    """One of the inbox's `district_choices`, or None when empty; on a line with no district
    any value is a BadParameter saying so (`choice` would list no choices)."""
    if not choices and (value or "").strip():
        raise BadParameter(name, "The line has no district, so there is none to filter on.")
    return choice(value, name, choices)


MAX_SEARCH = 200
FLAG_LABELS = {
    "repeat": "Same number, same topic, many times a day",
    "burst": "Burst of calls from one number",
    "short": "Silent or one-second comment",
    "unverified": "Unverified or withheld number",
}
FLAG_LOOKBACK = timedelta(hours=6)  # longer than any call: its comments come within it
YES_NO = {"yes": True, "no": False}


def inbox_filter(args) -> tuple[InboxFilter, dict, list[str]]:
    """The inbox filter the URL describes, the filter arguments kept (those that could be
    used), and what was wrong with the others."""
    problems: list[str] = []
    kept = {key: args[key].strip() for key in FILTER_KEYS if args.get(key, "").strip()}

    def take(key: str, parse, *how):
        """The parsed value of `key`, or None (then dropped from `kept`) with its problem noted."""
        try:
            value = parse(args.get(key), key, *how)
        except BadParameter as exc:
            problems.append(str(exc))
            value = None
        if value is None:
            kept.pop(key, None)
        return value

    f = InboxFilter(search=take("q", text, MAX_SEARCH) or "")
    slug = take("topic", text, 64)
    if slug is not None:
        topic = db.session.scalar(select(Topic).where(Topic.slug == slug))
        if topic is None:
            problems.append(f"There is no topic {shortened(slug)!r}.")
            kept.pop("topic")
        else:
            f.topic_id = topic.id
    f.stance = take("stance", choice, (*STANCES.values(), "none"))
    f.language = take("language", text, 16)
    districts = district_choices(current_script())
    where = take("district", district_filter, districts)
    if where is not None:
        _, f.place, district = districts[where]
        f.district_zips = district.zips if district else frozenset()
    f.reviewed = YES_NO.get(take("reviewed", choice, YES_NO) or "")
    f.has_transcript = YES_NO.get(take("transcript", choice, YES_NO) or "")
    f.tests = take("tests", choice, TEST_CALLS) or "hide"
    try:
        window = date_window(args)
    except BadParameter as exc:
        problems.append(str(exc))
        kept.pop("from", None)
        kept.pop("to", None)
    else:
        f.since, f.until = window.since, window.until
    f.callback = YES_NO.get(take("callback", choice, YES_NO) or "")
    flag = take("flag", choice, ("any", *FLAG_NAMES))
    if flag is not None:
        # Flags belong to calls by their start; a comment is recorded minutes after it.
        start = f.since - FLAG_LOOKBACK if f.since is not None else None
        rules = FlagRules.from_config(current_app.config)
        f.calls = flagged_calls(db.session, rules, start, f.until, None if flag == "any" else flag)
        f.no_calls = f.calls is None
    return f, kept, problems


@console.get("/")
def home():
    return redirect(url_for("console.inbox"))


@console.get("/inbox")
def inbox():
    f, kept, problems = inbox_filter(request.args)
    try:
        before = keyset_cursor(request.args.get("before"), "before")
        after = keyset_cursor(request.args.get("after"), "after")
    except BadParameter as exc:
        problems.append(f"{exc} Here is the first page.")
        before = after = None
    status = 400 if problems else 200
    comments, more = find_comments(db.session, f, before=before, after=after, limit=PAGE_SIZE)
    newer = older = None
    if comments:
        if after is not None:
            older = url_with("console.inbox", kept, before=comments[-1].cursor)
            newer = url_with("console.inbox", kept, after=comments[0].cursor) if more else None
        else:
            older = url_with("console.inbox", kept, before=comments[-1].cursor) if more else None
            newer = url_with("console.inbox", kept, after=comments[0].cursor) if before is not None else None
    if reference_in(f.search) and not comments:
        problems.append(f"No comment has the reference number {shortened(f.search)}.")
    topics = all_topics()
    rules = FlagRules.from_config(current_app.config)
    return render_template(
        "inbox.html",
        comments=comments,
        flags=flags_of(db.session, rules, [c.recording.call_sid for c in comments]),
        flag_labels=FLAG_LABELS,
        filters=kept,
        problems=problems,
        newer=newer,
        older=older,
        topics=topics,
        topic_names=topic_names(topics),
        languages=[lang.code for lang in current_script().languages],
        districts={value: label for value, (label, _, _) in district_choices(current_script()).items()},
        stances=STANCES.values(),
        presets=date_presets(),
        caller_label=caller_label,
        here=request.full_path.rstrip("?"),
        first_page=url_with("console.inbox", kept) if (before or after) else None,
        window_url=lambda first, last: url_with("console.inbox", kept, **{"from": first, "to": last}),
    ), status


def back_to(default_endpoint: str = "console.inbox") -> str:
    """Where a form sends the person back to: its `back` field when that is a path on this
    site (see `local_target`), else the default page."""
    return safe_next(request.form.get("back"), default_endpoint)


@console.post("/inbox/review")
def review_many():
    """Mark the ticked comments reviewed (or not reviewed)."""
    references = request.form.getlist("ref")[:MAX_BULK]
    reviewed = request.form.get("mark", "reviewed") != "unreviewed"
    wanted = {number_for(ref): ref for ref in references if number_for(ref)}
    found = (
        db.session.execute(select(Recording.id, Recording.number).where(Recording.number.in_(wanted))) if wanted else []
    )
    ids = {recording_id: wanted[number] for recording_id, number in found}
    if not ids:
        flash("Tick one or more comments first.", "error")
        return redirect(back_to())
    changed = mark_reviewed(db.session, list(ids), g.user.id, reviewed)
    for recording_id in changed:
        record("review" if reviewed else "unreview", f"comment {ids[recording_id]}")
    db.session.commit()
    word = "reviewed" if reviewed else "not reviewed"
    flash(f"Marked {len(changed)} comment{'s' if len(changed) != 1 else ''} {word}.")
    return redirect(back_to())


# --- one comment ---------------------------------------------------------------------------------


def comment_or_404(reference: str) -> CommentRow:
    comment = get_comment(db.session, reference)
    if comment is None:
        abort(404, description=f"No comment has the reference number {shortened(reference)}.")
    return comment


@console.get("/comments/<reference>")
def comment(reference: str):
    found = comment_or_404(reference)
    history = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.target == f"comment {found.reference}")
        .order_by(AuditEntry.id.desc())
        .limit(50)
    ).all()
    reviewer = db.session.get(User, found.state.reviewed_by) if found.reviewed and found.state.reviewed_by else None
    return render_template(
        "comment.html",
        reviewer=reviewer,
        c=found,
        topic_names=topic_names(),
        history=history,
        holds=holds_covering(db.session, found.recording),
        caller_label=caller_label,
        back=safe_next(request.args.get("back")),
    )


@console.post("/comments/<reference>/review")
def review_one(reference: str):
    found = comment_or_404(reference)
    reviewed = request.form.get("mark", "reviewed") != "unreviewed"
    if mark_reviewed(db.session, [found.recording.id], g.user.id, reviewed):
        record("review" if reviewed else "unreview", f"comment {found.reference}")
    db.session.commit()
    flash(f"Comment {found.reference} marked {'reviewed' if reviewed else 'not reviewed'}.")
    return redirect(back_to())


@console.post("/comments/<reference>/note")
def note(reference: str):
    found = comment_or_404(reference)
    if found.state and found.state.deleted_at:
        abort(409, description="This comment was deleted.")
    tags = clean_tags(request.form.get("tags", ""))
    text = request.form.get("note", "")
    before = set_note(db.session, found.recording.id, text, tags)
    record("note", f"comment {found.reference}", before=before, after={"note": text.strip() or None, "tags": tags})
    db.session.commit()
    flash("Note and tags saved.")
    return redirect(back_to())


@console.post("/comments/<reference>/transcript")
def correct(reference: str):
    found = comment_or_404(reference)
    if found.transcript_removed:
        abort(409, description="This comment's transcript was removed.")
    text = " ".join(request.form.get("text", "").split())
    if not text:
        flash("A corrected transcript cannot be empty. To remove one, ask an admin.", "error")
        return redirect(back_to())
    previous = correct_transcript(db.session, found.recording.recording_sid, text[:20000], found.recording.language)
    original = found.original.text if found.original else None
    record("transcript_correct", f"comment {found.reference}", before=previous or original, after=text)
    db.session.commit()
    flash("Transcript corrected; the original is kept.")
    return redirect(back_to())
