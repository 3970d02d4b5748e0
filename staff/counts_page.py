"""The counts page: `tally()` for a window, a chart of calls per hour or day by topic (each
bar is `tally()` of its own hour or day), a CSV of exactly the table shown, auto refresh.
`show` picks what the table counts: all calls, only the calls inside a district (`district`
names which when the line has several; the chart too), or positions once per caller.

Nothing here counts: every number comes from `models.tally.tally`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flask import Response, current_app, render_template, request

from models import db
from models.flags import FlagRules
from models.line import District
from models.summary import WHOLE_LINE
from models.tally import STANCE_NAMES, Tally, callers_inside, line_callers, tally

from .auth import record
from .console import console, current_script, date_presets, date_window, line_zone, today_local, url_with
from .csvfiles import csv_text
from .params import BadParameter, choice, whole_number
from .windows import local_midnight

MAX_HOURLY_DAYS = 3
MAX_BARS = 93
PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563", "#9333ea"]
REFRESH_SECONDS = 30
CSV_HEADER = ["topic", "name", "calls", "callers", "comments", "support", "oppose", "other"]
# With `show=voices` the last three are each caller's latest position, once per caller.
VOICES_CSV_HEADER = [*CSV_HEADER[:5], *(f"per_caller_{name}" for name in STANCE_NAMES)]
SHOWS = {"all": "All calls", "inside": "Inside the district", "voices": "One voice per caller"}
NO_NUMBERS = (
    "One voice per caller needs to tell callers apart, and this line keeps no caller numbers "
    "(CALLER_NUMBERS=none): each call counts as its own voice only in the other views."
)


@dataclass
class CountsView:
    first: date
    last: date
    since: datetime
    until: datetime
    result: Tally
    by: str
    chart: dict
    callers_known: bool
    line_callers: int | None  # distinct callers of the whole line; None when numbers are not kept
    show: str = "all"
    district: District | None = None  # with show "inside": which

    @property
    def header(self) -> list[str]:
        return VOICES_CSV_HEADER if self.show == "voices" else CSV_HEADER

    def rows(self) -> list[list]:
        """The table as shown: one row per topic, then calls with no topic, then the total.
        With `show` "voices" the position columns count each caller once."""
        topics = []
        for t in self.result.topics:
            figures = t.figures()
            if self.show == "voices":
                figures = [*figures[:3], *t.voice_figures()]
            topics.append([t.slug, t.name + ("" if t.enabled else " (switched off)"), *figures])
        # Comments and positions belong to one topic each, so their column sums are totals;
        # calls and callers are not (one call can choose several topics, one caller call about
        # several): those come from tally() and line_callers().
        sums = [sum(row[i] or 0 for row in topics) for i in (4, 5, 6, 7)]
        if self.show == "voices" and not self.callers_known:
            sums[1:] = ["", "", ""]
        callers = "" if self.line_callers is None else self.line_callers
        return [
            *topics,
            ["(none)", "Calls that chose no topic", self.result.unrouted, "", "", "", "", ""],
            ["(all)", "All calls", self.result.calls, callers, *sums],
        ]


def local_midnight_utc(day: date) -> datetime:
    """Midnight at the start of `day` in the line's zone, as naive UTC."""
    return local_midnight(day, current_app.config["LINE_TIMEZONE"])


def buckets(first: date, last: date, by: str) -> list[tuple[str, datetime, datetime]]:
    """(label, since, until) per hour or day from the start of `first` to the end of `last`."""
    out = []
    day = first
    while day <= last and len(out) < MAX_BARS * 24:
        start, end = local_midnight_utc(day), local_midnight_utc(day + timedelta(days=1))
        if by == "day":
            out.append((day.strftime("%b %-d"), start, end))
        else:
            hour = start
            while hour < end:
                label = hour.replace(tzinfo=UTC).astimezone(line_zone()).strftime("%-d %H:00")
                out.append((label, hour, hour + timedelta(hours=1)))
                hour += timedelta(hours=1)
        day += timedelta(days=1)
    return out


