"""Parameters as people type them into the console's and the API's URLs: one parser per kind
(whole numbers, row ids, choices, free text; time windows are in `windows.py`), each giving
the value or raising `BadParameter` with a message saying what is wrong and how to write it.
A message that repeats what was typed repeats it `shortened`.

A `BadParameter` that a view does not catch is answered 400 with its message (JSON for the API,
the error page for pages: see `errors.py`), so no value a person can type reaches the database
or the calendar unchecked and becomes a 500."""

from __future__ import annotations

import re
from collections.abc import Collection

from werkzeug.routing import BaseConverter

from models.comments import decode_cursor
from models.recordings import MAX_INTEGER

MAX_ROW_ID = MAX_INTEGER  # PostgreSQL compares an id with its column's type, int4
NO_ROW = 0  # ids start at 1
ROW_ID_IN_PATH = "row_id"
"""The URL converter for a row id in a route's path: `f"/things/<{ROW_ID_IN_PATH}:thing_id>"`
(`RowIdConverter`, which the console's blueprint registers)."""
ECHO_LENGTH = 40
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # PostgreSQL refuses NUL in text; no one types the rest


class BadParameter(ValueError):
    """A parameter that cannot be used. `str()` is the message for the person; `name` is the
    parameter's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _ascii_digits(text: str) -> bool:
    """Only 0-9 (`str.isdigit` also takes "²" and "٣", which `int` refuses)."""
    return text.isascii() and text.isdigit()


class RowIdConverter(BaseConverter):
    """Digits in a route's path as a row id. An id above `MAX_ROW_ID`, which no row can have
    (PostgreSQL's int4 cannot hold it; SQLite cannot even bind one of 2**63 or more), reaches
    the view as `NO_ROW`, which names no row either: the view answers it as it answers any id
    that names nothing, with its own 404 saying what it did not find."""

    regex = r"\d+"

    def to_python(self, value: str) -> int:
        in_range = _ascii_digits(value) and len(value.lstrip("0")) <= len(str(MAX_ROW_ID)) and int(value) <= MAX_ROW_ID
        return int(value) if in_range else NO_ROW


def shortened(value: str) -> str:
    """`value` as an error message may repeat it: whole when it is at most `ECHO_LENGTH`
    characters, else its first `ECHO_LENGTH` and "…", so that no message echoes a pasted page."""
    return value if len(value) <= ECHO_LENGTH else value[:ECHO_LENGTH] + "…"


def whole_number(value: str | None, name: str, lowest: int, highest: int, default: int | None = None) -> int | None:
    """`value` as a whole number from `lowest` to `highest`, or `default` when it is empty."""
    text = (value or "").strip()
    if not text:
        return default
    # The length is checked before int(), which refuses (with ValueError) over 4,300 digits.
    if not _ascii_digits(text) or len(text) > len(str(highest)) or not lowest <= int(text) <= highest:
        raise BadParameter(name, f"{name} must be a whole number from {lowest} to {highest}.")
    return int(text)


def row_id(value: str | None, name: str, message: str | None = None) -> int | None:
    """A row's id as a page link carries it (an audit-log page, an API cursor), or None when
    it is empty. `message` replaces the generic one (e.g. "use next_cursor")."""
    try:
        return whole_number(value, name, 1, MAX_ROW_ID)
    except BadParameter:
        raise BadParameter(name, message or f"{name} must be a row number from a page link.") from None


def choice(value: str | None, name: str, choices: Collection[str]) -> str | None:
    """One of `choices`, or None when empty."""
    text = (value or "").strip()
    if not text:
        return None
    if text not in choices:
        raise BadParameter(name, f"{name} must be one of: {', '.join(choices)}.")
    return text


def text(value: str | None, name: str, max_length: int) -> str | None:
    """Free text (a search, a slug, an email), stripped, or None when empty. Control
    characters (which no keyboard types into a search box, and PostgreSQL cannot store as
    text) and more than `max_length` characters are refused."""
    stripped = (value or "").strip()
    if not stripped:
        return None
    if _CONTROL.search(stripped):
        raise BadParameter(name, f"{name} holds a control character; type plain text.")
    if len(stripped) > max_length:
        raise BadParameter(name, f"{name} is longer than {max_length} characters.")
    return stripped


def keyset_cursor(value: str | None, name: str) -> str | None:
    """An inbox page link's cursor (`CommentRow.cursor`), or None when empty."""
    stripped = (value or "").strip()
    if not stripped:
        return None
    if decode_cursor(stripped) is None:
        raise BadParameter(name, f"{name} is not a page link the inbox made.")
    return stripped
