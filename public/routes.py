"""The public tally's routes, under `/public`: no sign-in, no cookies, nothing about a person.

- `GET /public` (`?lang=` one of the line's languages): the page.
- `GET /public/counts.json?since=&until=` and `GET /public/counts.csv`: `/api/v1/counts`'s
  shape and rules, shown topics only; a bad window is 400 with `error`.
- `GET /public/check?ref=NNNNNNN`: whether that comment was received and counted, under
  which topic and on which day; lookups limited per address (public/limits.py).
- `GET /public/tally-key`, `GET /public/receipts`, `GET /public/receipts/YYYY-MM-DD.json` and
  `GET /public/receipts/YYYY-MM-DD.facts.json`: the signed daily receipts (receipts/), the key
  that checks them, and the facts a day's receipt covers, for `scripts/verify_receipts.py`.
- Any other URL under `/public`: 404, as the public part answers it (`no_such_public_page`).

Everything answers 404 unless PUBLIC_TALLY is on. Answers are cached per process for
PUBLIC_CACHE_SECONDS (public/cache.py) and sent with `Cache-Control: public, max-age=N`, but
for the reference check, which is never cached. The session is never opened for these paths
(staff.auth.ConsoleSessionInterface), so no cookie is read or set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from sqlalchemy import or_, select
from werkzeug.exceptions import HTTPException

from ivr.metrics import PUBLIC_CHECKS
from models import Call, Recording, Topic, db
from models.line import line_script
from models.receipts import chain, receipts_of
from models.recordings import is_comment, number_for, numbered, typed_digits
from receipts import signing
from receipts.chain import facts_export, published
from staff.api import counts_csv_text
from staff.counts_page import chart_layout
from staff.errors import protected
from staff.params import BadParameter, shortened
from staff.windows import parse_day, parse_window

from .cache import StaleWhileRefreshing
from .limits import admit_lookup
from .tally_view import PublicTally, public_counts, public_tally


@dataclass(frozen=True)
class Legend:
    """A shown topic as the chart's legend names it, in the page's language."""

    name: str


public = Blueprint("public", __name__, url_prefix="/public", template_folder="templates", static_folder="static")
WORDING_FILE = Path(__file__).with_name("wording.yaml")
REFERENCE_DIGITS = (7, 8)


# --- language ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def all_wording() -> dict[str, dict]:
    return yaml.safe_load(WORDING_FILE.read_text(encoding="utf-8"))


def wording_for(code: str) -> dict:
    """The page's wording in the language `code` (en-US: `en-US`, else `en`), English for
    whatever it lacks."""
    table = all_wording()
    found = table.get(code) or table.get(code.split("-")[0].lower()) or {}
    return {**table["en"], **found}


def page_language() -> tuple[str, list[tuple[str, str]]]:
    """The language asked for by `?lang=` (the line's first language when it names none the
    line speaks), and (code, name) of every language the line speaks, for the switch."""
    script = line_script(current_app).get(db.session)
    codes = [lang.code for lang in script.languages]
    asked = (request.args.get("lang") or "").strip()
    language = asked if asked in codes else codes[0]
    return language, [(code, wording_for(code)["language_name"]) for code in codes]


# --- what every answer shares -------------------------------------------------------------------


def answer_cache() -> StaleWhileRefreshing:
    """This process's cache of public answers (made with the app, see `init_app`)."""
    return current_app.extensions["public_cache"]


def cache_seconds() -> int:
    return int(current_app.config["PUBLIC_CACHE_SECONDS"])


def callers_known() -> bool:
    return current_app.config["CALLER_NUMBERS"] != "none"


def zone_name() -> str:
    return current_app.config["LINE_TIMEZONE"]


def wants(kind: str) -> bool:
    """Whether the answer is `kind` (json, csv) rather than a page."""
    json_paths = (f"{public.url_prefix}/tally-key", f"{public.url_prefix}/receipts")
    return request.path.endswith("." + kind) or (kind == "json" and request.path.startswith(json_paths))


@public.before_request
def only_when_published():
    if not current_app.config["PUBLIC_TALLY"]:
        if wants("json"):
            return jsonify(error="The public tally is off on this line (PUBLIC_TALLY)."), 404
        if wants("csv"):
            return Response("The public tally is off on this line (PUBLIC_TALLY).\n", 404, mimetype="text/plain")
        words = wording_for("en")
        return render_template("public/off.html", words=words, lang="en"), 404
    return None


