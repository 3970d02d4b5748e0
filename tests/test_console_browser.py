"""The console in a real browser: Debian's chromium driven by Playwright, against the line served
by gunicorn on loopback, with a database filled by signed webhooks and recordings served by a
loopback stand-in for Twilio's media endpoint.

A staff member signs in for the first time, finds yesterday's comments about one topic,
listens, marks them reviewed, and downloads the counts by topic and stance; the counts are
checked against what this test played, not against the app's own queries.

Without chromium or Playwright these tests skip, except under CI=true, where they fail.
Screenshots go to the test's tmp dir, and to docs/screenshots/ with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from config import PROJECT_DIR
from models import Call, Recording, db, summary
from tests.conftest import Twilio
from tests.console_support import PASSWORD, leave_comment, wav_bytes

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # "Try the line" records from the microphone: a fake one, allowed without asking.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
IN_CI = os.environ.get("CI", "").lower() == "true"


def cannot_run(reason: str):
    if IN_CI:
        pytest.fail(f"browser test cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        cannot_run("Playwright is not installed (pip install -r requirements-dev.txt)")
    executable = shutil.which("chromium")
    if not executable:
        cannot_run("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def save_screenshot(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        target = PROJECT_DIR / "docs" / "screenshots" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return path


@pytest.fixture
def line(media_server, settings, app, served_line, runner):
    """gunicorn serving the line, a staff account made with `flask users create`, and a
    Twilio stand-in that signs webhooks to the served line."""
    served = served_line(write_behind=False)  # the tests move what they played straight after
    result = runner.invoke(
        args=["users", "create", "pat@example.org", "--name", "Pat", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    twilio = Twilio(
        lambda url, params, headers: requests.post(url, data=params, headers=headers, timeout=10), base=served.base
    )
    return served, twilio


def shift_to_yesterday(app, call_sids: list[str]) -> None:
    """The calls came in yesterday: move their facts back a day."""
    with app.app_context():
        for sid in call_sids:
            db.session.get(Call, sid).started_at -= timedelta(days=1)
            for recording in db.session.scalars(select(Recording).where(Recording.call_sid == sid)):
                recording.created_at -= timedelta(days=1)
        summary.rebuild(db.session)  # as `flask counts rebuild` does after facts are edited
        db.session.commit()


def refs_shown(page) -> list[str]:
    return page.eval_on_selector_all(".comments .comment", "els => els.map(e => e.dataset.ref)")


def counts_table(page) -> dict[str, list[str]]:
    return page.eval_on_selector_all(
        "table.counts tbody tr",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.topic,"
        " [...r.querySelectorAll('td')].map(td => td.textContent.trim())]))",
    )


def test_first_day_find_listen_review_and_hand_over_the_counts(browser, line, app, media_server, tmp_path):
    served, twilio = line
    # Yesterday: four budget comments from three callers, one transit comment, one call that chose nothing.
    played = [  # (caller, topic digit, stance digit, transcript)
        ("+15035550101", "1", "1", "I support the library money in the budget."),
        ("+15035550102", "1", "2", "The budget raises parking fees too much."),
        ("+15035550101", "1", "1", "Calling again to support the budget."),
        ("+15035550103", "1", "3", None),
        ("+15035550104", "2", "1", "More buses on route nine please."),
    ]
    yesterday_calls, budget_refs, sids = [], [], {}
    for number, topic, stance, text in played:
        call, sid, reference = leave_comment(twilio, topic, stance, text=text, From=number)
        media_server.audio[sid] = wav_bytes(2.0, pitch=330 + 40 * len(sids))
        yesterday_calls.append(call.sid)
        sids[reference] = sid
        if topic == "1":
            budget_refs.append(reference)
    unrouted = twilio.call(From="+15035550105")
    unrouted.dial()
    unrouted.press("1")
    unrouted.hang_up()
    yesterday_calls.append(unrouted.sid)
    shift_to_yesterday(app, yesterday_calls)
    # Today: one more budget comment, which yesterday's view must not show.
    _, today_sid, today_ref = leave_comment(twilio, "1", "2", text="Today I oppose the budget.", From="+15035550106")
    media_server.audio[today_sid] = wav_bytes(1.0)

    # What the counts must say for yesterday, worked out from what was played above.
    budget = [p for p in played if p[1] == "1"]
    stances = Counter({"1": "support", "2": "oppose", "3": "other"}[p[2]] for p in budget)
    expected_budget = [
        str(len(budget)),
        str(len({p[0] for p in budget})),
        str(len(budget)),
        str(stances["support"]),
        str(stances["oppose"]),
        str(stances["other"]),
    ]
    expected_all_calls = str(len(played) + 1)
    expected_all_callers = str(len({p[0] for p in played} | {"+15035550105"}))  # the unrouted caller too

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    audio_responses, console_errors = [], []
    page.on("response", lambda r: audio_responses.append(r) if "/audio/" in r.url else None)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    # Sign in: the inbox sends an anonymous visitor to the sign-in page and back.
    page.goto(served.base + "/inbox")
    assert "/sign-in" in page.url
    page.fill("input[name=email]", "pat@example.org")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == served.base + "/inbox"
    assert set(refs_shown(page)) == set(sids) | {today_ref}

    # Filter: the budget topic, yesterday.
    page.select_option("select[name=topic]", "budget")
    page.click("button:has-text('Show')")
    page.wait_for_url("**topic=budget**")
    page.click(".presets a:has-text('Yesterday')")
    page.wait_for_url("**from=**")
    assert refs_shown(page) == list(reversed(budget_refs))  # newest first
    assert "topic=budget" in page.url  # the view can be shared
    assert set(page.locator(".comments .chip.topic").all_inner_texts()) == {"the proposed city budget"}

    # Listen: keyboard to the first comment and play it; the player loads the audio over Range.
    page.keyboard.press("j")
    page.keyboard.press("p")
    first = page.locator(".comments .comment audio").first
    page.wait_for_function(
        "a => a.readyState >= 1 && a.duration > 1.9 && !a.error", arg=first.element_handle(), timeout=15000
    )
    assert any(r.status == 206 for r in audio_responses), [(r.url, r.status) for r in audio_responses]
    ranged = page.evaluate(
        """async url => { const r = await fetch(url, {headers: {Range: 'bytes=44-1043'}});
                          return [r.status, r.headers.get('content-range'), (await r.arrayBuffer()).byteLength]; }""",
        served.base + f"/audio/{budget_refs[-1]}",
    )
    assert ranged[0] == 206 and ranged[2] == 1000 and ranged[1].startswith("bytes 44-1043/")
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly

    # Search, within the filters: a word from one transcript, then a reference number.
    page.fill("#search", "parking")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=parking**")
    assert refs_shown(page) == [budget_refs[1]]
    page.fill("#search", budget_refs[0])
    page.keyboard.press("Enter")
    page.wait_for_url(f"**q={budget_refs[0]}**")
    assert refs_shown(page) == [budget_refs[0]]

    # Mark yesterday's budget comments reviewed, all at once.
    page.fill("#search", "")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert refs_shown(page) == list(reversed(budget_refs))
    page.check("#tick-all")
    with page.expect_navigation():
        page.click("button:has-text('Mark reviewed')")
    assert "topic=budget" in page.url, page.url
    assert f"Marked {len(budget_refs)} comments reviewed." in page.inner_text(".flashes")
    assert page.locator(".comments .badge.done").count() == len(budget_refs)
    save_screenshot(page, "inbox.png", tmp_path)
    page.select_option("select[name=reviewed]", "no")
    page.click("button:has-text('Show')")
    page.wait_for_url("**reviewed=no**")
    assert refs_shown(page) == [], (page.url, today_ref, budget_refs, sids)

    # Counts for yesterday, as the manager wants them.
    page.click("nav >> text=Counts")
    page.wait_for_url("**/counts")
    today = page.input_value("input[name=to]")
    assert page.input_value("input[name=from]") == today != ""  # the day the counts show
    page.click(".presets a:has-text('Yesterday')")
    page.wait_for_url("**from=**")
    assert page.input_value("input[name=from]") == page.input_value("input[name=to]") < today
    shown = counts_table(page)
    assert shown["budget"] == expected_budget
    assert shown["transit"] == ["1", "1", "1", "1", "0", "0"]
    assert shown["(none)"][0] == "1" and shown["(all)"][:2] == [expected_all_calls, expected_all_callers]
    assert page.locator("figure.chart svg rect").count() >= 2
    save_screenshot(page, "counts.png", tmp_path)
    page.emulate_media(media="print")  # the print layout: numbers and chart, no controls
    assert page.is_hidden("header.top") and page.is_hidden("form.filters") and page.is_hidden("text=Download CSV")
    assert page.is_visible("table.counts") and page.is_visible("figure.chart")
    page.emulate_media(media="screen")

    with page.expect_download() as download:
        page.click("a:has-text('Download CSV')")
    rows = list(csv.reader(open(download.value.path(), newline="", encoding="utf-8")))
    header = ["topic", "name", "calls", "callers", "comments", "support", "oppose", "other", "flagged", "callbacks"]
    assert rows[0] == header
    by_topic = {row[0]: row[2:-2] for row in rows[1:]}
    assert by_topic["budget"] == expected_budget and by_topic["(all)"][0] == expected_all_calls
    assert by_topic == shown  # exactly what is shown
    assert console_errors == []  # no script errors, nothing blocked by the Content-Security-Policy
    context.close()


def test_counts_refresh_by_themselves_on_a_tablet(browser, line):
    served, twilio = line
    leave_comment(twilio, "2", "1", From="+15035550201")
    context = browser.new_context(viewport={"width": 820, "height": 1180})  # a tablet held upright
    page = context.new_page()
    page.goto(served.base + "/sign-in")
    page.fill("input[name=email]", "pat@example.org")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button:has-text('Sign in')")
    no_sideways_scroll = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(no_sideways_scroll)  # the inbox fits the width
    page.goto(served.base + "/counts?every=2")
    assert page.evaluate(no_sideways_scroll)
    assert counts_table(page)["transit"][0] == "1"
    leave_comment(twilio, "2", "2", From="+15035550202")  # a call comes in while the page is open
    page.wait_for_function(
        "() => document.querySelector('tr[data-topic=transit] td').textContent.trim() === '2'", timeout=15000
    )
    assert counts_table(page)["transit"] == ["2", "2", "2", "1", "1", "0"]
    context.close()


@pytest.fixture
def districted(app):
    """The line asks for the ZIP code after the language and serves one district (set before
    the line is served, as `flask line sync` would from config/line.yaml)."""
    from tests.test_districts import DISTRICT, set_line

    set_line(app, "after_language", {"district": DISTRICT})


def test_counts_inside_the_district_and_one_voice_per_caller(browser, districted, line):
    served, twilio = line
    for number, zip_code, stance in (
        ("+15035550301", "97201", "1"),  # inside, support
        ("+15035550301", "97201", "2"),  # the same caller again: now oppose
        ("+15035550302", "97299", "1"),  # outside, support
    ):
        call = twilio.call(From=number)
        call.dial()
        call.press("1")
        assert call.press(zip_code).menu_path() == "topic"
        call.press("2")  # transit
        call.press(stance)
        call.speak(seconds=5)
        call.hang_up()
    context = browser.new_context()
    page = context.new_page()
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(served.base + "/sign-in")
    page.fill("input[name=email]", "pat@example.org")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button:has-text('Sign in')")
    page.goto(served.base + "/counts")
    assert counts_table(page)["transit"] == ["3", "2", "3", "2", "1", "0"]  # every call
    page.select_option("select[name=show]", "inside")
    with page.expect_navigation():
        page.click("button:has-text('Show')")
    assert counts_table(page)["transit"] == ["2", "1", "2", "1", "1", "0"]
    assert "Inside district" in page.inner_text(".window-line")
    page.select_option("select[name=show]", "voices")
    with page.expect_navigation():
        page.click("button:has-text('Show')")
    assert counts_table(page)["transit"] == ["3", "2", "3", "1", "1", "0"]  # each caller once, latest
    assert page.is_visible("text=Support (callers)")
    page.goto(served.base + "/inbox?district=outside")
    assert len(refs_shown(page)) == 1
    assert console_errors == []


# --- "Try the line": the draft, heard from the console's phone --------------------------------

# Records what the page hands the browser's speech synthesis (each utterance's language and
# text), and each audio file the browser fetched, decoded and started playing (`<Play>`: the
# file's URL; a key pressed during it may stop it before its end, as on a phone).
SPEECH_SPY = """
(() => {
  window.__spoken = [];
  window.__played = [];
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    this.addEventListener("playing", () => window.__played.push(this.src), { once: true });
    this.addEventListener("error", () => window.__played.push("error: " + this.src), { once: true });
    return play.call(this);
  };
  if (!window.speechSynthesis) return;
  const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
  window.speechSynthesis.speak = u => { window.__spoken.push([u.lang, u.text]); speak(u); };
})();
"""


def phone_waits_for(page, state: str) -> None:
    page.wait_for_selector(f'#phone[data-state="{state}"]', timeout=60000)


def play_on_the_phone(page, keys_before_recording: list[str], last_key: str | None) -> str:
    """Call from the phone page, pressing the keys at each menu, record a comment, then at the
    menu after it press `last_key` (None: let the menu time out, as a caller who says nothing);
    the call's log as text."""
    page.click("#call-button")
    for key in keys_before_recording:
        phone_waits_for(page, "gather")
        page.click(f'.key[data-key="{key}"]')
    phone_waits_for(page, "record")
    page.click('.key[data-key="#"]')
    phone_waits_for(page, "gather")  # thanks, the reference, and "another topic?"
    if last_key is not None:
        page.keyboard.press(last_key)
    phone_waits_for(page, "ended")
    return page.inner_text("#call-log")


