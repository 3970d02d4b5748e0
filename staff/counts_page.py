"""The counts page: `tally()` for a window, a chart of calls per hour or day by topic (each
bar is `tally()` of its own hour or day), a CSV of the table shown (with each row's flagged
calls and call-backs, which the page shows in its second table), auto refresh.
`show` picks what the table counts: all calls, only the calls inside a district (`district`
names which when the line has several; the chart too), or positions once per caller.

The table adds up: calls that chose at least one topic, calls that chose no topic and blocked
calls are all the calls. The topic rows do not: a call that chose several topics counts once
under each.

`district`, whatever `show` is, must be empty or the name of one of the line's districts (as
the API's `district` must): anything else is a 400 naming the districts the line has.

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

from .api import FLAG_COLUMNS, district_named
from .auth import record
from .console import console, current_script, date_presets, date_window, line_zone, today_local, url_with
from .csvfiles import csv_text
from .params import BadParameter, choice, whole_number
from .windows import local_midnight

MAX_HOURLY_DAYS = 3
MAX_BARS = 93
PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563", "#9333ea"]
REFRESH_SECONDS = 30
# The table's columns; with `show=voices` the last three are each caller's latest position,
# once per caller. The CSV has these, then `FLAG_COLUMNS` (flagged, callbacks), named and
# ordered as in the API's counts.csv.
TABLE_COLUMNS = ["topic", "name", "calls", "callers", "comments", "support", "oppose", "other"]
VOICES_TABLE_COLUMNS = [*TABLE_COLUMNS[:5], *(f"per_caller_{name}" for name in STANCE_NAMES)]
CSV_HEADER = [*TABLE_COLUMNS, *FLAG_COLUMNS]
VOICES_CSV_HEADER = [*VOICES_TABLE_COLUMNS, *FLAG_COLUMNS]
SHOWS = {"all": "All calls", "inside": "Inside the district", "voices": "One voice per caller"}
NO_NUMBERS = (
    "One voice per caller needs to tell callers apart, and this line keeps no caller numbers "
    "(CALLER_NUMBERS=none): each call counts as its own voice only in the other views."
)


@dataclass(frozen=True)
class CountsRow:
    """One row of the counts table. `key` is the topic's slug, or one of "(routed)" (calls
    that chose at least one topic), "(none)" (calls that chose no topic, blocked ones aside),
    "(blocked)" (calls from a number on the block list) and "(all)"; `kind` (its CSS class)
    is "topic", "routed", "unrouted", "blocked" or "total". `figures` are the table's cells
    after the name (calls, callers, comments, three positions; "" where a figure does not
    apply). `flagged` and `callbacks` are the second table's figures for the row ("" where it
    has none): the CSV carries them after the table's columns."""

    key: str
    name: str
    kind: str
    figures: list
    flagged: int | str = ""
    callbacks: int | str = ""

    def csv_cells(self) -> list:
        return [self.key, self.name, *self.figures, self.flagged, self.callbacks]


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
        """The CSV's header: the table's columns, then `flagged,callbacks`."""
        return VOICES_CSV_HEADER if self.show == "voices" else CSV_HEADER

    @property
    def routed(self) -> int:
        """Calls that chose at least one topic: all calls but the unrouted and the blocked ones
        (`tally()` counts `unrouted` as exactly those left after these)."""
        return self.result.calls - self.result.unrouted - self.result.blocked

    @property
    def callbacks_asked(self) -> int:
        """Call-backs asked, over all topics (a call that asked about two topics counts twice)."""
        return sum(t.callbacks for t in self.result.topics)

    def rows(self) -> list[CountsRow]:
        """The table as shown: one row per topic, then calls that chose at least one topic,
        calls that chose no topic, blocked calls and all calls. The last four add up: routed +
        unrouted + blocked = all. The topic rows do not add up to the routed row when a call
        chose several topics (it counts under each). With `show` "voices" the position
        columns count each caller once."""
        topics = []
        for t in self.result.topics:
            figures = t.figures()
            if self.show == "voices":
                figures = [*figures[:3], *t.voice_figures()]
            name = t.name + ("" if t.enabled else " (switched off)")
            topics.append(CountsRow(t.slug, name, "topic", figures, t.flagged, t.callbacks))
        # Comments and positions belong to one topic each, so their column sums are totals;
        # calls and callers are not (one call can choose several topics, one caller call about
        # several): those come from tally() and line_callers().
        sums = [sum(row.figures[i] or 0 for row in topics) for i in (2, 3, 4, 5)]
        if self.show == "voices" and not self.callers_known:
            sums[1:] = ["", "", ""]
        callers = "" if self.line_callers is None else self.line_callers
        blank = ["", "", "", "", ""]  # callers, comments and positions: not counted for these rows
        return [
            *topics,
            CountsRow("(routed)", "Calls that chose at least one topic", "routed", [self.routed, *blank]),
            CountsRow("(none)", "Calls that chose no topic", "unrouted", [self.result.unrouted, *blank]),
            CountsRow("(blocked)", "Blocked calls", "blocked", [self.result.blocked, *blank]),
            CountsRow(
                "(all)",
                "All calls",
                "total",
                [self.result.calls, callers, *sums],
                self.result.flagged,
                self.callbacks_asked,
            ),
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
    script = current_script()
    districts = script.districts
    named = district_named(args.get("district"), script)  # checked whatever `show` is, as the API does
    inside = None
    if show == "inside":
        if not districts:
            raise BadParameter("show", "The line has no district yet: set one in config/line.yaml (flask line sync).")
        inside = named or districts[0]
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


def result_line_callers(since: datetime, until: datetime, inside: District) -> int:
    """Distinct callers of the whole line among the calls inside `inside`."""
    return callers_inside(db.session, since, until, inside).get(WHOLE_LINE, 0)


@console.get("/counts")
def counts():
    kept = {k: request.args[k] for k in ("from", "to", "by", "every", "show", "district") if request.args.get(k)}
    try:
        every = whole_number(request.args.get("every"), "every", 2, 3600, default=REFRESH_SECONDS)
        view, error, refused = counts_view(request.args), None, None
    except BadParameter as exc:
        every, view, error, refused = REFRESH_SECONDS, None, str(exc), exc.name
    # The form shows a refused value as typed, to be mended; no link carries it.
    linked = {name: value for name, value in kept.items() if name != refused}
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
        csv_url=url_with("console.counts_csv", linked),
        live_url=url_with("console.counts", linked, partial="1"),
        window_url=lambda first, last: url_with("console.counts", linked, **{"from": first, "to": last}),
        updated=datetime.now(line_zone()).strftime("%H:%M:%S"),
        every=every,
    ), (400 if error else 200)


@console.get("/counts.csv")
def counts_csv():
    try:
        view = counts_view(request.args)
    except BadParameter as exc:
        return Response(f"{exc}\n", 400, mimetype="text/plain")
    table = csv_text(view.header, [row.csv_cells() for row in view.rows()])
    name = f"counts_{view.first}_to_{view.last}.csv"
    record("export_counts", f"counts {view.first}..{view.last}")
    db.session.commit()
    return Response(table, mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={name}"})