@public.after_request
def public_headers(response: Response) -> Response:
    """Cacheable by anyone for PUBLIC_CACHE_SECONDS when it is a plain answer to a GET (or a
    HEAD, which must say what the GET would); errors and the reference check are never stored."""
    if response.status_code == 200 and request.endpoint != "public.check" and request.method in ("GET", "HEAD"):
        response.headers["Cache-Control"] = f"public, max-age={cache_seconds()}"
    else:
        response.headers["Cache-Control"] = "no-store"
    response.headers.pop("Set-Cookie", None)
    response.headers["Access-Control-Allow-Origin"] = "*"  # figures anyone may read from anywhere
    return protected(response)


@public.errorhandler(BadParameter)
def bad_parameter(error: BadParameter):
    return error_answer(400, str(error))


@public.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return error_answer(error.code or 500, error.description or error.name)


EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@public.route("/", defaults={"path": ""}, methods=EVERY_METHOD)
@public.route("/<path:path>", methods=EVERY_METHOD)
def no_such_public_page(path: str):
    """Any other URL or method under `/public` (`/public/`, `/public/nope`, a POST): the public
    part's own 404, or while the tally is off what every public URL then gets; never the
    console's. A route of its own, which matches only what no other public route does, rather
    than a hook on every request."""
    language, _ = page_language()
    return error_answer(404, wording_for(language)["not_found"])


def error_answer(code: int, message: str):
    if wants("json"):
        return jsonify(error=message), code
    if wants("csv"):
        return Response(f"{message}\n", code, mimetype="text/plain")
    language, languages = page_language()
    return render_template(
        "public/error.html", words=wording_for(language), lang=language, languages=languages, message=message
    ), code


# --- the tally ------------------------------------------------------------------------------------


def today_local():
    return datetime.now(ZoneInfo(zone_name())).date()


def cached_tally() -> PublicTally:
    today = today_local()
    return answer_cache().get(("page", today), lambda: public_tally(today, zone_name(), callers_known()))


def cached_counts(since: datetime | None, until: datetime | None):
    return answer_cache().get(
        ("counts", since, until), lambda: public_counts(db.session, since, until, callers_known())
    )


@public.get("")
def tally_page():
    """The page, rendered once per language and cache period (a view from the cache is a
    lookup: no template, no database)."""
    language, languages = page_language()
    today = today_local()
    return answer_cache().get(("page-html", today, language), lambda: render_tally(language, languages))


def render_tally(language: str, languages: list[tuple[str, str]]) -> str:
    words = wording_for(language)
    shown = cached_tally()
    names = {t.slug: t.name(language) for t in shown.topics}
    labels = [f"{words['weekdays'][day.weekday()]} {day.day}" for day in shown.week]
    legend = [Legend(names[t.slug]) for t in shown.topics]
    chart = chart_layout(list(zip(labels, shown.week_calls, strict=True)), legend)
    return render_template(
        "public/tally.html",
        words=words,
        lang=language,
        languages=languages,
        shown=shown,
        names=names,
        chart=chart,
        zone=zone_name(),
        seconds=cache_seconds(),
    )


def window():
    """`since` and `until` as naive UTC; a bad value is a BadWindow (400 with `error`)."""
    return parse_window(request.args.get("since"), request.args.get("until"), zone_name())


@public.get("/counts.json")
def counts_json():
    since, until = window()
    body = answer_cache().get(
        ("counts.json", since, until), lambda: jsonify(cached_counts(since, until).as_dict()).data
    )
    return Response(body, mimetype="application/json")


@public.get("/counts.csv")
def counts_csv():
    since, until = window()

    def table() -> str:
        return counts_csv_text(cached_counts(since, until), line_script(current_app).get(db.session).districts)

    return Response(
        answer_cache().get(("counts.csv", since, until), table),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=counts.csv"},
    )


# --- "was my comment counted?" ---------------------------------------------------------------------


