"""A stand-in for Twilio's media and REST endpoints, on loopback: a real HTTP server that
demands HTTP Basic auth, serves recordings as WAV or MP3, answers 404 while a recording is
"not ready", fails with 500s or answers slowly on demand, and records every request."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/Recordings/(?P<sid>RE\w+?)(?P<ext>\.wav|\.mp3|\.json)?$")
TYPES = {".wav": "audio/x-wav", "": "audio/x-wav", ".mp3": "audio/mpeg"}


@dataclass
class Seen:
    method: str
    sid: str | None
    ext: str
    status: int
    at: float = field(default_factory=time.time)


class TwilioStandIn:
    def __init__(self, account: str, token: str) -> None:
        self.account, self.token = account, token
        self.media: dict[str, dict[str, bytes]] = {}
        self.not_ready: Counter = Counter()  # sid -> 404s still to answer
        self.failures: Counter = Counter()  # sid -> 500s still to answer
        self.slow: dict[str, float] = {}  # sid -> seconds to wait before answering
        self.wrong_type: dict[str, str] = {}  # sid -> Content-Type to claim instead
        self.seen: list[Seen] = []  # each answer, as it is sent
        self.arrived: list[tuple[str, str | None]] = []  # each request, as it comes in (method, sid)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, sid: str, wav: bytes | None = None, mp3: bytes | None = None) -> None:
        self.media[sid] = {".wav": wav or b"", ".mp3": mp3 or b""}

    def requests(self, method: str = "GET", sid: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == method and (sid is None or s.sid == sid)]

    def deleted(self) -> list[str]:
        return [s.sid for s in self.requests("DELETE") if s.status == 204]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(
                self, status: int, body: bytes = b"", ctype: str = "application/json", sid=None, ext=""
            ) -> None:
                with standin.lock:
                    standin.seen.append(Seen(self.command, sid, ext, status))
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self):
                match = PATH.match(self.path)
                with standin.lock:
                    standin.arrived.append((self.command, match and match["sid"]))
                expected = base64.b64encode(f"{standin.account}:{standin.token}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self._answer(
                        401,
                        b'{"code": 20003, "message": "Authenticate"}',
                        sid=match and match["sid"],
                        ext=match and match["ext"] or "",
                    )
                    return None
                if not match or match["account"] != standin.account or match["sid"] not in standin.media:
                    self._answer(404, b'{"code": 20404}', sid=match and match["sid"])
                    return None
                return match["sid"], match["ext"] or ""

            def do_GET(self) -> None:
                found = self._route()
                if found is None:
                    return
                sid, ext = found
                with standin.lock:
                    not_ready = standin.not_ready[sid] > 0
                    failing = not not_ready and standin.failures[sid] > 0
                    if not_ready:
                        standin.not_ready[sid] -= 1
                    elif failing:
                        standin.failures[sid] -= 1
                if not_ready:
                    return self._answer(404, b'{"code": 20404, "message": "not found"}', sid=sid, ext=ext)
                if failing:
                    return self._answer(500, b'{"code": 20500}', sid=sid, ext=ext)
                time.sleep(standin.slow.get(sid, 0))
                body = standin.media[sid][".mp3" if ext == ".mp3" else ".wav"]
                self._answer(200, body, standin.wrong_type.get(sid, TYPES.get(ext, "application/json")), sid, ext)

            def do_DELETE(self) -> None:
                found = self._route()
                if found is None:
                    return
                sid, ext = found
                if ext != ".json":
                    return self._answer(405, sid=sid, ext=ext)
                standin.media.pop(sid, None)
                self._answer(204, sid=sid, ext=ext)

        return Handler
