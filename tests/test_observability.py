"""/metrics (Prometheus text format, several gunicorn workers) and structured logs."""

from __future__ import annotations

import json
import logging

import requests
from prometheus_client.parser import text_string_to_metric_families

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
    eventually(  # the counts come from the facts, written a batch later
        lambda: samples(requests.get(line.base + "/metrics", timeout=10).text),
        lambda found: found.get(("commentline_comments", HOUSING)) == 6,
        timeout=15,
    )
    # Each scrape may reach either worker; every one must see the sum of both.
    for _ in range(4):
        text = requests.get(line.base + "/metrics", timeout=10).text
        found = samples(text)
        assert found[("commentline_webhooks_total", (("route", "/twilio/voice"), ("status", "200")))] == 6
        assert found[("commentline_webhooks_total", (("route", "/twilio/voice"), ("status", "403")))] == 1
        assert found[("commentline_webhooks_total", (("route", "/twilio/recorded"), ("status", "200")))] == 6
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
