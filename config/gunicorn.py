"""gunicorn settings for `web:` (see Procfile). Each can be overridden from the environment."""

import multiprocessing
import os
import shutil
import sys
import tempfile

from dotenv import load_dotenv

# Settings from a .env file in the working directory, as `flask` reads them (the environment wins).
load_dotenv(os.path.join(os.getcwd(), ".env"))

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 4))
keepalive = 75  # Twilio keeps connections open; so do load balancers
timeout = 30
graceful_timeout = 20
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", 0))
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


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
