"""What the caller hears: pure builders from (script, base URL, language, step) to TwiML.

No database and no `request` here. Each builder's answer depends only on its arguments, so
it is cached per process: the script is hashable by version, and a new version misses. The
replies after a comment are not: each reads back its own reference number, so a cache would
only hold the last few thousand and push out the menus that do repeat.
Every URL is absolute (Twilio resolves relative ones, but the recording callbacks and the
signature check are simpler with the exact URL), and carries the call's state: the step
that keys the next choice, the misses so far, the language, topic and stance.

A line of wording is a `Line`: said by the language's voice (`<Say>`, consecutive lines in
one), or, when staff recorded a prompt for it (models/prompts.py), played (`<Play>` of the
prompt's public URL, ivr/prompt_audio.py). Lines with placeholders are always said.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from models.line import TOPIC_LINE, Language, LineScript, TopicScript

from .menu import FINISH_KEY, MAX_EMPTY_RECORDINGS, MENU_KEYS, STAFF_STARS, ZIP_FINISH_KEY, ZIP_KEYS

CACHE_SIZE = 4096


def url(base: str, path: str, **params) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{base}/twilio/{path}" + (f"?{query}" if query else "")


PROMPT_PATH = "/prompts"


def prompt_url(base: str, name: str) -> str:
    """Where Twilio fetches a recorded prompt's audio (ivr/prompt_audio.py)."""
    return f"{base}{PROMPT_PATH}/{name}.wav"


@dataclass(frozen=True)
class Line:
    """One line the caller hears: `text`, and `play` the recorded prompt's public name (None:
    the text is said)."""

    text: str
    play: str | None = None


def line(script: LineScript, language: str, key: str) -> Line:
    """A line of wording with no placeholder: played when recorded, else said."""
    return Line(script.say(language, key), script.recording(language, key))


def said(text: str) -> Line:
    return Line(text)


def topic_line(script: LineScript, language: str, topic: TopicScript) -> Line:
    return Line(script.topic_line(language, topic), script.recording(language, TOPIC_LINE + topic.slug))


def _speak(parent, lines: list[Line], lang: Language, base: str) -> None:
    """The lines in order: each recorded one a `<Play>`, the said ones between them one `<Say>`
    in the language's voice (speaking as its `say_language`)."""
    text: list[str] = []
    for each in lines:
        if each.play is None:
            text.append(each.text)
            continue
        if text:
            parent.say(" ".join(text), voice=lang.voice, language=lang.spoken_as)
            text = []
        parent.play(prompt_url(base, each.play))
    if text:
        parent.say(" ".join(text), voice=lang.voice, language=lang.spoken_as)


def _menu(
    script: LineScript,
    base: str,
    action: str,
    retry: str,
    lines: list[tuple[list[Line], Language]],
    keys: int | None = MENU_KEYS,
) -> str:
    """A one-key menu (`keys` None: keys until `#` or a pause); with no key, Twilio falls
    through to the redirect, which re-prompts."""
    response = VoiceResponse()
    gather = Gather(action=action, method="POST", num_digits=keys, timeout=script.menu_timeout_seconds)
    for spoken, lang in lines:
        _speak(gather, spoken, lang, base)
    response.append(gather)
    response.redirect(retry, method="POST")
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def welcome(script: LineScript, base: str) -> str:
    """Greeting and language menu (or, on a one-language line, straight to the ZIP code or
    the topics)."""
    if len(script.languages) == 1:
        lang = script.languages[0]
        if script.zip_step == "after_language":
            return zip_menu(script, base, lang.code, 1, 0, greeting=True)
        return topic_menu(script, base, lang.code, 1, 0, greeting=True)
    return language_menu(script, base, 1, 0, greeting=True)


