"""The command line: `flask line`, `flask tokens`, `flask counts`."""

from __future__ import annotations

import yaml
from sqlalchemy import select, update

from models import Call, CallTopic, HourlyCount, Topic, db


def test_line_call_plays_through_the_webhooks_and_counts(runner, api):
    result = runner.invoke(args=["line", "call", "--press", "1", "2", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "> Thank you for calling the public comment line. This call is recorded." in out
    assert "[presses 2]" in out and "If you support the new bus routes, press 1." in out
    assert "Your reference number is" in out and "Goodbye" in out
    transit = next(t for t in api("/api/v1/counts").json["topics"] if t["slug"] == "transit")
    assert (transit["calls"], transit["comments"], transit["stance"]["support"]) == (1, 1, 1)
    assert api("/api/v1/counts").json["calls"] == 1


def test_line_call_rejects_a_non_key(runner):
    result = runner.invoke(args=["line", "call", "--press", "1", "x"])
    assert result.exit_code != 0 and "is not a key" in result.output


def test_line_call_over_http_to_a_running_line(served_line, app):
    line = served_line(workers=1, threads=2)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["line", "call", "--url", line.base, "2", "9"])
    assert result.exit_code == 0, result.output
    assert "Para cualquier otro tema, oprima 9." in result.output


def test_tokens_create_list_revoke(runner, client):
    created = runner.invoke(args=["tokens", "create", "dashboard"])
    assert created.exit_code == 0
    token = created.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/line", headers=auth).status_code == 200
    assert runner.invoke(args=["tokens", "create", "dashboard"]).exit_code != 0
    listed = runner.invoke(args=["tokens", "list"]).output
    assert "dashboard" in listed and "active" in listed and token not in listed
    assert runner.invoke(args=["tokens", "revoke", "dashboard"]).exit_code == 0
    assert client.get("/api/v1/line", headers=auth).status_code == 401
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output
    assert runner.invoke(args=["tokens", "revoke", "nobody"]).exit_code != 0


def test_counts_verify_finds_a_summary_that_disagrees(runner, app):
    runner.invoke(args=["line", "call", "1", "1", "1"])
    ok = runner.invoke(args=["counts", "verify"])
    assert ok.exit_code == 0 and "agree" in ok.output
    with app.app_context():
        db.session.execute(update(CallTopic).values(stance="oppose"))
        db.session.commit()
    bad = runner.invoke(args=["counts", "verify"])
    assert bad.exit_code == 1 and "stance 'oppose', choices say 'support'" in bad.output
    with app.app_context():
        db.session.execute(update(CallTopic).values(stance="support"))
        db.session.execute(update(HourlyCount).where(HourlyCount.topic_id != 0).values(calls=HourlyCount.calls + 1))
        db.session.commit()
    bad = runner.invoke(args=["counts", "verify"])
    assert bad.exit_code == 1 and "calls 2, facts say 1" in bad.output
    rebuilt = runner.invoke(args=["counts", "rebuild"])
    assert rebuilt.exit_code == 0
    assert runner.invoke(args=["counts", "verify"]).exit_code == 0


def test_counts_show_prints_the_api_json(runner):
    runner.invoke(args=["line", "call", "1", "3"])
    result = runner.invoke(args=["counts", "show", "--since", "2000-01-01"])
    assert result.exit_code == 0 and '"calls": 1' in result.output
    assert runner.invoke(args=["counts", "show", "--since", "soon"]).exit_code != 0


def test_line_load_leaves_a_line_with_a_script_alone(runner):
    result = runner.invoke(args=["line", "load"])
    assert result.exit_code == 0 and "already has a script" in result.output


def test_line_sync_matches_topics_by_slug_and_never_deletes(runner, app, tmp_path, client, twilio):
    data = yaml.safe_load(open(app.config["LINE_CONFIG"]))
    data["topics"][0]["name"]["en-US"] = "the revised city budget"
    data["topics"] = [t for t in data["topics"] if t["slug"] != "housing"]
    data["topics"].append(
        {
            "slug": "parks",
            "digit": "4",
            "stance": False,
            "name": {"en-US": "parks", "es-US": "los parques", "ht": "pak yo"},
        }
    )
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    dry = runner.invoke(args=["line", "sync", "--file", str(path), "--dry-run"])
    assert "topic budget: name en-US: the proposed city budget → the revised city budget" in dry.output
    assert "(dry run" in dry.output
    drafted = runner.invoke(args=["line", "sync", "--file", str(path)])
    assert drafted.exit_code == 0 and "topic parks: added" in drafted.output and "Publish it" in drafted.output
    with app.app_context():  # the file is the draft: callers still hear the live script
        assert db.session.scalar(select(Topic.enabled).where(Topic.slug == "housing")) is True
    result = runner.invoke(args=["line", "sync", "--file", str(path), "--publish"])
    assert result.exit_code == 0, result.output
    assert "topic parks: added" in result.output and "topic housing: switched off" in result.output
    assert "Published as version" in result.output
    with app.app_context():
        assert db.session.scalar(select(Topic.enabled).where(Topic.slug == "housing")) is False
    call = twilio.call()
    call.dial()
    menu = call.press("1")
    assert "For the revised city budget, press 1." in menu.said and "For parks, press 4." in menu.said
    assert "housing" not in menu.said


def test_line_sync_brings_haitian_creole_into_a_line_that_had_two_languages(runner, app, tmp_path, twilio):
    shipped = yaml.safe_load(open(app.config["LINE_CONFIG"]))
    older = {**shipped, "languages": shipped["languages"][:2]}
    older["wording"] = {code: shipped["wording"][code] for code in ("en-US", "es-US")}
    older["topics"] = [{**t, "name": {c: t["name"][c] for c in ("en-US", "es-US")}} for t in shipped["topics"]]
    path = tmp_path / "two-languages.yaml"
    path.write_text(yaml.safe_dump(older, allow_unicode=True))
    assert runner.invoke(args=["line", "sync", "--publish", "--file", str(path)]).exit_code == 0
    app.extensions["line_script"].forget()
    assert "kreyòl" not in twilio.call().dial().said

    result = runner.invoke(args=["line", "sync", "--publish"])  # the shipped file
    assert result.exit_code == 0, result.output
    assert "languages: ht added (key 3)" in result.output and "wording ht: greeting" in result.output
    assert "topic budget: name ht" in result.output
    app.extensions["line_script"].forget()
    call = twilio.call()
    assert "Pou kreyòl ayisyen, peze 3." in call.dial().said
    menu = call.press("3")
    assert "Pou bidjè vil la pwopoze a, peze 1." in menu.said
    assert {(say.get("language"), say.get("voice")) for say in menu.says()} == {("fr-FR", "Polly.Lea")}
    with app.app_context():
        assert db.session.get(Call, call.sid).language == "ht"


def test_line_sync_rejects_a_broken_file(runner, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("languages: []\n")
    result = runner.invoke(args=["line", "sync", "--file", str(path)])
    assert result.exit_code != 0 and "at least one language" in result.output
