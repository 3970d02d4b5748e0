"""The public tally (/public): off by default, no cookies, the API's figures for the shown
topics, every language the line speaks, cached answers, the admins' choice of topics, and the
"was my comment counted?" lookup with its per-address limit."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import AuditEntry, Topic, db
from tests.console_support import leave_comment

WINDOWS = [
    {},
    {"since": "2000-01-01"},
    {"since": "2000-01-01", "until": "2999-01-01"},
    {"until": "2000-01-01"},
]


@pytest.fixture
def published(settings):
    settings["PUBLIC_TALLY"] = "on"
    return settings


def play_calls(twilio) -> list[str]:
    """Budget: 2 support (one caller twice), 1 oppose; transit: 1 other; one call that chose
    nothing. Returns the references heard."""
    refs = [
        leave_comment(twilio, "1", "1", From="+15035550111")[2],
        leave_comment(twilio, "1", "1", From="+15035550111")[2],
        leave_comment(twilio, "1", "2", From="+15035550112")[2],
        leave_comment(twilio, "2", "3", language="2", From="+15035550113")[2],
    ]
    call = twilio.call(From="+15035550114")
    call.dial()
    call.press("1")
    call.hang_up()
    return refs


def table(body: str, period: str) -> dict[str, list[str]]:
    """One period's table as shown: topic slug -> its cells."""
    section = re.search(rf'<table class="counts" data-period="{period}">(.*?)</table>', body, re.S).group(1)
    return {
        slug: re.findall(r'<td class="num">([^<]*)</td>', cells)
        for slug, cells in re.findall(r'<tr[^>]*data-topic="([^"]+)">(.*?)</tr>', section, re.S)
    }


def test_the_public_tally_is_off_unless_switched_on(client):
    for path in ("/public", "/public/counts.json", "/public/counts.csv", "/public/check?ref=1234567"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Set-Cookie" not in response.headers
    assert "not published" in client.get("/public").get_data(as_text=True)
    assert "PUBLIC_TALLY" in client.get("/public/counts.json").get_json()["error"]


def test_a_newcomer_switches_it_on_and_sees_the_count(published, client, twilio):
    play_calls(twilio)
    page = client.get("/public")
    assert page.status_code == 200
    assert page.headers["Cache-Control"].startswith("public, max-age=")
    assert "Set-Cookie" not in page.headers
    assert "Content-Security-Policy" in page.headers
    body = page.get_data(as_text=True)
    for period in ("today", "this_week", "all_time"):
        rows = table(body, period)
        #                    calls callers comments support oppose other
        assert rows["budget"] == ["3", "2", "3", "2", "1", "0"]
        assert rows["transit"] == ["1", "1", "1", "0", "0", "1"]
        assert rows["(none)"] == ["1"]
        assert rows["(all)"] == ["5", "4", "4", "2", "1", "1"]
    # The chart: calls this week per topic, each bar titled "<day>: <topic> <calls>".
    bars = re.findall(r"<title>[^<]*: ([^<]+) (\d+)</title>", body)
    assert {name: int(n) for name, n in bars} == {"the proposed city budget": 3, "the new bus routes": 1}
    # Nothing about a person: no number, no hash, no transcript, no audio.
    assert "+1503555" not in body and "<audio" not in body and "RE" + "0" * 4 not in body


def test_every_language_the_line_speaks(published, client, twilio):
    play_calls(twilio)
    english = client.get("/public").get_data(as_text=True)
    spanish = client.get("/public?lang=es-US").get_data(as_text=True)
    assert '<html lang="en-US">' in english and '<html lang="es-US">' in spanish
    assert "Was my comment counted?" in english and "¿Se contó mi comentario?" in spanish
    assert 'hreflang="es-US"' in english and 'hreflang="en-US"' in spanish
    assert "el presupuesto propuesto de la ciudad" in spanish
    creole = client.get("/public?lang=ht").get_data(as_text=True)
    assert '<html lang="ht">' in creole and "Èske yo konte kòmantè mwen an?" in creole
    assert "bidjè vil la pwopoze a" in creole and 'hreflang="ht"' in english
    # An unknown language is not an error: the page in the line's first language.
    assert client.get("/public?lang=xx%00").status_code == 200


@pytest.mark.parametrize("window", WINDOWS)
def test_public_counts_equal_the_api_for_the_same_window(published, client, twilio, api, window):
    play_calls(twilio)
    query = "&".join(f"{k}={v}" for k, v in window.items())
    ours = client.get("/public/counts.json?" + query)
    assert ours.status_code == 200 and "Set-Cookie" not in ours.headers
    assert ours.get_json() == api("/api/v1/counts", **window).get_json()
    assert client.get("/public/counts.csv?" + query).get_data() == api("/api/v1/counts.csv", **window).get_data()


def test_a_bad_window_is_400_json(published, client):
    for query in ("since=yesterday", "since=2026-12-01&until=2026-11-01", "until=0000-01-01", "since=%00"):
        response = client.get("/public/counts.json?" + query)
        assert response.status_code == 400, query
        assert response.get_json()["error"]
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/public/counts.csv?since=nope").status_code == 400


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=30), st.text(max_size=30))
def test_no_parameter_makes_a_500(published, client, since, until):
    for path in ("/public/counts.json", "/public/counts.csv", "/public", "/public/check"):
        response = client.get(path, query_string={"since": since, "until": until, "lang": since, "ref": until[:20]})
        assert response.status_code in (200, 400, 404, 429), (path, response.status_code)


