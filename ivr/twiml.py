"""What the caller hears: pure builders from (script, base URL, language, step) to TwiML.

No database and no `request` here. Each builder's answer depends only on its arguments, so
it is cached per process: the script is hashable by version, and a new version misses.
Every URL is absolute (Twilio resolves relative ones, but the recording callbacks and the
signature check are simpler with the exact URL), and carries the call's state: the step
that keys the next choice, the misses so far, the language, topic and stance.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from models.line import Language, LineScript, TopicScript

from .menu import FINISH_KEY, MENU_KEYS, ZIP_FINISH_KEY, ZIP_KEYS

CACHE_SIZE = 4096


def url(base: str, path: str, **params) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{base}/twilio/{path}" + (f"?{query}" if query else "")


def _say(parent, text: str, lang: Language) -> None:
    parent.say(text, voice=lang.voice, language=lang.code)


def _menu(script: LineScript, action: str, retry: str, lines: list[tuple[str, Language]]) -> str:
    """A one-key menu; with no key, Twilio falls through to the redirect, which re-prompts."""
    response = VoiceResponse()
    gather = Gather(action=action, method="POST", num_digits=MENU_KEYS, timeout=script.menu_timeout_seconds)
    for text, lang in lines:
        _say(gather, text, lang)
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
    text = [script.say(lang.code, "greeting")] if greeting else []
    if notice:
        text.append(script.say(lang.code, notice))
    text.append(script.say(lang.code, "zip_prompt"))
    target = url(base, "zip", s=step, m=misses, l=lang.code, t=topic)
    response = VoiceResponse()
    gather = Gather(
        action=target,
        method="POST",
        num_digits=ZIP_KEYS,
        finish_on_key=ZIP_FINISH_KEY,
        timeout=script.menu_timeout_seconds,
    )
    _say(gather, " ".join(text), lang)
    response.append(gather)
    response.redirect(target, method="POST")
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def language_menu(
    script: LineScript, base: str, step: int, misses: int, notice: str = "", greeting: bool = False
) -> str:
    lines = []
    if greeting:
        lines += [(script.say(lang.code, "greeting"), lang) for lang in script.languages]
    if notice:
        lines += [(script.say(lang.code, notice), lang) for lang in script.languages]
    lines += [(script.say(lang.code, "language_option"), lang) for lang in script.languages]
    return _menu(script, url(base, "language", s=step, m=misses), url(base, "language", s=step, m=misses), lines)


@lru_cache(maxsize=CACHE_SIZE)
def topic_menu(
    script: LineScript, base: str, language: str, step: int, misses: int, notice: str = "", greeting: bool = False
) -> str:
    lang = script.language(language)
    code = lang.code
    text = []
    if greeting:
        text.append(script.say(code, "greeting"))
    if notice:
        text.append(script.say(code, notice))
    text.append(script.say(code, "topic_intro"))
    for topic in script.menu:
        text.append(topic.prompt(code) or script.say(code, "topic_option", topic=topic.name(code), digit=topic.digit))
    text.append(script.say(code, "repeat_hint"))
    target = url(base, "topic", s=step, m=misses, l=code)
    return _menu(script, target, target, [(" ".join(text), lang)])


@lru_cache(maxsize=CACHE_SIZE)
def stance_menu(
    script: LineScript, base: str, language: str, topic: TopicScript, step: int, misses: int, notice: str = ""
) -> str:
    lang = script.language(language)
    text = [script.say(lang.code, notice)] if notice else []
    text.append(script.say(lang.code, "stance", topic=topic.name(lang.code)))
    target = url(base, "stance", s=step, m=misses, l=lang.code, t=topic.slug)
    return _menu(script, target, target, [(" ".join(text), lang)])


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
    text = [script.say(lang.code, notice)] if notice else []
    text.append(script.say(lang.code, "record"))
    _say(response, " ".join(text), lang)
    transcribe = lang.code == "en-US"
    response.record(
        action=url(base, "recorded", s=step, l=lang.code, t=slug, p=stance),
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


def spoken_digits(reference: str) -> str:
    return ", ".join(reference)


@lru_cache(maxsize=CACHE_SIZE)
def comment_saved(script: LineScript, base: str, language: str, step: int, reference: str | None) -> str:
    """Thanks, the reference number digit by digit, and the choice of another topic."""
    lang = script.language(language)
    text = [script.say(lang.code, "thanks")]
    if reference:
        text.append(script.say(lang.code, "reference", reference=spoken_digits(reference)))
    return another_menu(script, base, lang.code, step, 0, lead=" ".join(text))


@lru_cache(maxsize=CACHE_SIZE)
def comment_saved_offer_callback(
    script: LineScript, base: str, language: str, step: int, reference: str | None, topic: str, recording_sid: str
) -> str:
    """Thanks, the reference number, then "to ask for a call back, press 1" (a topic that
    offers call-backs). No key, or another key: the choice of another topic."""
    lang = script.language(language)
    text = [script.say(lang.code, "thanks")]
    if reference:
        text.append(script.say(lang.code, "reference", reference=spoken_digits(reference)))
    text.append(script.say(lang.code, "callback_offer"))
    target = url(base, "callback", s=step, l=lang.code, t=topic, r=recording_sid)
    return _menu(script, target, target, [(" ".join(text), lang)])


@lru_cache(maxsize=CACHE_SIZE)
def blocked(script: LineScript) -> str:
    """A number on the block list: a short message, and the line hangs up."""
    lang = script.languages[0]
    response = VoiceResponse()
    _say(response, script.say(lang.code, "blocked"), lang)
    response.hangup()
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def another_menu(
    script: LineScript, base: str, language: str, step: int, misses: int, notice: str = "", lead: str = ""
) -> str:
    lang = script.language(language)
    text = [lead] if lead else []
    if notice:
        text.append(script.say(lang.code, notice))
    text.append(script.say(lang.code, "another"))
    response = VoiceResponse()
    gather = Gather(
        action=url(base, "next", s=step, m=misses, l=lang.code),
        method="POST",
        num_digits=MENU_KEYS,
        timeout=script.menu_timeout_seconds,
    )
    _say(gather, " ".join(text), lang)
    response.append(gather)
    _say(response, script.say(lang.code, "goodbye"), lang)
    response.hangup()
    return str(response)


@lru_cache(maxsize=CACHE_SIZE)
def goodbye(script: LineScript, language: str) -> str:
    lang = script.language(language)
    response = VoiceResponse()
    _say(response, script.say(lang.code, "goodbye"), lang)
    response.hangup()
    return str(response)


@lru_cache(maxsize=1)
def nothing() -> str:
    """For callbacks and hung-up calls: Twilio ignores the body, but it must be TwiML."""
    return str(VoiceResponse())
