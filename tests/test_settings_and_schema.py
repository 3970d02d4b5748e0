"""Settings, probes, and the schema that migrations build."""

from __future__ import annotations

import json
import os
import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from app import create_app
from config import PROJECT_DIR, SettingsError, load_settings, normalize_database_url
from facts import write_path
from models import Base, db


def test_production_refuses_to_start_without_a_secret_and_names_it(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": "s", "TWILIO_ACCOUNT_SID": "AC1", "INSTANCE_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN is not set"):
        load_settings(env)
    with pytest.raises(SettingsError, match="SECRET_KEY is not set"):
        load_settings({**env, "SECRET_KEY": "", "TWILIO_AUTH_TOKEN": "t"})


def test_production_is_the_default(tmp_path):
    with pytest.raises(SettingsError):
        load_settings({"INSTANCE_DIR": str(tmp_path)})


def test_development_generates_local_secrets_once_and_says_so(tmp_path, caplog):
    first = load_settings({"APP_ENV": "development", "INSTANCE_DIR": str(tmp_path)})
    second = load_settings({"APP_ENV": "development", "INSTANCE_DIR": str(tmp_path)})
    assert first["TWILIO_AUTH_TOKEN"] == second["TWILIO_AUTH_TOKEN"] and len(first["SECRET_KEY"]) >= 32
    assert json.loads((tmp_path / "dev-secrets.json").read_text())["SECRET_KEY"] == first["SECRET_KEY"]
    assert "generated local secrets" in caplog.text
    assert first["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'commentline.db'}"


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("CALLER_NUMBERS", "some", "CALLER_NUMBERS must be one of"),
        ("LINE_TIMEZONE", "Mars/Olympus", "not an IANA time zone"),
        ("LINE_CONFIG", "/nowhere.yaml", "is not a file"),
        ("PUBLIC_BASE_URL", "line.example.org", "must start with http"),
        ("PUBLIC_TALLY", "maybe", "PUBLIC_TALLY must be true or false"),
        ("TALLY_SIGNING_KEY", "not-a-key", "TALLY_SIGNING_KEY is not a key"),
        ("TALLY_PUBLISH_URL", "ftp://example.org", "must start with http"),
        ("FLAG_BURST_MINUTES", "99999999999", "FLAG_BURST_MINUTES must be at most 1,440"),
        ("FLAG_REPEAT_CALLS_PER_DAY", "10" * 20, "FLAG_REPEAT_CALLS_PER_DAY must be at most 1,000,000"),
        ("FLAG_SHORT_COMMENT_SECONDS", "86401", "FLAG_SHORT_COMMENT_SECONDS must be at most 86,400"),
    ],
)
def test_bad_settings_are_named(tmp_path, name, value, message):
    with pytest.raises(SettingsError, match=message):
        load_settings({"APP_ENV": "development", "INSTANCE_DIR": str(tmp_path), name: value})


def test_database_urls_use_psycopg3():
    assert normalize_database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_env_example_lists_every_setting():
    from config import PROJECT_DIR

    listed = {
        line.split("=")[0]
        for line in (PROJECT_DIR / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for name in (
        "APP_ENV",
        "DATABASE_URL",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "SECRET_KEY",
        "CALLER_NUMBERS",
        "LINE_TIMEZONE",
        "LINE_CONFIG",
        "PUBLIC_BASE_URL",
        "TRUSTED_PROXIES",
    ):
        assert name in listed


def test_migrations_build_exactly_the_models(app):
    """Migrated from empty (the fixtures never use create_all); Alembic finds no difference."""
    with app.app_context():
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(conn).get_table_names())
    assert {
        "calls",
        "choices",
        "call_topics",
        "recordings",
        "transcriptions",
        "topics",
        "line_settings",
        "api_tokens",
        "alembic_version",
    } <= tables


def test_livez_and_healthz(client):
    assert client.get("/livez").status_code == 200
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["database"] == "ok"


def test_healthz_is_503_when_the_database_is_gone(settings, tmp_path):
    app = create_app({**settings, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    client = app.test_client()
    assert client.get("/livez").status_code == 200
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["status"] == "unavailable"


def test_webhooks_answer_twiml_even_when_the_database_is_gone(settings):
    """No script can be read and nothing stored: the caller hears the script file's menus,
    and what they did waits in the spool."""
    from tests.conftest import Caller, in_process_twilio

    app = create_app({**settings, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    call = Caller(in_process_twilio(app))
    assert "For English, press 1." in call.dial().said
    assert "Please choose the topic" in call.press("1").said
    assert call.press("3").record is not None
    assert write_path(app).spool.depth() == 3


NUMERIC_SETTINGS = sorted(
    set(
        re.findall(
            r'number_setting\(\s*(?:env|os\.environ),\s*["\']([A-Z_]+)["\']',
            (PROJECT_DIR / "config" / "__init__.py").read_text(),
        )
    )
)


@pytest.mark.parametrize("name", NUMERIC_SETTINGS)
@given(value=st.sampled_from(["ten", "1e999", "nan", "-1", "0x10", "1,5"]) | st.text(alphabet="abc-/ ", min_size=1))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_numeric_setting_is_checked_and_named(tmp_path, name, value):
    """Every numeric setting is read by the one checked parser: a bad value names it."""
    if not value.strip():
        return
    with pytest.raises(SettingsError, match=name):
        load_settings({"APP_ENV": "development", "INSTANCE_DIR": str(tmp_path), name: value})


def test_a_gunicorn_worker_freezes_what_it_loaded(tmp_path):
    """gunicorn calls `post_worker_init` once a worker has loaded the app: afterwards what was
    loaded is frozen (no collection traverses it) and the youngest generation is collected
    less often; collection itself stays on."""
    import subprocess
    import sys

    probe = (
        "import gc, runpy\n"
        "import app\n"
        "app.create_app()\n"
        "hooks = runpy.run_path('config/gunicorn.py')\n"
        "before = gc.get_freeze_count()\n"
        "hooks['post_worker_init'](None)\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0], gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_DIR,
        env={**os.environ, "APP_ENV": "development", "INSTANCE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    before, frozen, young, enabled = done.stdout.split()
    assert (int(before), young, enabled) == (0, "7000", "True")
    assert int(frozen) > 50_000


def test_gunicorn_settings_are_checked_too(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import runpy; runpy.run_path('config/gunicorn.py')"],
        cwd=PROJECT_DIR,
        env={**os.environ, "WEB_THREADS": "four"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "commentline: WEB_THREADS must be a whole number, not 'four'"


@pytest.mark.parametrize(("skip", "threads"), [("", "7"), ("1", "4")])
def test_gunicorn_reads_the_folders_env_unless_told_not_to(tmp_path, skip, threads):
    """gunicorn, started in a folder with a `.env`, takes its settings from it, as `flask`
    does; `FLASK_SKIP_DOTENV=1` makes it read none (the suite's own processes run so)."""
    import subprocess
    import sys

    (tmp_path / ".env").write_text("WEB_THREADS=7\n")
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", str(PROJECT_DIR / "config/gunicorn.py"), "--print-config"]
        + ["app:create_app()"],
        cwd=tmp_path,
        env={
            **{name: value for name, value in os.environ.items() if name != "WEB_THREADS"},
            "PYTHONPATH": str(PROJECT_DIR),
            "APP_ENV": "development",
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "FLASK_SKIP_DOTENV": skip,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^threads\s+= (\d+)$", done.stdout, re.MULTILINE)[1] == threads
