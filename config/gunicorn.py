"""gunicorn settings for `web:` (see Procfile). Each can be overridden from the environment."""

import multiprocessing
import os

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
