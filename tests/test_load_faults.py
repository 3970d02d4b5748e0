"""Under load, through failures, against gunicorn: every webhook delivered twice, a web worker
killed mid-load, two app instances on one database. The counts are exact."""

from __future__ import annotations

import os
import signal
import time

from models import db
from models.tokens import create_token
from tests import load


def api_token(app) -> str:
    with app.app_context():
        token = create_token(db.session, f"load-{time.monotonic_ns()}")
        db.session.commit()
    return token


def test_every_webhook_delivered_twice_half_at_once(served_line, app):
    line = served_line(workers=2, threads=8)
    delivery = load.Delivery([line.base], twice=True)
    played = load.play_all(delivery, load.plans(120, seed=11))
    expected = load.expected_counts(played)
    assert load.counts_settled(line.base, api_token(app), expected) == expected
    assert load.unfound_references(app, played) == {}


def workers_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return children


def test_a_web_worker_killed_mid_load(served_line, app):
    line = served_line(workers=2, threads=4)
    planned = load.plans(200, seed=12)
    delivery = load.Delivery([line.base])
    killed = []

    def kill_workers():
        for _ in range(2):
            deadline = time.monotonic() + 20
            while delivery.webhooks < 150 * (len(killed) + 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            victims = workers_of(line.process.pid)
            assert victims, "no gunicorn worker to kill"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    played = load.play_all(delivery, planned, during=kill_workers)
    assert len(killed) == 2
    assert delivery.failures > 0, "the kill did not hit a request: the test proved nothing"
    expected = load.expected_counts(played)
    assert load.counts_settled(line.base, api_token(app), expected) == expected
    assert load.unfound_references(app, played) == {}


def test_two_instances_on_one_database(served_line, app):
    """Nothing a call needs is kept in a process: its webhooks may reach either instance."""
    first, second = served_line(workers=1, threads=4), served_line(workers=1, threads=4)
    delivery = load.Delivery([first.base, second.base])  # every call's webhooks alternate between them
    played = load.play_all(delivery, load.plans(120, seed=13))
    expected = load.expected_counts(played)
    assert load.counts_settled(first.base, api_token(app), expected) == expected
    assert load.counts_seen(second.base, api_token(app)) == expected
    assert load.unfound_references(app, played) == {}