def test_answers_are_cached_for_the_stated_seconds(published, app, client, twilio):
    play_calls(twilio)
    cache = app.extensions["public_cache"]
    client.get("/public/counts.json")
    computed = cache.computed
    for _ in range(20):
        assert client.get("/public/counts.json").get_json()["calls"] == 5
    assert cache.computed == computed  # within PUBLIC_CACHE_SECONDS: no new computation
    assert client.get("/public/counts.json").headers["Cache-Control"] == "public, max-age=5"
    assert client.head("/public/counts.json").headers["Cache-Control"] == "public, max-age=5"  # as its GET


def test_admins_choose_which_topics_are_public_and_it_is_audited(published, app, client, twilio, sign_in):
    play_calls(twilio)
    admin = sign_in("admin")
    page = admin.get("/admin/topics")
    assert "Shown on the public tally" in page.get_data(as_text=True)
    with app.app_context():
        transit = db.session.scalar(select(Topic).where(Topic.slug == "transit"))
        form = {"digit": transit.digit, "enabled": "on", "public_field": "1"}
        form.update({f"name_{code}": name for code, name in transit.names.items()})
        if transit.stance:
            form["stance"] = "on"
    assert admin.post("/admin/topics/transit", form).status_code == 302  # at once: not drafted
    app.extensions["public_cache"].clear()
    counts = client.get("/public/counts.json").get_json()
    assert [t["slug"] for t in counts["topics"]] == ["budget", "housing", "general"]
    assert counts["calls"] == 5  # the line's figures still cover every call
    assert 'data-topic="transit"' not in client.get("/public").get_data(as_text=True)
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "topic_public")).all()[-1]
        assert entry.target == "topic transit"
        assert entry.detail["before"] is True and entry.detail["after"] is False


# --- "was my comment counted?" -------------------------------------------------------------------


def test_a_reference_lookup_says_counted_topic_and_day_and_nothing_else(published, client, twilio):
    refs = play_calls(twilio)
    page = client.get(f"/public/check?ref={refs[0]}")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in page.headers
    body = page.get_data(as_text=True)
    assert re.search(
        rf"Comment {refs[0]} was received and counted under “the proposed city budget”, on \d{{4}}-\d\d-\d\d\.", body
    )
    assert "support" not in body.lower().split("was received")[1].split("</p>")[0]  # no position
    assert "+1503555" not in body and "transcript" not in body.lower()
    spanish = client.get(f"/public/check?ref={refs[3]}&lang=es-US").get_data(as_text=True)
    assert f"El comentario {refs[3]} se recibió y se contó" in spanish
    # Typed as people type it.
    assert client.get(f"/public/check?ref=%23{refs[0][:3]}-{refs[0][3:]}").status_code == 200


