"""The database going away, as the served line (real gunicorn) sees it on PostgreSQL.

- After PostgreSQL ends the line's sessions (a restart, a failover; here
  `pg_terminate_backend` from a separate connection), no request fails: each pooled
  connection is checked before use and replaced when it is dead.
- While the database is really away (here a TCP relay in front of it that drops every
  connection and refuses new ones), the API answers 503 in JSON and the console its error
  page with 503, never a 500; when it is back, everything answers 200 again."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import normalize_database_url
from tests.conftest import eventually
from tests.console_support import CSRF, PASSWORD, make_user

API_PAGES = ("/api/v1/counts", "/api/v1/comments", "/api/v1/line")
CONSOLE_PAGES = ("/inbox", "/counts", "/export")


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is a file: there is no server to restart and no connection it can end")


def end_the_line_sessions(database_url: str) -> int:
    """What a restart does to the line: every other session on its database ended."""
    engine = create_engine(normalize_database_url(database_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as connection:
        ended = connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    engine.dispose()
    return len(ended)


class Visitor:
    """GETs the console (signed in as a person) and the API (with a bearer token) over HTTP."""

    def __init__(self, base: str, email: str, api_token: str) -> None:
        self.base, self.api_headers = base, {"Authorization": f"Bearer {api_token}"}
        browser = requests.Session()
        token = CSRF.search(browser.get(base + "/sign-in", timeout=10).text).group(1)
        signed = browser.post(
            base + "/sign-in",
            data={"email": email, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=10,
        )
        assert signed.status_code == 302, signed.text[:300]
        self.cookies = browser.cookies.get_dict()

    def get(self, path: str) -> requests.Response:
        if path.startswith("/api/"):
            return requests.get(self.base + path, headers=self.api_headers, timeout=30)
        return requests.get(self.base + path, cookies=self.cookies, allow_redirects=False, timeout=30)

    def statuses(self, rounds: int) -> list[tuple[str, int]]:
        """Every page `rounds` times, eight at once (so each process uses several of its pooled
        connections), as (path, status)."""
        paths = [*API_PAGES, *CONSOLE_PAGES] * rounds
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda path: (path, self.get(path).status_code), paths))


@pytest.fixture
def visitor_of(app, api_token):
    """`visitor_of(line)`: a Visitor of a served line, with a staff account to sign in as."""
    make_user(app, "ann@example.org")
    return lambda line: Visitor(line.base, "ann@example.org", api_token)


def test_a_database_restart_costs_no_request(database_url, served_line, visitor_of):
    postgres_only(database_url)
    line = served_line(workers=2, threads=4)
    visitor = visitor_of(line)
    assert {status for _, status in visitor.statuses(rounds=4)} == {200}  # every pool holds connections
    assert end_the_line_sessions(database_url) >= 2
    after = visitor.statuses(rounds=4)
    assert [(path, status) for path, status in after if status != 200] == []
    assert requests.get(line.base + "/healthz", timeout=10).status_code == 200


class Relay:
    """A TCP relay on loopback to PostgreSQL that can go away (drop every connection, refuse
    new ones) and come back on the same port, as a database server does."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._serve(self.listener)

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                if listener.fileno() == -1:
                    return
                continue
            upstream.settimeout(None)
            with self.lock:
                self.open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()
        with self.lock:
            self.open.discard(end)

    def go_away(self) -> None:
        self._close(self.listener)
        with self.lock:
            ends = list(self.open)
        for end in ends:
            self._close(end)

    def come_back(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port
        self._serve(self.listener)


@pytest.fixture
def relay(database_url, settings, app):
    """The served line's database behind a Relay (the test's own `app` connects directly)."""
    postgres_only(database_url)
    url = make_url(normalize_database_url(database_url))
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    settings["DATABASE_URL"] = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    yield relay
    relay.go_away()


def test_while_the_database_is_away_the_line_answers_503(relay, served_line, visitor_of):
    line = served_line(workers=2, threads=4)
    visitor = visitor_of(line)
    assert {status for _, status in visitor.statuses(rounds=2)} == {200}
    relay.go_away()
    for path in API_PAGES:
        response = visitor.get(path)
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        assert response.json() == {"error": "The database is not answering just now. Try again in a minute."}
        assert response.headers["Retry-After"] == "30"
    for path in CONSOLE_PAGES:
        response = visitor.get(path)
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        assert response.headers["Content-Type"].startswith("text/html")
        assert "The database is not answering just now" in response.text and "Traceback" not in response.text
        assert response.headers["Content-Security-Policy"]  # the console's error page, protected
    assert requests.get(line.base + "/healthz", timeout=10).status_code == 503
    relay.come_back()
    back = eventually(lambda: visitor.statuses(rounds=1), lambda seen: {s for _, s in seen} == {200}, timeout=30)
    assert [(path, status) for path, status in back if status != 200] == []
