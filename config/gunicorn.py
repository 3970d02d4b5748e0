"""gunicorn settings for `web:` (see Procfile). Each can be overridden from the environment."""

import multiprocessing
import os
import shutil
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


def on_starting(server):
    """Refuse to start, in one clear line, when the settings are incomplete (production
    without its secrets, an unknown time zone...)."""
    from config import SettingsError, load_settings

    try:
        load_settings()
    except SettingsError as exc:
        server.log.error("Comment Line cannot start: %s", exc)
        raise SystemExit(2) from None
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