@lru_cache(maxsize=CACHE_SIZE)
def zip_menu(
    script: LineScript,
    base: str,
    language: str,
    step: int,
    misses: int,
    topic: str | None = None,
    notice: str = "",
    greeting: bool = False,
) -> str:
    """ "Enter your five-digit ZIP code, or press pound to skip": five keys, or fewer ended by
    pound. Pound alone or silence falls through to the `<Redirect>`, which the line takes as
    a skip. `topic`: the topic chosen just before (ZIP code asked after the topic)."""
    lang = script.language(language)
    lines = [line(script, lang.code, "greeting")] if greeting else []
    if notice:
        lines.append(line(script, lang.code, notice))
    lines.append(line(script, lang.code, "zip_prompt"))
    target = url(base, "zip", s=step, m=misses, l=lang.code, t=topic)
    response = VoiceResponse()
    gather = Gather(
        action=target,
        method="POST",
        num_digits=ZIP_KEYS,
        finish_on_key=ZIP_FINISH_KEY,
        timeout=script.menu_timeout_seconds,
    )
    _speak(gather, lines, lang, base)
    response.append(gather)
    response.redirect(target, method="POST")
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def language_menu(
    script: LineScript, base: str, step: int, misses: int, notice: str = "", greeting: bool = False, stars: int = 0
) -> str:
    """The language menu. `stars`: how many times in a row the caller pressed star here (the
    menu is repeated each time); after STAFF_STARS it takes several keys, so that staff can
    type a code to record a prompt (ivr/routes.py `choose_language`). A caller hears the same
    menu either way."""
    lines = []
    if greeting:
        lines += [([line(script, lang.code, "greeting")], lang) for lang in script.languages]
    if notice:
        lines += [([line(script, lang.code, notice)], lang) for lang in script.languages]
    lines += [([line(script, lang.code, "language_option")], lang) for lang in script.languages]
    target = url(base, "language", s=step, m=misses, k=stars or None)
    return _menu(script, base, target, target, lines, None if stars >= STAFF_STARS else MENU_KEYS)


@lru_cache(maxsize=CACHE_SIZE)
def topic_menu(
    script: LineScript, base: str, language: str, step: int, misses: int, notice: str = "", greeting: bool = False
) -> str:
    lang = script.language(language)
    code = lang.code
    lines = []
    if greeting:
        lines.append(line(script, code, "greeting"))
    if notice:
        lines.append(line(script, code, notice))
    lines.append(line(script, code, "topic_intro"))
    lines += [topic_line(script, code, topic) for topic in script.menu]
    lines.append(line(script, code, "repeat_hint"))
    target = url(base, "topic", s=step, m=misses, l=code)
    return _menu(script, base, target, target, [(lines, lang)])


@lru_cache(maxsize=CACHE_SIZE)
def stance_menu(
    script: LineScript, base: str, language: str, topic: TopicScript, step: int, misses: int, notice: str = ""
) -> str:
    lang = script.language(language)
    lines = [line(script, lang.code, notice)] if notice else []
    lines.append(said(script.say(lang.code, "stance", topic=topic.name(lang.code))))
    target = url(base, "stance", s=step, m=misses, l=lang.code, t=topic.slug)
    return _menu(script, base, target, target, [(lines, lang)])


