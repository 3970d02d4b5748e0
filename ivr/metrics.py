"""`GET /metrics` in Prometheus' text format, correct across gunicorn's worker processes.

Under gunicorn, `config/gunicorn.py` sets PROMETHEUS_MULTIPROC_DIR before the workers start,
so each worker writes its samples to files there and a scrape of any worker sums them all.
Calls and comments by topic, and the spool depth, are read at scrape time from the stored
facts (through `tally()`), so they are right whichever instance is scraped.

Access: with METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`; without
it, /metrics answers only requests from loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from functools import lru_cache

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from facts import write_path
from models import db
from models.tally import tally

metrics = Blueprint("metrics", __name__)
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

WEBHOOKS = Counter(
    "commentline_webhooks_total", "Twilio webhooks answered, by route and HTTP status", ["route", "status"]
)
LATENCY = Histogram(
    "commentline_webhook_seconds",
    "Time to answer a Twilio webhook, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

PUBLIC_CHECKS = Counter(
    "commentline_public_checks_total",
    "Reference lookups on the public tally (/public/check), by outcome: found, not_found, malformed, refused",
    ["outcome"],
)


class WebhookMeter:
    """WSGI middleware: the time to answer each webhook (`/twilio/...`), by route and status,
    from the moment the request reaches the app to the moment its reply is ready, Flask's own
    work included. Outside Flask's request hooks, so that measuring costs the webhook two
    clock readings and two samples, and no context-local lookups."""

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
        latency, count = samples_for(path if path in self.routes else "unmatched", status)
        latency.observe(time.perf_counter() - started)
        count.inc()
        return reply


@lru_cache(maxsize=256)
def samples_for(route: str, status: str):
    """The latency histogram and the webhook counter of a route and status (looked up once:
    `labels()` takes a lock and builds a key on every call)."""
    return LATENCY.labels(route), WEBHOOKS.labels(route, status)


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
    registry = current_app.extensions.get("metrics_registry")
    if registry is None:  # built once per process, not on every scrape
        registry = current_app.extensions["metrics_registry"] = registry_for(current_app._get_current_object())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
