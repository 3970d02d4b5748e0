"""Time the inbox's page query at a million comments on PostgreSQL.

    .venv/bin/python scripts/inbox_bench.py [N]

Drops and remakes the database `commentline_bench_console` on 127.0.0.1 (user postgres),
migrates it, fills it with N calls and comments (half transcribed, a third reviewed) spread
over N*2 seconds, then times one inbox page for common filters, first, middle and last page.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from config import normalize_database_url  # noqa: E402
from models import Recording, db, utcnow  # noqa: E402
from models.comments import InboxFilter, encode_cursor, find_comments  # noqa: E402
from models.line import load_script, read_script_file  # noqa: E402
from models.recordings import reference_for  # noqa: E402
from tests.conftest import line_env, migrate_to_head  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432"
NAME = "commentline_bench_console"
FILL = [
    """INSERT INTO calls (call_sid, started_at, caller_hash, language)
       SELECT 'CA' || i, :now - (:n - i) * interval '2 seconds', md5((i % 50000)::text), 'en-US'
       FROM generate_series(1, :n) i""",
    """INSERT INTO recordings (recording_sid, call_sid, topic_id, stance, language, duration, status, created_at,
                               media_url)
       SELECT 'RE' || i, 'CA' || i, 1 + i % 4, (ARRAY['support', 'oppose', 'other', NULL])[1 + i % 4], 'en-US',
              5 + i % 100, 'completed', :now - (:n - i) * interval '2 seconds',
              'https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE' || i
       FROM generate_series(1, :n) i""",
    """INSERT INTO transcriptions (recording_sid, source, status, text, created_at, updated_at)
       SELECT 'RE' || i, 'twilio', 'completed',
              'comment number ' || i || ' about ' || (ARRAY['buses', 'parks', 'rent', 'taxes'])[1 + i % 4], :now, :now
       FROM generate_series(1, :n, 2) i""",
    """INSERT INTO comment_states (recording_id, reviewed_at, tags, updated_at)
       SELECT i, :now, '[]', :now FROM generate_series(1, :n, 3) i""",
]


def main(n: int) -> None:
    admin = create_engine(normalize_database_url(f"{SERVER}/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {NAME}"))
        conn.execute(text(f"CREATE DATABASE {NAME}"))
    admin.dispose()
    url, instance = f"{SERVER}/{NAME}", Path(tempfile.mkdtemp())
    migrate_to_head(url, instance)
    app = create_app(line_env(url, instance))
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
        now, started = utcnow(), time.time()
        for statement in FILL:
            db.session.execute(text(statement), {"now": now, "n": n})
        db.session.commit()
        db.session.connection().exec_driver_sql("ANALYZE")
        db.session.commit()
        print(f"filled {n} comments in {time.time() - started:.0f} s")
        day = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        cases = {
            "newest": InboxFilter(),
            "topic": InboxFilter(topic_id=2),
            "topic, yesterday": InboxFilter(topic_id=2, since=day, until=day + timedelta(days=1)),
            "not reviewed": InboxFilter(reviewed=False),
            "reviewed, topic": InboxFilter(reviewed=True, topic_id=3),
            "has transcript": InboxFilter(has_transcript=True),
            "no transcript": InboxFilter(has_transcript=False),
            "stance oppose": InboxFilter(stance="oppose"),
            "search a common word": InboxFilter(search="parks"),
            "search a rare phrase": InboxFilter(search="comment number 12345 "),
            "search a reference": InboxFilter(search=reference_for(12345)),
            "a day three weeks ago": InboxFilter(since=now - timedelta(days=21), until=now - timedelta(days=20)),
        }
        for name, f in cases.items():
            for before in (None, n // 2, 10):
                cursor = encode_cursor(db.session.get(Recording, before)) if before else None
                started = time.time()
                rows, _ = find_comments(db.session, f, before=cursor, limit=50)
                took = (time.time() - started) * 1000
                print(f"{name:24s} before id {str(before):8s} {len(rows):3d} rows {took:7.1f} ms")
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
