"""A migration that adds a summary fills it from the facts already stored: downgrade past
it, upgrade again, and the summaries still agree with the facts."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select

from config import PROJECT_DIR
from models import CallerDay, db, summary


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
