"""gunicorn settings for `web:` (see Procfile). Each can be overridden from the environment."""

import multiprocessing
import os
import shutil
import tempfile

from dotenv import load_dotenv

from config import SettingsError, number_setting

# Settings from a .env file in the working directory, as `flask` reads them (the environment wins).
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