def axis_ticks(peak: int) -> list[int]:
    """Whole, evenly spaced ticks for an axis from 0 to at least `peak`: a step of 1, 2 or 5
    times a power of ten, the smallest that needs at most five steps (0/1/2/3, 0/2/4/6/8,
    0/5/10/15...); the last tick is the first multiple of the step at or above `peak`."""
    peak = max(int(peak), 1)
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            steps = -(-peak // step)  # peak / step, rounded up
            if steps <= 5:
                return [n * step for n in range(steps + 1)]
        magnitude *= 10


def chart(slots: list[tuple[str, datetime, datetime]], topics, inside: District | None = None) -> dict:
    """Stacked bars of calls per topic per slot (only those inside `inside`, when given),
    laid out for an inline SVG."""
    return chart_layout(chart_series(slots, inside), topics)


def chart_series(
    slots: list[tuple[str, datetime, datetime]], inside: District | None = None
) -> list[tuple[str, list[int]]]:
    """(label, calls per topic in `tally()`'s order) per slot (only those inside `inside`)."""
    series = []
    for label, since, until in slots:
        # Bars show calls only: no slot's distinct callers are counted (at a busy day's hours,
        # they would cost more than the rest of the page).
        counts = tally(db.session, since, until, callers_known=False, inside=inside, flags=False)
        series.append((label, [t.calls for t in counts.topics]))
    return series


def chart_layout(series: list[tuple[str, list[int]]], topics) -> dict:
    """Stacked bars of `series` (values in the order of `topics`), laid out for an inline SVG."""
    width, height, left, bottom, top = 900, 260, 40, 40, 10
    ticks = axis_ticks(max([sum(values) for _, values in series] + [0]))
    peak = ticks[-1]  # the axis's top: bars are drawn against it, so the ticks meet them
    step = (width - left - 10) / max(len(series), 1)
    bar = max(step * 0.75, 1)
    plot = height - bottom - top
    bars, labels = [], []
    every = max(1, len(series) // 12)
    for i, (label, values) in enumerate(series):
        x = left + i * step + (step - bar) / 2
        y = height - bottom
        for j, value in enumerate(values):
            if value:
                h = value / peak * plot
                y -= h
                bars.append(
                    {
                        "x": round(x, 1),
                        "y": round(y, 1),
                        "w": round(bar, 1),
                        "h": round(h, 1),
                        "color": PALETTE[j % len(PALETTE)],
                        "title": f"{label}: {topics[j].name} {value}",
                    }
                )
        if i % every == 0:
            labels.append({"x": round(x + bar / 2, 1), "text": label})
    return {
        "width": width,
        "height": height,
        "left": left,
        "bottom": height - bottom,
        "bars": bars,
        "labels": labels,
        "ticks": [{"y": round(height - bottom - v / peak * plot, 1), "v": v} for v in ticks],
        "legend": [{"name": t.name, "color": PALETTE[j % len(PALETTE)]} for j, t in enumerate(topics)],
        "empty": not bars,
    }


def counts_view(args) -> CountsView:
    """The counts for the window the URL asks for (today when it names none). Raises
    BadParameter when a parameter cannot be used."""
    today = today_local().isoformat()
    first = args.get("from", "").strip() or today
    days = date_window({"from": first, "to": args.get("to", "").strip() or first})
    count = (days.last - days.first).days + 1
    if count > MAX_BARS:
        raise BadParameter("to", f"Choose at most {MAX_BARS} days.")
    by = choice(args.get("by"), "by", ("hour", "day")) or ("hour" if count <= MAX_HOURLY_DAYS else "day")
    if by == "hour" and count > MAX_HOURLY_DAYS:
        by = "day"
    show = choice(args.get("show"), "show", SHOWS) or "all"
    inside = district_shown(args) if show == "inside" else None
    callers_known = current_app.config["CALLER_NUMBERS"] != "none"
    result = tally(
        db.session,
        days.since,
        days.until,
        callers_known=callers_known,
        inside=inside,
        voices=show == "voices",
        flag_rules=FlagRules.from_config(current_app.config),
    )
    picture = chart(buckets(days.first, days.last, by), result.topics, inside)
    if inside is not None:
        callers = None if not callers_known else result_line_callers(days.since, days.until, inside)
    else:
        callers = line_callers(db.session, days.since, days.until) if callers_known else None
    return CountsView(
        days.first, days.last, days.since, days.until, result, by, picture, callers_known, callers, show, inside
    )


def district_shown(args) -> District:
    """The district `district` names (the line's first when it names none); BadParameter when
    the line has none or not that one."""
    districts = current_script().districts
    if not districts:
        raise BadParameter("show", "The line has no district yet: set one in config/line.yaml (flask line sync).")
    name = (args.get("district") or "").strip()
    if not name:
        return districts[0]
    return districts[[d.name for d in districts].index(choice(name, "district", [d.name for d in districts]))]


def result_line_callers(since: datetime, until: datetime, inside: District) -> int:
    """Distinct callers of the whole line among the calls inside `inside`."""
    return callers_inside(db.session, since, until, inside).get(WHOLE_LINE, 0)


@console.get("/counts")
def counts():
    kept = {k: request.args[k] for k in ("from", "to", "by", "every", "show", "district") if request.args.get(k)}
    try:
        every = whole_number(request.args.get("every"), "every", 2, 3600, default=REFRESH_SECONDS)
        view, error = counts_view(request.args), None
    except BadParameter as exc:
        every, view, error = REFRESH_SECONDS, None, str(exc)
    template = "counts_live.html" if request.args.get("partial") else "counts.html"
    # The date fields show the window shown (today's when the URL names none).
    shown = {**kept, "from": view.first.isoformat(), "to": view.last.isoformat()} if view else kept
    return render_template(
        template,
        view=view,
        error=error,
        presets=date_presets(),
        filters=shown,
        shows=SHOWS,
        districts=current_script().districts,
        no_numbers=NO_NUMBERS,
        csv_url=url_with("console.counts_csv", kept),
        live_url=url_with("console.counts", kept, partial="1"),
        window_url=lambda first, last: url_with("console.counts", kept, **{"from": first, "to": last}),
        updated=datetime.now(line_zone()).strftime("%H:%M:%S"),
        every=every,
    ), (400 if error else 200)


@console.get("/counts.csv")
def counts_csv():
    try:
        view = counts_view(request.args)
    except BadParameter as exc:
        return Response(f"{exc}\n", 400, mimetype="text/plain")
    table = csv_text(view.header, view.rows())
    name = f"counts_{view.first}_to_{view.last}.csv"
    record("export_counts", f"counts {view.first}..{view.last}")
    db.session.commit()
    return Response(table, mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={name}"})
