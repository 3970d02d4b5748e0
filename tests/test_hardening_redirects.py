"""Redirect targets and back links that come from a request stay on the site, however they are
written: one function decides (`staff.auth.local_target`), and no output of it, read as a
browser reads a URL, leaves the site."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.console_support import PASSWORD, Console, leave_comment, make_user

OFF_SITE = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "//evil.example",
    "///evil.example",
    " //evil.example",
    "\t//evil.example",
    "/\t\\evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "evil.example",  # relative: harmless, but not a path on the site
]


def as_a_browser_reads(location: str) -> str:
    """`location` as a browser's URL parser (WHATWG) reads it: leading and trailing C0
    controls and spaces stripped, every tab and newline removed, a backslash read as a slash
    (the page is on https, a special scheme)."""
    stripped = location.strip("".join(map(chr, range(0x21))))
    return re.sub(r"[\t\n\r]", "", stripped).replace("\\", "/")


def stays_on_the_site(location: str) -> bool:
    """Whether a browser on a page of this site, sent to `location`, stays on it: the
    location names no scheme, and does not start with two slashes (a scheme-relative URL,
    whose host follows however many slashes there are); anything else is a path here."""
    read = as_a_browser_reads(location)
    names_a_scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", read) is not None
    return not names_a_scheme and not read.startswith("//")


URL_PIECES = st.sampled_from(
    ["/", "\\", "\t", "\n", "\r", " ", "\x00", "\x0b", "\x7f", "\x85", ":", "@", "%09", "evil.example"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(URL_PIECES, st.text(max_size=4)), max_size=8).map("".join))
@example("/\t/evil.example")
@example("/\\/evil.example")
def test_no_local_target_leaves_the_site(target):
    from staff.auth import local_target

    found = local_target(target)
    assert found is None or stays_on_the_site(found), repr(found)


@pytest.mark.parametrize("target", ["/inbox", "/inbox?topic=budget&reviewed=no", "/comments/1234567?back=%2Finbox"])
def test_ordinary_paths_are_kept(target):
    from staff.auth import local_target

    assert local_target(target) == target


@pytest.mark.parametrize("target", OFF_SITE)
def test_each_known_trick_is_refused(target):
    from staff.auth import local_target

    assert target == "evil.example" or not stays_on_the_site(target)  # the model sees each trick
    assert local_target(target) is None


def test_the_comment_pages_back_link_stays_on_the_site(sign_in, twilio):
    _, _, reference = leave_comment(twilio, text="Fix the lights.")
    staff = sign_in("staff")
    for target in OFF_SITE:
        page = staff.get(f"/comments/{reference}?back={quote(target, safe='')}").get_data(as_text=True)
        back = unescape(re.search(r'<a href="([^"]*)">← Back', page).group(1))
        assert back == "/inbox", (target, back)
        response = staff.post(f"/comments/{reference}/review", {"back": target})
        assert response.headers["Location"] == "/inbox", target
    kept = staff.get(f"/comments/{reference}?back={quote('/inbox?topic=budget', safe='')}").get_data(as_text=True)
    assert 'href="/inbox?topic=budget"' in kept


def test_sign_in_never_sends_a_person_off_the_site(app):
    make_user(app, "ann@example.org")
    for target in OFF_SITE:
        console = Console(app.test_client())
        console.get("/sign-in")
        response = console.post("/sign-in", {"email": "ann@example.org", "password": PASSWORD, "next": target})
        assert response.headers["Location"] == "/inbox", target
        assert console.get(f"/sign-in?next={quote(target, safe='')}").headers["Location"] == "/inbox", target
