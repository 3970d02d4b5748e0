"""/metrics (Prometheus text format, several gunicorn workers) and structured logs."""

from __future__ import annotations

import json
import logging

import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from ivr.metrics import LATENCY_BUCKETS, observe_all
from tests.conftest import Caller, Twilio, eventually


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


HOUSING = (("topic", "housing"),)


def test_metrics_across_gunicorn_workers(served_line, app):
    line = served_line(workers=2, threads=2)
    twilio = Twilio(lambda u, p, h: requests.post(u, data=p, headers=h, timeout=10), base=line.base)
    for _ in range(6):
        call = Caller(twilio)
        call.dial()
        call.press("1")
        call.press("3")
        call.speak(seconds=5)
    assert twilio.post("/twilio/voice", {"CallSid": "CA1"}, signature="wrong").status_code == 403
    recorded = ("commentline_webhooks_total", (("route", "/twilio/recorded"), ("status", "200")))
    eventually(  # the counts come from the facts, written a batch later; each worker's webhooks
        # reach the shared samples within about a second
        lambda: samples(requests.get(line.base + "/metrics", timeout=10).text),
        lambda found: found.get(("commentline_comments", HOUSING)) == 6 and found.get(recorded) == 6,
        timeout=15,
    )
    # Each scrape may reach either worker; every one must see the sum of both.
    for _ in range(4):
        text = requests.get(line.base + "/metrics", timeout=10).text
        found = samples(text)
        assert found[("commentline_webhooks_total", (("route", "/twilio/voice"), ("status", "200")))] == 6
        assert found[("commentline_webhooks_total", (("route", "/twilio/voice"), ("status", "403")))] == 1
        assert found[recorded] == 6
        assert found[("commentline_webhook_seconds_bucket", (("le", "+Inf"), ("route", "/twilio/topic")))] == 6
        assert found[("commentline_webhook_seconds_count", (("route", "/twilio/topic"),))] == 6
        assert found[("commentline_calls", HOUSING)] == 6
        assert found[("commentline_comments", HOUSING)] == 6
        assert found[("commentline_spool_depth", ())] == 0


def test_metrics_need_the_token_when_one_is_set(settings):
    from app import create_app

    app = create_app({**settings, "METRICS_TOKEN": "scrape-me"})
    client = app.test_client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200 and "commentline_spool_depth" in response.get_data(as_text=True)


def test_a_scrape_shows_its_own_process_webhooks_at_once(client, twilio):
    def answered() -> float:
        key = ("commentline_webhooks_total", (("route", "/twilio/voice"), ("status", "200")))
        return samples(client.get("/metrics").get_data(as_text=True)).get(key, 0)

    before = answered()
    for _ in range(3):
        assert twilio.call().dial().status == 200
    assert answered() == before + 3


SECONDS = st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(min_value=0, max_value=20, allow_nan=False))


@given(st.lists(SECONDS, max_size=40))
def test_observing_many_at_once_is_observing_each(seconds):
    """`observe_all` leaves a histogram as `observe` for each would, a bound's own value
    included in its bucket."""
    kept = {}
    for way in ("each", "all"):
        registry = CollectorRegistry()
        histogram = Histogram("h_seconds", "h", buckets=LATENCY_BUCKETS, registry=registry)
        if way == "each":
            for each in seconds:
                histogram.observe(each)
        else:
            observe_all(histogram, seconds)
        (family,) = registry.collect()
        kept[way] = {s.labels.get("le", s.name): s.value for s in family.samples if "created" not in s.name}
    assert kept["all"].keys() == kept["each"].keys()
    for name, value in kept["each"].items():
        assert abs(kept["all"][name] - value) <= 1e-9 * max(1.0, abs(value)), name


def test_metrics_without_a_token_only_on_loopback(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403


def test_log_lines_are_json_with_the_call_sid(twilio, app, capsys):
    from config.logs import configure_logging

    configure_logging("json")
    try:
        call = twilio.call()
        call.dial()
        twilio.post("/twilio/voice", {**call.params}, signature="bad")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        configure_logging("text")
    refused = [entry for entry in lines if "rejected" in entry["msg"]]
    assert refused and refused[0]["level"] == "warning" and refused[0]["path"] == "/twilio/voice"
    assert refused[0]["call_sid"] == call.sid
    assert logging.getLogger().handlers
