"""gunicorn settings for `web:` (see Procfile). Each can be overridden from the environment."""

import multiprocessing
import os
import shutil
import sys
import tempfile

from dotenv import load_dotenv
from flask.helpers import get_load_dotenv

from config import SettingsError, number_setting, settle_garbage_collector

# Settings from a .env file in the working directory, as `flask` reads them (the environment
# wins); `FLASK_SKIP_DOTENV=1` skips it, as it does for `flask`.
if get_load_dotenv():
    load_dotenv(os.path.join(os.getcwd(), ".env"))

try:
    port = number_setting(os.environ, "PORT", 5000, int)
    workers = number_setting(os.environ, "WEB_WORKERS", multiprocessing.cpu_count(), int) or 1
    threads = number_setting(os.environ, "WEB_THREADS", 4, int) or 1
    max_requests = number_setting(os.environ, "WEB_MAX_REQUESTS", 0, int)
except SettingsError as exc:  # one clear line, not a traceback
    raise SystemExit(f"commentline: {exc}") from None
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{port}"
worker_class = "gthread"
keepalive = 75  # Twilio keeps connections open; so do load balancers
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
limit_request_line = 8190
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


# Prometheus: every worker writes its samples to files in one folder, emptied at start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="commentline-metrics-")


def refuse_incomplete_settings() -> None:
    """Refuse to start, in one line on stderr and with exit status 1, when the settings are
    incomplete (production without its secrets, an unknown time zone...). Run as this file is
    read, before gunicorn says anything."""
    from config import SettingsError, load_settings

    try:
        load_settings()
    except SettingsError as exc:
        sys.exit(f"Comment Line cannot start: {exc.message}")


refuse_incomplete_settings()


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def post_worker_init(worker):
    settle_garbage_collector()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
