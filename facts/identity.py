"""Which database a journal or spool file was written for.

Every database gets an identity when it is first migrated (`database_identity`, one row with
a random id). A process stamps the files it journals and spools with the identity of the
database it writes to, once it has learned it (at its first successful write or replay);
until then with a fingerprint of its `DATABASE_URL` (the password left out). A replayer takes
only files stamped for the database it is connected to, by either stamp; any other file is
set aside in `<SPOOL_DIR>/other-databases/`, logged and reported (`flask spool status`, the
`commentline_spool_foreign_files` metric), and written only when someone asks
(`flask spool replay --into-this-database FILE`). A file with no stamp (written before stamps
existed) is set aside the same way: nothing says which database it belongs to.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

SEPARATOR = "~"  # <stamp>~<host>-<pid>…: the stamp never holds one


def url_stamp(database_url: str) -> str:
    """A fingerprint of the database's URL, without its password."""
    url = make_url(database_url).set(password=None)
    return "url-" + hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()[:16]


def stamp_of(file_name: str) -> str | None:
    """The stamp a spool or journal file's name starts with; None for a file without one."""
    stamp, sep, _ = file_name.partition(SEPARATOR)
    return stamp if sep else None


def read_identity(connection) -> str | None:
    """The identity of the database `connection` is on (None before the migration made one)."""
    if not inspect(connection).has_table("database_identity"):
        return None  # a database not yet migrated this far
    rows = connection.exec_driver_sql("SELECT id FROM database_identity").all()
    return rows[0][0] if rows else None


class DatabaseStamp:
    """The stamps of the database this process writes to: its URL's, and its identity once
    learned."""

    def __init__(self, database_url: str) -> None:
        self.url = url_stamp(database_url)
        self.identity: str | None = None

    @property
    def current(self) -> str:
        """The stamp for a new file."""
        return self.identity or self.url

    def learn(self, connection) -> None:
        if self.identity is None:
            self.identity = read_identity(connection)

    def owns(self, file_name: str) -> bool:
        """Whether a file of this name was written for this database."""
        stamp = stamp_of(file_name)
        return stamp is not None and stamp in (self.url, self.identity)
