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

from flask import Blueprint, Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

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


def begin_webhook() -> None:
    """Start the webhook's clock, and name its call for every log line it writes."""
    g.webhook_started = time.perf_counter()
    g.call_sid = request.form.get("CallSid") or None


def observe(response: Response) -> Response:
    started = g.pop("webhook_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        latency, count = samples_for(route, response.status_code)
        latency.observe(time.perf_counter() - started)
        count.inc()
    return response


@lru_cache(maxsize=256)
def samples_for(route: str, status: int):
    """The latency histogram and the webhook counter of a route and status (looked up once:
    `labels()` takes a lock and builds a key on every call)."""
    return LATENCY.labels(route), WEBHOOKS.labels(route, str(status))


class FactsCollector:
    """Gauges read at scrape time: the counts from the stored facts, and the spool depth."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        spool = GaugeMetricFamily("commentline_spool_depth", "Transactions waiting in this machine's spool")
        spool.add_metric([], self.app.extensions["spool"].depth())
        yield spool
        calls = GaugeMetricFamily(
            "commentline_calls", 'Calls by topic (all time; topic "" is every call)', labels=["topic"]
        )
        comments = GaugeMetricFamily("commentline_comments", "Comments by topic (all time)", labels=["topic"])
        try:
            counted = tally(db.session)
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
