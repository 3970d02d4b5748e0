"""Small faults an outside review found in what people see: URLs under /public that match no
route got the console's 404, a long `since` or `until` came back whole in the 400's message,
the counts page's links after a refused `district` carried it on, and a console id beyond the
database's integers got the generic "Not found" page (signed out, as it looked)."""

from __future__ import annotations

import re

import pytest

from staff.params import ECHO_LENGTH, MAX_ROW_ID

from .test_console_review_fixes import ID_ROUTES, give_callback_role
from .test_counts_page_review_fixes import TWO_DISTRICTS
from .test_districts import set_line

NO_SUCH_PAGE = "There is no such page in the public count."  # public/wording.yaml, not_found


@pytest.fixture
def published(settings):
    settings["PUBLIC_TALLY"] = "on"
    return settings


# --- 1. the public part's own 404 ------------------------------------------------------------------

NO_SUCH_PUBLIC_PAGES = ["/public/", "/public/nope", "/public/counts", "/public/check/1234567", "/public/static"]


def assert_public_page(response, lang: str) -> str:
    """A public page (no console navigation, no sign-in) in `lang`, never cached; its text."""
    body = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in body and '<body class="public">' in body, body[:500]
    assert "/sign-in" not in body and "/inbox" not in body and "console.js" not in body, body[:500]
    assert response.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in response.headers
    return body


def test_a_public_url_that_matches_no_route_gets_the_public_404(published, client):
    for path in NO_SUCH_PUBLIC_PAGES:
        response = client.get(path)
        assert response.status_code == 404, path
        body = assert_public_page(response, "en-US")
        assert "Public comment line: the count" in body and NO_SUCH_PAGE in body, path
    in_spanish = client.get("/public/nope?lang=es-US")
    assert in_spanish.status_code == 404
    spanish = assert_public_page(in_spanish, "es-US")
    assert "Línea de comentarios públicos" in spanish and "No existe esa página en el recuento público." in spanish
    assert client.post("/public/nope").status_code == 404


def test_a_receipts_url_that_matches_no_route_is_answered_as_receipts_are(published, client):
    """Under /public/receipts the public part answers JSON, its 404s too."""
    for path in ("/public/receipts/extra/segments", "/public/receipts/2026-11-30.json/more"):
        response = client.get(path)
        assert response.status_code == 404 and response.is_json, path
        assert NO_SUCH_PAGE in response.json["error"]
        assert response.headers["Cache-Control"] == "no-store"


def test_with_the_tally_off_a_url_that_matches_no_route_is_answered_as_the_others(client):
    for path in NO_SUCH_PUBLIC_PAGES:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "The public count is not published" in assert_public_page(response, "en"), path
    off = client.get("/public/receipts/extra/segments")
    assert off.status_code == 404 and "PUBLIC_TALLY" in off.json["error"]


def test_any_other_url_that_matches_no_route_keeps_the_consoles_404(published, client):
    for path in ("/nope", "/publicity", "/comments"):
        response = client.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 404 and "<h1>Not found</h1>" in body and "/sign-in" in body, path
    api = client.get("/api/v1/nope")
    assert api.status_code == 404 and api.is_json


# --- 2. a long parameter is echoed short -----------------------------------------------------------

LONG = "x" * 5000
SHORT = "x" * ECHO_LENGTH + "…"


def message_in(response) -> str:
    """What a response says went wrong: its JSON `error`, its plain text, or a page's alerts
    and error message (not the form fields, which keep what was typed)."""
    if response.is_json:
        return response.json["error"]
    body = response.get_data(as_text=True)
    if response.mimetype == "text/plain":
        return body
    alerts = re.findall(r'role="alert">([^<]*)<', body)
    return "\n".join(alerts + re.findall(r"<h1>[^<]*</h1>\s*<p>([^<]*)</p>", body))


def assert_echoed_short(response, *expected_status: int) -> None:
    message = message_in(response)
    assert response.status_code in (expected_status or (400,)), (response.status_code, message[:300])
    assert SHORT in message and "x" * (ECHO_LENGTH + 1) not in message, message[:500]