@pytest.mark.parametrize(
    "ref", ["", "abc", "123", "12345678901234567890", "１２３４５６７", "²²²²²²²", "0000000", "%00"]
)
def test_a_malformed_reference_gets_a_clear_answer(published, client, ref):
    response = client.get("/public/check", query_string={"ref": ref})
    assert response.status_code == 400
    assert "reference numbers are seven digits" in response.get_data(as_text=True)


def test_an_unknown_reference_is_not_found(published, client, twilio):
    play_calls(twilio)
    response = client.get("/public/check?ref=9999999")
    assert response.status_code == 404
    assert "No comment has the reference number 9999999" in response.get_data(as_text=True)


def test_lookups_are_limited_per_address_and_a_sweep_shows_in_metrics(published, app, client, twilio):
    app.config["PUBLIC_CHECKS_PER_ADDRESS"] = 3
    refs = play_calls(twilio)
    assert client.get("/public/check").status_code == 200  # the form alone is not a lookup
    for n in range(3):
        assert client.get(f"/public/check?ref={1000001 + n}").status_code in (200, 404)
    refused = client.get(f"/public/check?ref={refs[0]}")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many lookups" in refused.get_data(as_text=True)
    # Another address is not held back.
    other = client.get(f"/public/check?ref={refs[0]}", environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'commentline_public_checks_total\{outcome="refused"\} [1-9]', metrics)
    assert "commentline_public_check_addresses_held_back 1.0" in metrics


def test_the_limit_holds_across_processes(published, app, twilio):
    """Two apps (two processes' worth of state) on one database share one count."""
    from app import create_app

    app.config["PUBLIC_CHECKS_PER_ADDRESS"] = 2
    other = create_app({**published, "PUBLIC_CHECKS_PER_ADDRESS": "2"})
    assert app.test_client().get("/public/check?ref=1000001").status_code == 404
    assert other.test_client().get("/public/check?ref=1000002").status_code == 404
    assert app.test_client().get("/public/check?ref=1000003").status_code == 429
    assert other.test_client().get("/public/check?ref=1000003").status_code == 429
    with other.app_context():
        db.engine.dispose()


def test_the_counts_csv_has_the_api_header(published, client, twilio):
    play_calls(twilio)
    rows = list(csv.reader(io.StringIO(client.get("/public/counts.csv").get_data(as_text=True))))
    old = ["slug", "digit", "name", "calls", "callers", "comments", "support", "oppose", "other"]
    per_caller = ["per_caller_support", "per_caller_oppose", "per_caller_other"]
    assert rows[0] == [*old, "flagged", "callbacks", *per_caller]  # the line has no district


def test_under_gunicorn_no_cookie_and_one_limit_for_every_worker(published, app, twilio, served_line):
    """As the Procfile serves it: two workers of four threads. Twelve lookups at once from one
    address: exactly the limit's worth are answered, whichever worker took them, and the
    metrics (summed over the workers) count the rest as refused."""
    import concurrent.futures

    import requests

    published["PUBLIC_CHECKS_PER_ADDRESS"] = "4"
    refs = play_calls(twilio)
    line = served_line()
    page = requests.get(line.base + "/public?lang=es-US", timeout=10)
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    assert page.headers["Cache-Control"] == "public, max-age=5"
    assert "el presupuesto propuesto de la ciudad" in page.text
    assert requests.get(line.base + "/public/counts.json", timeout=10).json()["calls"] == 5
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(lambda _: requests.get(f"{line.base}/public/check?ref={refs[0]}", timeout=10), range(12))
        )
    assert sorted(a.status_code for a in answers) == [200] * 4 + [429] * 8
    assert all("Set-Cookie" not in a.headers for a in answers)
    metrics = requests.get(line.base + "/metrics", timeout=10).text
    assert 'commentline_public_checks_total{outcome="refused"} 8.0' in metrics
    assert 'commentline_public_checks_total{outcome="found"} 4.0' in metrics
