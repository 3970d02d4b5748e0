"""Log lines as structured records: one JSON object per line, carrying the call's `CallSid`
when the line is written while handling a webhook (`LOG_FORMAT=json`, the production default),
or plain text for a terminal (`LOG_FORMAT=text`, the development default)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import g, has_request_context, request

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s"


class RequestContext(logging.Filter):
    """Adds `call_sid` and `path` to every record made during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        call_sid = path = None
        if has_request_context():
            path = request.path
            call_sid = g.get("call_sid")
        record.call_sid, record.path = call_sid, path
        record.call = f" [{call_sid}]" if call_sid else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("call_sid", "path"):
            if getattr(record, key, None):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Give the root logger one stderr handler in the chosen format (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_comment_line", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._comment_line = True
    handler.addFilter(RequestContext())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