def looked_up(reference: str, language: str) -> tuple[int, str, str]:
    """(status, outcome, message) for a lookup of `reference`: found (counted or not),
    not_found or malformed. Says the topic and the day, nothing more."""
    words = wording_for(language)
    digits = typed_digits(reference)
    number = number_for(digits) if digits.isascii() and len(digits) in REFERENCE_DIGITS else None
    if number is None:
        return 400, "malformed", words["check_malformed"]
    row = db.session.execute(
        select(Recording.topic_id, Recording.duration, Recording.status, Recording.created_at, Call.started_at)
        .outerjoin(Call, Call.call_sid == Recording.call_sid)
        .where(numbered(number), or_(Call.is_test.is_(None), Call.is_test.is_(False)))  # never a test call
        .limit(1)
    ).first()
    if row is None:
        return 404, "not_found", words["check_not_found"].format(ref=digits)
    topic_id, duration, status, created_at, started_at = row
    topic = db.session.get(Topic, topic_id) if topic_id is not None else None
    topic_name = (
        (topic.names.get(language) or next(iter(topic.names.values())))
        if topic is not None and topic.public
        else words["check_hidden_topic"]
    )
    moment = started_at or created_at
    day = moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone_name())).date().isoformat()
    key = "check_found" if is_comment(topic_id, duration, status) else "check_received"
    return 200, "found", words[key].format(ref=digits, topic=topic_name, day=day)


@public.get("/check")
def check():
    language, languages = page_language()
    words = wording_for(language)
    reference = request.args.get("ref")
    status, message, headers = 200, None, {}
    if reference is not None:
        config = current_app.config
        window_length = timedelta(minutes=config["PUBLIC_CHECK_WINDOW_MINUTES"])
        verdict = admit_lookup(request.remote_addr, config["PUBLIC_CHECKS_PER_ADDRESS"], window_length)
        if not verdict.allowed:
            PUBLIC_CHECKS.labels("refused").inc()
            minutes = max(1, -(-verdict.retry_after // 60))
            status, message = 429, words["check_too_many"].format(minutes=minutes)
            headers["Retry-After"] = str(verdict.retry_after)
        else:
            status, outcome, message = looked_up(reference[:64], language)
            PUBLIC_CHECKS.labels(outcome).inc()
    return (
        render_template(
            "public/check.html",
            words=words,
            lang=language,
            languages=languages,
            reference=(reference or "")[:64],
            message=message,
            found=status == 200 and message is not None,
        ),
        status,
        headers,
    )


# --- receipts --------------------------------------------------------------------------------------


@public.get("/tally-key")
def tally_key():
    """The public key the receipts are signed with (404 when the line has none)."""
    try:
        key = signing.private_key(current_app.config["TALLY_SIGNING_KEY"])
    except signing.KeyMissing:
        return jsonify(error="This line signs no receipts yet (TALLY_SIGNING_KEY)."), 404
    public_key = signing.public_raw(key)
    return jsonify(algorithm="Ed25519", public_key=signing.b64(public_key), key_id=signing.key_id(public_key))


@public.get("/receipts")
def receipts():
    """Every receipt, in the order of the chain."""
    found = answer_cache().get(("receipts",), lambda: [published(r) for r in chain(db.session)])
    return jsonify(receipts=found)


@public.get("/receipts/<name>")
def receipt_file(name: str):
    """`YYYY-MM-DD.json`: the day's receipts, the standing one last; `YYYY-MM-DD.facts.json`:
    the facts the standing one covers."""
    day_text, _, kind = name.partition(".")
    if kind not in ("json", "facts.json"):
        return jsonify(error="Ask for YYYY-MM-DD.json or YYYY-MM-DD.facts.json."), 404
    day = parse_day(day_text, "day")  # a BadWindow is a 400 naming what is wrong
    if day is None:
        raise BadParameter("day", f"{shortened(day_text)!r} is not a day: write it like 2026-11-30.")
    if kind == "json":
        found = answer_cache().get(("receipts", day), lambda: [published(r) for r in receipts_of(db.session, day)])
    else:
        found = answer_cache().get(("facts", day), lambda: facts_export(db.session, day))
    if not found:
        return jsonify(error=f"{day} has no receipt yet."), 404
    return jsonify(found if kind == "facts.json" else {"day": day.isoformat(), "receipts": found})