@lru_cache(maxsize=CACHE_SIZE)
def record_comment(
    script: LineScript,
    base: str,
    language: str,
    topic: TopicScript | None,
    stance: str | None,
    step: int,
    misses: int = 0,
    notice: str = "",
) -> str:
    """The recording prompt, then `<Record>`. Twilio transcribes only American English; other
    languages are left to the worker's transcriber."""
    lang = script.language(language)
    slug = topic.slug if topic else None
    response = VoiceResponse()
    lines = [line(script, lang.code, notice)] if notice else []
    lines.append(line(script, lang.code, "record"))
    _speak(response, lines, lang, base)
    transcribe = lang.code == "en-US"
    response.record(
        action=url(base, "recorded", s=step, m=misses or None, l=lang.code, t=slug, p=stance),
        method="POST",
        max_length=script.record_max_seconds,
        timeout=5,
        finish_on_key=FINISH_KEY,
        play_beep=True,
        trim="trim-silence",
        transcribe=transcribe,
        transcribe_callback=url(base, "transcription") if transcribe else None,
        recording_status_callback=url(base, "recording-status"),
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    # Reached only when Twilio skips the action (an empty recording, on some accounts).
    response.redirect(url(base, "no-comment", s=step, m=misses, l=lang.code, t=slug, p=stance), method="POST")
    return str(response)


def after_empty_recording(
    script: LineScript,
    base: str,
    language: str | None,
    topic: TopicScript | None,
    stance: str | None,
    step: int,
    empty: int,
) -> str:
    """After the `empty`th recording in a row with nothing in it (0 s, or one whose action
    Twilio skipped): the recording offered again, or, from the `MAX_EMPTY_RECORDINGS`th, the
    choice of another topic."""
    if empty < MAX_EMPTY_RECORDINGS:
        return record_comment(script, base, language, topic, stance, step, empty, "no_comment")
    return another_menu(script, base, language, step + 1, 0, "no_comment")


def spoken_digits(reference: str) -> str:
    return ", ".join(reference)


def comment_saved(script: LineScript, base: str, language: str, step: int, reference: str | None) -> str:
    """Thanks, the reference number digit by digit, and the choice of another topic."""
    lang = script.language(language)
    lead = [line(script, lang.code, "thanks")]
    if reference:
        lead.append(said(script.say(lang.code, "reference", reference=spoken_digits(reference))))
    return another_menu.__wrapped__(script, base, lang.code, step, 0, lead=tuple(lead))  # not cached


def comment_saved_offer_callback(
    script: LineScript, base: str, language: str, step: int, reference: str | None, topic: str, recording_sid: str
) -> str:
    """Thanks, the reference number, then "to ask for a call back, press 1" (a topic that
    offers call-backs). No key, or another key: the choice of another topic."""
    lang = script.language(language)
    lines = [line(script, lang.code, "thanks")]
    if reference:
        lines.append(said(script.say(lang.code, "reference", reference=spoken_digits(reference))))
    lines.append(line(script, lang.code, "callback_offer"))
    target = url(base, "callback", s=step, l=lang.code, t=topic, r=recording_sid)
    return _menu(script, base, target, target, [(lines, lang)])


@lru_cache(maxsize=CACHE_SIZE)
def blocked(script: LineScript, base: str) -> str:
    """A number on the block list: a short message in the first language (played when
    recorded), and the line hangs up."""
    lang = script.languages[0]
    response = VoiceResponse()
    _speak(response, [line(script, lang.code, "blocked")], lang, base)
    response.hangup()
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def another_menu(
    script: LineScript, base: str, language: str, step: int, misses: int, notice: str = "", lead: tuple[Line, ...] = ()
) -> str:
    """The choice of another topic (after `lead`, then `notice`), then goodbye."""
    lang = script.language(language)
    lines = list(lead)
    if notice:
        lines.append(line(script, lang.code, notice))
    lines.append(line(script, lang.code, "another"))
    response = VoiceResponse()
    gather = Gather(
        action=url(base, "next", s=step, m=misses, l=lang.code),
        method="POST",
        num_digits=MENU_KEYS,
        timeout=script.menu_timeout_seconds,
    )
    _speak(gather, lines, lang, base)
    response.append(gather)
    _speak(response, [line(script, lang.code, "goodbye")], lang, base)
    response.hangup()
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def goodbye(script: LineScript, base: str, language: str) -> str:
    lang = script.language(language)
    response = VoiceResponse()
    _speak(response, [line(script, lang.code, "goodbye")], lang, base)
    response.hangup()
    return str(response)


@lru_cache(maxsize=1)
def nothing() -> str:
    """For callbacks and hung-up calls: Twilio ignores the body, but it must be TwiML."""
    return str(VoiceResponse())


# --- recording a prompt by phone (staff, with a one-time code) ---------------------------------


@lru_cache(maxsize=CACHE_SIZE)
def record_prompt(
    script: LineScript, base: str, language: str, key: str, text: str, code_id: int, step: int, max_seconds: int
) -> str:
    """For staff who entered a valid code: what to say, then `<Record>` of the prompt (not
    transcribed; its callbacks go to the prompt routes, never to the comments')."""
    guide = script.languages[0]
    lang = script.language(language)
    response = VoiceResponse()
    response.say(
        f"Recording a prompt for the line, in {language}: {key.replace('_', ' ')}. "
        "After the tone, say it as written in the console, then press the pound key. It says:",
        voice=guide.voice,
        language=guide.spoken_as,
    )
    response.say(text, voice=lang.voice, language=lang.spoken_as)
    response.record(
        action=url(base, "prompt-recorded", c=code_id, s=step),
        method="POST",
        max_length=max_seconds,
        timeout=5,
        finish_on_key=FINISH_KEY,
        play_beep=True,
        trim="trim-silence",
        recording_status_callback=url(base, "prompt-recording-status", c=code_id),
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    response.say("We did not hear a recording. Goodbye.", voice=guide.voice, language=guide.spoken_as)
    response.hangup()
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def prompt_taken(script: LineScript) -> str:
    guide = script.languages[0]
    response = VoiceResponse()
    response.say(
        "Thank you. The recording will be in the console in a minute, to accept or to record again. Goodbye.",
        voice=guide.voice,
        language=guide.spoken_as,
    )
    response.hangup()
    return str(response)
