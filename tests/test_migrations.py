"""Migrations that move data: a summary is filled from the facts already stored, and recorded
prompts move into the script documents; downgrade past each, upgrade again, and nothing is lost."""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text

from config import PROJECT_DIR
from models import CallerDay, ScriptVersion, db, summary, utcnow
from models.drafts import draft_document, live_document
from models.line import line_script


def test_caller_days_are_filled_from_the_calls_already_counted(app, twilio):
    for number in ("+15035550101", "+15035550102", "+15035550101"):  # one caller twice
        call = twilio.call(From=number)
        call.dial()
        call.press("1")
        call.press("3")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CallerDay).where(CallerDay.topic_id != 0)) == 2
        db.session.remove()
        migrations = str(PROJECT_DIR / "migrations")
        downgrade(directory=migrations, revision="3e5313b61e71")
        upgrade(directory=migrations)
        assert db.session.scalar(select(func.count()).select_from(CallerDay).where(CallerDay.topic_id != 0)) == 2
        assert summary.verify(db.session) == []


AUDIO = ("digest", "name", "storage_key", "content_type", "seconds", "size_bytes", "created_at")
PROMPT = ("language", "key", "digest", "text", "source", "created_at")
VERSION = ("version", "published_at", "published_by")


def test_prompts_that_played_are_in_the_live_script_the_draft_and_each_version_after_migrating(app, twilio):
    """Recorded prompts became part of the script document: the ones that played before
    play after, on the live line, in the draft, and in every kept version."""
    digest = "ab" * 32
    with app.app_context():
        document = live_document(db.session)
        del document["prompts"]
        db.session.remove()
        migrations = str(PROJECT_DIR / "migrations")
        downgrade(directory=migrations, revision="f3a8b6c2d917")
        now = utcnow()
        with db.engine.begin() as conn:  # the tables as they were, written as that migration's data step would
            conn.execute(
                sa.table(*("prompt_audio", *map(sa.column, AUDIO))).insert(),
                dict(
                    zip(AUDIO, (digest, "c" * 40, f"prompts/{digest}.wav", "audio/wav", 1.5, 24044, now), strict=True)
                ),
            )
            conn.execute(
                sa.table(*("prompts", *map(sa.column, PROMPT))).insert(),
                dict(zip(PROMPT, ("ht", "greeting", digest, "Mèsi.", "upload", now), strict=True)),
            )
            settings = sa.table("line_settings", sa.column("draft", sa.JSON))
            conn.execute(settings.update().values(draft={**document, "general_topic": "budget"}))
            versions = sa.table(*("script_versions", sa.column("document", sa.JSON), *map(sa.column, VERSION)))
            conn.execute(
                versions.insert(), {"document": document, "version": 1, "published_at": now, "published_by": "system"}
            )
        upgrade(directory=migrations)
        playing = {"ht": {"greeting": digest}}
        assert live_document(db.session)["prompts"] == playing
        assert draft_document(db.session)["prompts"] == playing
        assert draft_document(db.session)["general_topic"] == "budget"  # the draft's own change stays
        assert db.session.scalar(select(ScriptVersion.document))["prompts"] == playing
        line_script(app).forget()
    assert twilio.call().dial().plays() == [f"http://localhost/prompts/{'c' * 40}.wav"]
    with app.app_context():
        db.session.remove()
        downgrade(directory=str(PROJECT_DIR / "migrations"), revision="f3a8b6c2d917")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT language, key, digest FROM prompts")).all() == [("ht", "greeting", digest)]
        upgrade(directory=str(PROJECT_DIR / "migrations"))