def test_a_long_window_bound_is_echoed_short_in_every_message(published, client, api, sign_in):
    staff = sign_in("staff")
    for name in ("since", "until"):
        for path in ("/public/counts.json", "/public/counts.csv"):
            assert_echoed_short(client.get(path, query_string={name: LONG}))
        for path in ("/api/v1/counts", "/api/v1/counts.csv", "/api/v1/comments"):
            assert_echoed_short(api(path, **{name: LONG}))
    for name in ("from", "to"):
        for path in ("/counts", "/counts.csv", "/inbox"):
            assert_echoed_short(staff.get(path, query_string={name: LONG}))
    assert_echoed_short(client.get(f"/public/receipts/{LONG}.json"))


def test_a_long_reference_or_topic_is_echoed_short(sign_in):
    staff = sign_in("staff")
    assert_echoed_short(staff.get(f"/comments/{LONG}"), 404)
    assert_echoed_short(staff.get("/inbox", query_string={"topic": "x" * 60}))
    short = staff.get("/comments/99999999999999999999").get_data(as_text=True)
    assert "No comment has the reference number 99999999999999999999." in short


# --- 3. links on the counts page's 400 leave out what was refused ----------------------------------


def counts_links(page: str) -> list[str]:
    """Every link on a counts page: the window shortcuts, the CSV, the refresh URL."""
    return re.findall(r'(?:href|data-live-url)="(/counts[^"]*)"', page)


def test_the_counts_pages_links_after_a_400_leave_out_the_refused_parameter(app, sign_in):
    set_line(app, "after_language", TWO_DISTRICTS)
    staff = sign_in("staff")
    for name, value in (("district", "zzz"), ("show", "nope"), ("by", "week"), ("every", "1")):
        response = staff.get("/counts", query_string={"show": "inside", name: value})
        assert response.status_code == 400, name
        links = counts_links(response.get_data(as_text=True).replace("&amp;", "&"))
        assert links, name
        for link in links:
            assert f"{name}={value}" not in link, link
            assert staff.get(link).status_code == 200, link


# --- 4. an id no row can have: what was not found ---------------------------------------------------

NOT_FOUND = {
    "/admin/blocked/{id}/lift": "There is no such entry.",
    "/callbacks/{id}/done": "There is no such call-back request.",
    "/admin/prompts/takes/{id}/accept": "There is no such take.",
    "/admin/prompts/takes/{id}/discard": "There is no such take.",
    "/admin/prompts/takes/{id}.wav": "There is no such take.",
    "/admin/users/{id}/disable": "There is no such account.",
    "/admin/script/versions/{id}/publish": "There is no published version",
}


def message_of(response) -> str:
    return re.search(r"<h1>Not found</h1>\s*<p>([^<]*)</p>", response.get_data(as_text=True)).group(1)


@pytest.mark.parametrize("row_id", [MAX_ROW_ID + 1, 99999999999999999999, "9" * 5000])
def test_an_id_no_row_can_have_says_what_was_not_found(app, sign_in, row_id):
    """As an id that names no row does (MAX_ROW_ID), on the signed-in console's page."""
    admin = sign_in("admin")
    give_callback_role(app, "admin@example.org")
    admin.get("/admin/blocked")  # a valid CSRF token for the posts
    assert {path for _, path in ID_ROUTES} == set(NOT_FOUND)
    for method, path in ID_ROUTES:
        beyond = getattr(admin, method)(path.format(id=row_id))
        named_none = getattr(admin, method)(path.format(id=MAX_ROW_ID))
        assert beyond.status_code == named_none.status_code == 404, path
        assert NOT_FOUND[path] in message_of(beyond) and NOT_FOUND[path] in message_of(named_none), path
        assert "Back to the inbox" in beyond.get_data(as_text=True), path


def test_an_id_no_row_can_have_asks_for_sign_in_as_any_console_url(client):
    response = client.get("/admin/prompts/takes/99999999999999999999.wav")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_a_long_slug_or_prompt_line_in_an_admin_url_is_echoed_short(sign_in):
    admin = sign_in("admin")
    admin.get("/admin/blocked")  # a valid CSRF token for the posts
    for letter, path in (("t", "/admin/topics/" + "t" * 500), ("k", "/admin/prompts/en/" + "k" * 500 + "/code")):
        response = admin.post(path)
        message = message_of(response)
        assert response.status_code == 404, path
        assert letter * ECHO_LENGTH + "…" in message and letter * (ECHO_LENGTH + 1) not in message, message