def test_try_the_draft_in_each_language_from_the_console_phone(browser, served_line, app, runner, tmp_path):
    """The draft (new greetings, a renamed topic, a recorded Creole prompt) heard from the
    console's phone in English, Spanish and Haitian Creole, and none of it counted."""
    served = served_line(write_behind=False)
    result = runner.invoke(
        args=["users", "create", "--admin", "ana@example.org", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(SPEECH_SPY)
    page = context.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(served.base + "/sign-in")
    page.fill("input[name=email]", "ana@example.org")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Edit the draft: a new greeting in each language, and a renamed topic.
    page.goto(served.base + "/admin/topics")
    drafts = {"en-US": "Hello from the draft script.", "es-US": "Hola desde el borrador."}
    for code, greeting in drafts.items():
        form = page.locator(f'form[action="/admin/wording/{code}"]')
        page.click(f"summary:has-text('{code}')")
        form.locator("textarea[name=greeting]").fill(greeting)
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
    page.click("summary:has-text('housing')")
    housing = page.locator('form[action="/admin/topics/housing"]')
    housing.locator('input[name="name_en-US"]').fill("homes and rents")
    with page.expect_navigation():
        housing.locator("button[type=submit]").click()
    assert "publish it for callers to hear it" in page.inner_text(".flashes")

    # A recorded prompt for the Creole topic menu's introduction, uploaded to the draft.
    page.goto(served.base + "/admin/prompts")
    prompt_file = tmp_path / "entwodiksyon.wav"
    prompt_file.write_bytes(wav_bytes(1.5, rate=16000, pitch=330))
    upload = page.locator('form[action="/admin/prompts/ht/topic_intro/upload"]')
    upload.locator("input[type=file]").set_input_files(str(prompt_file))
    with page.expect_navigation():
        upload.locator("button[type=submit]").click()
    assert "publish it for callers to hear it" in page.inner_text(".flashes")
    assert "Not published yet: callers hear the voice." in page.inner_text("#ht-topic_intro")

    # The draft's differences, as an admin reviews them before publishing.
    page.goto(served.base + "/admin/script")
    diff = page.inner_text("table.diff")
    assert "Hola desde el borrador." in diff and "Gracias por llamar" in diff and "homes and rents" in diff
    assert "recorded prompt ht" in diff and "topic intro: added" in diff
    save_screenshot(page, "script-draft.png", tmp_path)

    # A whole call on the draft in each language: English (1) and Spanish (2).
    page.goto(served.base + "/try?script=draft")
    english = play_on_the_phone(page, ["1", "1", "1"], None)  # English, the budget, support; then silence
    assert "Hello from the draft script." in english and "homes and rents" in english
    assert "the menu timed out" in english and "Goodbye" in english
    assert "Recorded" in english and "reference number is" in english and "The line hung up." in english
    spanish = play_on_the_phone(page, ["2", "3"], "2")  # Spanish, housing (no position asked); then "no more"
    assert "Hola desde el borrador." in spanish and "número de referencia" in spanish
    spanish_said = page.eval_on_selector_all("#call-log li.said[lang=es-US]", "els => els.map(e => e.textContent)")
    assert any("la vivienda" in text for text in spanish_said)
    spoken = page.evaluate("window.__spoken")
    assert ["es-US", "Hola desde el borrador."] in spoken and ["en-US", "Hello from the draft script."] in spoken
    assert any(lang == "es-US" and "vivienda" in text for lang, text in spoken)
    assert page.evaluate("window.__played") == []  # no English or Spanish line is recorded
    save_screenshot(page, "try-the-line.png", tmp_path)

    # Haitian Creole (3): the recorded introduction is played, every other line said by the
    # stand-in voice (French) in Creole.
    creole = play_on_the_phone(page, ["3", "1", "1"], None)  # Creole, the budget, support; then silence
    assert "Tanpri, chwazi sijè kòmantè ou a." not in creole  # played, not said
    played = page.eval_on_selector_all("#call-log li.played", "els => els.map(e => e.textContent)")
    assert len(played) == 1 and played[0].endswith(".wav"), creole
    assert "could not play" not in creole
    (url,) = page.evaluate("window.__played")
    assert url.startswith(served.base + "/prompts/") and played[0].endswith(url.rsplit("/", 1)[1])
    spoken = page.evaluate("window.__spoken")  # the lines a key did not cut short
    for said in ("Tanpri, kite kòmantè ou apre son an.", "Nimewo referans ou se", "Mèsi paske ou rele. Orevwa."):
        assert any(lang == "fr-FR" and said in text for lang, text in spoken), said
    assert console_errors == []

    # The live line still says what it said; the three calls are test calls, counted nowhere.
    with app.app_context():
        calls = db.session.scalars(select(Call)).all()
        assert len(calls) == 3 and all(c.is_test for c in calls)
        assert sorted(c.language for c in calls) == ["en-US", "es-US", "ht"]
        assert summary.verify(db.session) == []
    verify = runner.invoke(args=["counts", "verify"])
    assert verify.exit_code == 0, verify.output
    page.goto(served.base + "/inbox")
    assert page.locator(".comments .comment").count() == 0
    page.goto(served.base + "/inbox?tests=only")
    assert page.locator(".comments .comment").count() == 3
    context.close()
