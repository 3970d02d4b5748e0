"""`GET /metrics` in Prometheus' text format, correct across gunicorn's worker processes.

Under gunicorn, `config/gunicorn.py` sets PROMETHEUS_MULTIPROC_DIR before the workers start,
so each worker writes its samples to files there and a scrape of any worker sums them all.
Calls and comments by topic, and the spool depth, are read at scrape time from the stored
facts (through `tally()`), so they are right whichever instance is scraped.

Access: with METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`; without
it, /metrics answers only requests from loopback.
"""

from __future__ import annotations

import atexit
import collections
import hmac
import ipaddress
import logging
import os
import threading
import time
from bisect import bisect_left

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from facts import write_path
from facts.threads import This, start_named
from models import db
from models.tally import tally

metrics = Blueprint("metrics", __name__)
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

WEBHOOKS = Counter(
    "commentline_webhooks_total", "Twilio webhooks answered, by route and HTTP status", ["route", "status"]
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY = Histogram(
    "commentline_webhook_seconds", "Time to answer a Twilio webhook, by route", ["route"], buckets=LATENCY_BUCKETS
)
UPPER_BOUNDS = (*map(float, LATENCY_BUCKETS), float("inf"))  # the histogram's buckets, in order
PUBLISH_SECONDS = 1.0
log = logging.getLogger(__name__)

PUBLIC_CHECKS = Counter(
    "commentline_public_checks_total",
    "Reference lookups on the public tally (/public/check), by outcome: found, not_found, malformed, refused",
    ["outcome"],
)


class WebhookMeter:
    """WSGI middleware: the time to answer each webhook (`/twilio/...`), by route and status,
    from the moment the request reaches the app to the moment its reply is ready, Flask's own
    work included. Outside Flask's request hooks, so that measuring costs the webhook two
    clock readings and one sample handed to `SAMPLES`, and no context-local lookups."""

    def __init__(self, wsgi_app, routes: frozenset[str], prefix: str = "/twilio/") -> None:
        self.wsgi_app, self.routes, self.prefix = wsgi_app, routes, prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        status = "500"

        def starting(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        reply = self.wsgi_app(environ, starting)
        SAMPLES.add(path if path in self.routes else "unmatched", status, time.perf_counter() - started)
        return reply


class WebhookSamples:
    """The webhooks this process has answered and not yet put into Prometheus' samples.

    A request thread only appends (route, status, seconds) to a queue; `publish` adds them up
    and moves each count and each latency bucket they touched once. Under gunicorn every
    sample Prometheus keeps is a locked write to a file mapped into memory, preceded by a
    system call for the process id: four for each webhook, had they been written as they
    came. A thread of the process's own ("webhook-meter") publishes once a second, a scrape
    of /metrics publishes its own process's first, and the process publishes what is left as
    it exits; so another worker's figures are at most about a second behind."""

    def __init__(self, interval: float = PUBLISH_SECONDS) -> None:
        self.interval = interval
        self._pending: collections.deque[tuple[str, str, float]] = collections.deque()
        self._lock = threading.Lock()  # one publisher at a time; guards the start too
        self._pid: int | None = None

    def add(self, route: str, status: str, seconds: float) -> None:
        if self._pid != This.pid:
            self._start()
        self._pending.append((route, status, seconds))

    def _start(self) -> None:
        """First sample in this process (a fork publishes its own, from its own thread)."""
        with self._lock:
            if self._pid == This.pid:
                return
            self._pending.clear()  # a parent's, copied by the fork: the parent publishes them
            self._pid = This.pid
            start_named(self._run, "webhook-meter")
            atexit.register(self.publish)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.publish()
            except Exception:  # noqa: BLE001 - a broken metrics file must not stop the thread
                log.exception("webhook metrics could not be published")

    def publish(self) -> None:
        """Put every queued sample into Prometheus' samples."""
        with self._lock:
            counts: collections.Counter[tuple[str, str]] = collections.Counter()
            latencies: dict[str, list[float]] = {}
            while True:
                try:
                    route, status, seconds = self._pending.popleft()
                except IndexError:
                    break
                counts[route, status] += 1
                latencies.setdefault(route, []).append(seconds)
            for (route, status), count in counts.items():
                WEBHOOKS.labels(route, status).inc(count)
            for route, seconds in latencies.items():
                observe_all(LATENCY.labels(route), seconds)


def observe_all(histogram, seconds: list[float]) -> None:
    """What `histogram.observe(s)` for each of `seconds` does, each bucket and the sum moved
    once. Reaches into prometheus_client's histogram (its `_buckets`, one value per upper
    bound, and `_sum`, as in 0.26), and observes one by one where they are not so."""
    buckets, total = getattr(histogram, "_buckets", None), getattr(histogram, "_sum", None)
    if total is None or not isinstance(buckets, list) or len(buckets) != len(UPPER_BOUNDS):
        for each in seconds:
            histogram.observe(each)
        return
    fell = collections.Counter(bisect_left(UPPER_BOUNDS, each) for each in seconds)  # the first bound >= it
    total.inc(sum(seconds))
    for bucket, count in fell.items():
        buckets[bucket].inc(count)


SAMPLES = WebhookSamples()


def meter_webhooks(app) -> None:
    """Measure every webhook the app answers (its routes under `/twilio/` by their rule)."""
    routes = frozenset(rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/twilio/"))
    app.wsgi_app = WebhookMeter(app.wsgi_app, routes)


class FactsCollector:
    """Gauges read at scrape time: the counts from the stored facts, and the spool depth."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        spool = GaugeMetricFamily("commentline_spool_depth", "Transactions waiting in this machine's spool")
        spool.add_metric([], write_path(self.app).spool.depth())
        yield spool
        foreign = GaugeMetricFamily(
            "commentline_spool_foreign_files", "Spool files written for another database, set aside, never replayed"
        )
        foreign.add_metric([], len(write_path(self.app).spool.foreign()))
        yield foreign
        calls = GaugeMetricFamily(
            "commentline_calls", 'Calls by topic (all time; topic "" is every call)', labels=["topic"]
        )
        comments = GaugeMetricFamily("commentline_comments", "Comments by topic (all time)", labels=["topic"])
        try:
            counted = tally(db.session, flags=False)
        except SQLAlchemyError:
            db.session.rollback()
            return
        calls.add_metric([""], counted.calls)
        for topic in counted.topics:
            calls.add_metric([topic.slug], topic.calls)
            comments.add_metric([topic.slug], topic.comments)
        yield calls
        yield comments
        for extra in self.app.extensions.get("metrics_gauges", []):
            yield from extra()


def registry_for(app) -> CollectorRegistry:
    registry = CollectorRegistry()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(WEBHOOKS)
        registry.register(LATENCY)
        registry.register(PUBLIC_CHECKS)
    registry.register(FactsCollector(app))
    return registry


def allowed() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@metrics.get("/metrics")
def scrape():
    if not allowed():
        abort(403, description="Send the METRICS_TOKEN as a bearer token, or scrape from loopback.")
    SAMPLES.publish()  # this process's own, at least, are current
    registry = current_app.extensions.get("metrics_registry")
    if registry is None:  # built once per process, not on every scrape
        registry = current_app.extensions["metrics_registry"] = registry_for(current_app._get_current_object())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
