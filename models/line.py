"""The line's script (languages, wording, topics): stored in the database, edited by staff,
loaded from `config/line.yaml` into an empty line, and cached per process by version."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import JSON, Boolean, Integer, String, func, select, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .base import db, utcnow

WORDING_KEYS = (
    "greeting",
    "language_option",
    "topic_intro",
    "topic_option",
    "repeat_hint",
    "stance",
    "record",
    "no_input",
    "invalid",
    "no_comment",
    "reference",
    "thanks",
    "another",
    "goodbye",
    "trouble",
    "zip_prompt",
    "zip_retry",
    "callback_offer",
    "callback_taken",
    "blocked",
)
# Wording a script file may leave out: the ZIP step's, the call-back offer's and the block
# list's, added to the line with those features. A language without its own gets these (by
# the language's first two letters, else English's).
OPTIONAL_WORDING = {
    "en": {
        "zip_prompt": "Please enter your five-digit ZIP code, or press pound to skip.",
        "zip_retry": "Sorry, that is not a five-digit ZIP code.",
        "callback_offer": "To ask for a call back, press 1. Otherwise, press 2.",
        "callback_taken": "Thank you. We will call you back.",
        "blocked": "This line cannot take your call. Goodbye.",
    },
    "es": {
        "zip_prompt": "Por favor, marque su código postal de cinco dígitos, u oprima la tecla de número para omitirlo.",
        "zip_retry": "Disculpe, ese no es un código postal de cinco dígitos.",
        "callback_offer": "Para pedir que le devolvamos la llamada, oprima 1. Si no, oprima 2.",
        "callback_taken": "Gracias. Le devolveremos la llamada.",
        "blocked": "Esta línea no puede tomar su llamada. Adiós.",
    },
}
KEYPAD = set("0123456789")
# Where the line asks for the caller's ZIP code: after the language (on a one-language line,
# after the greeting), after the call's first topic, or not at all.
ZIP_STEPS = ("off", "after_language", "after_topic")
# The name of the district a script file gives as a plain list of ZIP codes.
ONE_DISTRICT = "district"
DISTRICT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# A recorded prompt for a topic's line of the topic menu ("For {topic}, press {digit}.", or the
# topic's own prompt) is keyed TOPIC_LINE + the topic's slug.
TOPIC_LINE = "topic:"


class ScriptError(ValueError):
    """The line's script is not usable; the message says where."""


class LineSettings(db.Model):
    """One row: the line-wide part of the script, and the version every edit bumps."""

    __tablename__ = "line_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    languages: Mapped[list] = mapped_column(JSON)
    wording: Mapped[dict] = mapped_column(JSON)
    general_topic: Mapped[str] = mapped_column(String(64))
    record_max_seconds: Mapped[int] = mapped_column(Integer, default=180)
    menu_timeout_seconds: Mapped[int] = mapped_column(Integer, default=6)
    zip_step: Mapped[str] = mapped_column(String(16), default="off", server_default="off")
    # {name: [ZIP codes]}: the district(s) the line serves; {} when it has none.
    districts: Mapped[dict | None] = mapped_column(JSON, default=dict)
    # The script staff are editing, as a script document (see `models/drafts.py`); None: the
    # same as the live one. `draft_revision` counts its changes, for the caches.
    draft: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    draft_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # {language: {line key: SHA-256 of its audio}}: the recorded prompts the live script plays
    # (`prompts_of`; the audio is in `prompt_audio`, models/prompts.py).
    prompts: Mapped[dict | None] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Topic(db.Model):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    digit: Mapped[str] = mapped_column(String(1))
    position: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    stance: Mapped[bool] = mapped_column(Boolean, default=False)
    # After a comment: "to ask for a call back, press 1" (models/callbacks.py).
    callback: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Shown on the public tally (/public): the admins' choice, every topic unless they hide it.
    public: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    names: Mapped[dict] = mapped_column(JSON)
    prompts: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- the script as read from a file -------------------------------------------------------


def read_script_file(path: str | Path) -> dict[str, Any]:
    """Parse and check a script file; raise ScriptError saying what is wrong and where."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScriptError(f"{path}: cannot read the line's script: {exc}") from None
    try:
        return check_script(data)
    except ScriptError as exc:
        raise ScriptError(f"{path}: {exc}") from None


def check_script(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ScriptError("the script must be a mapping")
    languages = data.get("languages") or []
    if not languages:
        raise ScriptError("at least one language is needed")
    codes, digits = [], set()
    for lang in languages:
        code, digit = str(lang.get("code", "")), str(lang.get("digit", ""))
        if not code or digit not in KEYPAD or digit in digits or not lang.get("voice"):
            raise ScriptError(f"language {lang!r} needs a code, a voice and its own digit")
        if not isinstance(lang.get("needs_recordings", False), bool):
            raise ScriptError(f"language {code}: needs_recordings is true or false")
        codes.append(code)
        digits.add(digit)
    wording = data.get("wording") or {}
    for code in codes:
        lines = wording.get(code) or {}
        missing = [key for key in WORDING_KEYS if key not in OPTIONAL_WORDING["en"] and not lines.get(key)]
        if missing:
            raise ScriptError(f"wording for {code} lacks {', '.join(missing)}")
    topics = data.get("topics") or []
    if not topics:
        raise ScriptError("at least one topic is needed")
    seen_slugs, seen_digits = set(), set()
    for topic in topics:
        slug, digit = str(topic.get("slug", "")), str(topic.get("digit", ""))
        if not slug or slug in seen_slugs:
            raise ScriptError(f"topic {topic!r} needs a slug of its own")
        enabled = topic.get("enabled", True)
        if digit not in KEYPAD or (enabled and digit in seen_digits):
            raise ScriptError(f"topic {slug!r} needs a digit 0-9 no other topic uses")
        names = topic.get("name") or {}
        if any(not names.get(code) for code in codes):
            raise ScriptError(f"topic {slug!r} needs a name in each of {', '.join(codes)}")
        seen_slugs.add(slug)
        if enabled:
            seen_digits.add(digit)
    general = data.get("general_topic")
    if general not in seen_slugs:
        raise ScriptError(f"general_topic {general!r} is not one of the topics")
    if zip_step_of(data.get("zip_step")) not in ZIP_STEPS:
        raise ScriptError(f"zip_step must be one of {', '.join(ZIP_STEPS)}, not {data.get('zip_step')!r}")
    districts_of(data.get("districts"))
    return data


def zip_step_of(value: Any) -> str:
    """`zip_step` as a file gives it (YAML reads a bare `off` as false)."""
    return "off" if value in (None, False, "") else str(value)


def is_zip(entry: str | None) -> bool:
    """A ZIP code the line takes: five digits, not 00000 (no ZIP code is)."""
    return entry is not None and len(entry) == 5 and entry.isascii() and entry.isdigit() and entry != "00000"


def districts_of(value: Any) -> dict[str, list[str]]:
    """The `districts` of a script file as {name: sorted ZIP codes}: nothing ({}), a list of
    ZIP codes (one district, named "district"), or a mapping of names (a-z, 0-9, hyphens) to
    lists. Raise ScriptError saying what is wrong."""
    if value in (None, {}, []):
        return {}
    if isinstance(value, list):
        value = {ONE_DISTRICT: value}
    if not isinstance(value, dict):
        raise ScriptError("districts must be a list of ZIP codes, or names each with a list of ZIP codes")
    districts = {}
    for name, zips in value.items():
        name = str(name)
        if not DISTRICT_NAME.match(name):
            raise ScriptError(f"district {name!r}: a name uses a-z, 0-9 and hyphens (at most 64)")
        if not isinstance(zips, list) or not zips:
            raise ScriptError(f"district {name!r} needs a list of ZIP codes")
        codes = [str(z).strip() for z in zips]
        wrong = [z for z in codes if not is_zip(z)]
        if wrong:
            numbers = any(isinstance(z, int) and not is_zip(str(z)) for z in zips)
            hint = (
                " (write ZIP codes in quotes, as '02134': unquoted, YAML reads one that begins with 0 as a number)"
                if numbers
                else ""
            )
            raise ScriptError(f"district {name!r}: {', '.join(wrong[:5])} is not a five-digit ZIP code{hint}")
        districts[name] = sorted(set(codes))
    return districts


def prompts_of(value: Any, languages: list[str], slugs: list[str]) -> dict[str, dict[str, str]]:
    """The `prompts` of a script document as {language: {line key: SHA-256}}, keeping only
    lines the script has (a language of `languages`; a wording key, or `topic:<slug>` for a
    topic of `slugs`) and well-formed digests; a language with none is left out."""
    if not isinstance(value, dict):
        return {}
    keys = {*WORDING_KEYS, *(TOPIC_LINE + slug for slug in slugs)}
    prompts = {}
    for language in languages:
        lines = value.get(language)
        if not isinstance(lines, dict):
            continue
        kept = {
            str(key): digest
            for key, digest in sorted(lines.items())
            if key in keys and isinstance(digest, str) and SHA256_HEX.match(digest)
        }
        if kept:
            prompts[language] = kept
    return prompts


def with_optional_wording(wording: dict) -> dict:
    """`wording` with the wording a file may leave out filled in for each language."""
    filled = {}
    for code, lines in wording.items():
        defaults = OPTIONAL_WORDING.get(code[:2].lower(), OPTIONAL_WORDING["en"])
        filled[code] = {**defaults, **{k: v for k, v in (lines or {}).items() if v}}
    return filled


# --- the script as callers hear it ----------------------------------------------------------


@dataclass(frozen=True)
class Language:
    """A language callers choose. `say_language` is the language `voice` speaks (Twilio's
    `<Say language>`; default the code): for a language no voice speaks, the closest one.
    `needs_recordings` marks such a language: each of its lines is meant to be a recorded
    prompt, and the console warns for every one still said by the stand-in voice."""

    code: str
    digit: str
    voice: str
    say_language: str | None = None
    needs_recordings: bool = False

    @property
    def spoken_as(self) -> str:
        return self.say_language or self.code


@dataclass(frozen=True)
class TopicScript:
    id: int
    slug: str
    digit: str
    stance: bool
    names: tuple[tuple[str, str], ...]
    prompts: tuple[tuple[str, str], ...] = ()
    enabled: bool = True
    callback: bool = False  # offers a call-back after the comment

    def name(self, language: str) -> str:
        return dict(self.names).get(language) or self.names[0][1]

    def prompt(self, language: str) -> str | None:
        return dict(self.prompts).get(language)


@dataclass(frozen=True)
class District:
    """One district the line serves: its name and ZIP codes. A call is inside it when the ZIP
    code its caller entered is one of them, outside when it is another, unknown without one."""

    name: str
    zips: frozenset[str]

    def place(self, entered_zip: str | None) -> str:
        if not entered_zip:
            return "unknown"
        return "inside" if entered_zip in self.zips else "outside"


@dataclass(frozen=True)
class LineScript:
    """What callers hear now: immutable, shared by every request, and hashable by its
    content's fingerprint (so TwiML cached for one script is never served for another)."""

    version: int
    fingerprint: str
    languages: tuple[Language, ...]
    topics: tuple[TopicScript, ...]  # every topic; the menu offers the enabled ones, in order
    general_topic: str
    record_max_seconds: int
    menu_timeout_seconds: int
    wording: dict = field(hash=False, compare=False)
    zip_step: str = "off"
    districts: tuple[District, ...] = ()
    # (language, key) -> the public name of its recorded prompt's audio (models/prompts.py)
    recorded: tuple[tuple[tuple[str, str], str], ...] = ()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LineScript) and other.fingerprint == self.fingerprint

    def language(self, code: str | None) -> Language:
        for lang in self.languages:
            if lang.code == code:
                return lang
        return self.languages[0]

    def language_for_digit(self, digit: str) -> Language | None:
        return next((lang for lang in self.languages if lang.digit == digit), None)

    @property
    def menu(self) -> tuple[TopicScript, ...]:
        return tuple(t for t in self.topics if t.enabled)

    def topic_for_digit(self, digit: str) -> TopicScript | None:
        return next((t for t in self.topics if t.enabled and t.digit == digit), None)

    def topic(self, slug: str | None) -> TopicScript | None:
        return next((t for t in self.topics if t.slug == slug), None)

    def general(self) -> TopicScript:
        return self.topic(self.general_topic) or self.menu[-1]

    def say(self, language: str, key: str, **values: str) -> str:
        text = self.wording.get(language, {}).get(key) or self.wording[self.languages[0].code].get(key)
        if text is None:  # wording a stored script may lack (the ZIP step's, the call-back's)
            text = OPTIONAL_WORDING.get(language[:2].lower(), OPTIONAL_WORDING["en"])[key]
        return text.format(**values) if values else text

    @property
    def first_topic_step(self) -> int:
        """The step of the call's first topic menu: 1 on a one-language line, else 2 (after
        the language menu), one more when the ZIP code is asked before it."""
        step = 1 if len(self.languages) == 1 else 2
        return step + 1 if self.zip_step == "after_language" else step

    def district(self, name: str) -> District | None:
        return next((d for d in self.districts if d.name == name), None)

    def recording(self, language: str, key: str) -> str | None:
        """The public name of the prompt recorded for this line, or None: it is said."""
        return dict(self.recorded).get((language, key))

    def topic_line(self, language: str, topic: TopicScript) -> str:
        """What the topic menu says for `topic`: its own prompt, or the wording's."""
        return topic.prompt(language) or self.say(
            language, "topic_option", topic=topic.name(language), digit=topic.digit
        )


def build_script(settings: LineSettings, topics: list[Topic], recorded: dict | None = None) -> LineScript:
    """The script callers hear; `recorded` maps (language, key) to the public name of the
    audio of each prompt `settings.prompts` names (models/prompts.py `prompt_names`)."""
    ordered = sorted(topics, key=lambda t: (t.position, t.digit))
    recorded_lines = tuple(sorted((recorded or {}).items()))
    content = [_settings_values_of(settings), [(t.id, t.slug, _topic_values_of(t)) for t in ordered]]
    if recorded_lines:
        content.append([[language, key, name] for (language, key), name in recorded_lines])
    return LineScript(
        version=settings.version,
        fingerprint=hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest(),
        languages=tuple(
            Language(
                lang["code"],
                lang["digit"],
                lang["voice"],
                lang.get("say_language") or None,
                bool(lang.get("needs_recordings", False)),
            )
            for lang in settings.languages
        ),
        topics=tuple(
            TopicScript(
                t.id,
                t.slug,
                t.digit,
                t.stance,
                tuple(t.names.items()),
                tuple((t.prompts or {}).items()),
                t.enabled,
                bool(t.callback),
            )
            for t in ordered
        ),
        general_topic=settings.general_topic,
        record_max_seconds=settings.record_max_seconds,
        menu_timeout_seconds=settings.menu_timeout_seconds,
        wording=settings.wording,
        zip_step=settings.zip_step or "off",
        districts=tuple(District(name, frozenset(zips)) for name, zips in sorted((settings.districts or {}).items())),
        recorded=recorded_lines,
    )


def script_from_document(
    document: dict, topic_ids: dict[str, int], version: int, recorded: dict | None = None
) -> LineScript:
    """The script a document describes (the draft), its topics given the ids of the live
    topics of the same slug (a topic only the draft has has none: facts about it are kept
    by slug, and it is counted nowhere), with the public names of the audio of the prompts
    the document names (`recorded`, as `build_script` takes them)."""
    settings = LineSettings(id=1, version=version, **_settings_values(document))
    topics = [
        Topic(id=topic_ids.get(t["slug"]), slug=t["slug"], **_topic_values(t, i))
        for i, t in enumerate(document["topics"])
    ]
    script = build_script(settings, topics, recorded)
    return replace(script, fingerprint="draft:" + script.fingerprint)


class ScriptCache:
    """The current script, read once per process and again only when its version changes
    (checked at most every `ttl` seconds). While the database cannot be read, callers hear
    the script last read, or, in a process that never read one, the script file's.

    `get(..., draft=True)` gives the draft instead (for "Try the line"), reread when the
    version or the draft's revision changes, and the live script while there is no draft."""

    def __init__(self, ttl: float = 1.0, fallback_file: str | Path | None = None) -> None:
        self.ttl = ttl
        self.fallback_file = fallback_file
        self._script: LineScript | None = None
        self._checked = 0.0
        self._draft: tuple[tuple[int, int], LineScript, float] | None = None  # (key, script, checked)
        self._lock = threading.Lock()

    def get(self, session, database_ok: bool = True, draft: bool = False) -> LineScript:
        if draft:
            return self._get_draft(session, database_ok)
        now = time.monotonic()
        script = self._script
        if script is not None and (now - self._checked < self.ttl or not database_ok):
            return script
        fresh = self._read(session, script) if database_ok else None
        if fresh is None and script is None:
            if self.fallback_file is None:
                raise ScriptError("the line's script cannot be read and no script file is set")
            fresh = script_from_file(read_script_file(self.fallback_file))
        with self._lock:
            self._script, self._checked = fresh or script, now
        return self._script

    def _read(self, session, cached: LineScript | None) -> LineScript | None:
        """The stored script (the cached one while its version stands), or None when the
        database cannot give one."""
        try:
            version = session.execute(select(LineSettings.version).where(LineSettings.id == 1)).scalar()
            if version is None:
                return None  # no script loaded yet (`flask line load`)
            if cached is not None and cached.version == version and not cached.fingerprint.startswith("file:"):
                return cached
            from .prompts import prompt_names  # prompts are read with the script they change

            settings = session.get(LineSettings, 1)
            return build_script(settings, list(session.scalars(select(Topic))), prompt_names(session, settings.prompts))
        except SQLAlchemyError:
            session.rollback()
            return None

    def _get_draft(self, session, database_ok: bool) -> LineScript:
        now, cached = time.monotonic(), self._draft
        if cached is not None and (now - cached[2] < self.ttl or not database_ok):
            return cached[1]
        if not database_ok:
            return self.get(session, database_ok)
        try:
            key = session.execute(
                select(LineSettings.version, LineSettings.draft_revision).where(LineSettings.id == 1)
            ).first()
            if key is None:
                return self.get(session, database_ok)
            key = tuple(key)
            if cached is not None and cached[0] == key:
                script = cached[1]
            else:
                document = session.execute(select(LineSettings.draft).where(LineSettings.id == 1)).scalar()
                if document is None:
                    script = self.get(session, database_ok)
                else:
                    from .prompts import prompt_names

                    ids = dict(session.execute(select(Topic.slug, Topic.id)).all())
                    recorded = prompt_names(session, document.get("prompts"))
                    script = script_from_document(document, ids, key[0], recorded)
        except (SQLAlchemyError, ScriptError, KeyError, TypeError):
            session.rollback()
            return self.get(session, database_ok)
        with self._lock:
            self._draft = (key, script, now)
        return script

    def forget(self) -> None:
        with self._lock:
            self._script = None
            self._draft = None


# --- loading and syncing ---------------------------------------------------------------------


def script_from_file(data: dict) -> LineScript:
    """A script built from a checked file alone, for answering callers when the database
    cannot be read. Its topics have no ids: facts taken with it are keyed by slug."""
    settings = LineSettings(id=1, version=0, **_settings_values(data))
    topics = [Topic(id=None, slug=t["slug"], **_topic_values(t, i)) for i, t in enumerate(data["topics"])]
    script = build_script(settings, topics)
    return replace(script, fingerprint="file:" + script.fingerprint)


def line_is_empty(session) -> bool:
    return session.execute(select(func.count()).select_from(LineSettings)).scalar() == 0


def _settings_values(data: dict) -> dict:
    """The `line_settings` values of a script (a file has no prompts: they are recorded)."""
    languages = [str(lang["code"]) for lang in data["languages"]]
    slugs = [str(t["slug"]) for t in data["topics"]]
    return {
        "languages": [_language_values(lang) for lang in data["languages"]],
        "wording": with_optional_wording(data["wording"]),
        "general_topic": data["general_topic"],
        "record_max_seconds": int(data.get("record_max_seconds", 180)),
        "menu_timeout_seconds": int(data.get("menu_timeout_seconds", 6)),
        "zip_step": zip_step_of(data.get("zip_step")),
        "districts": districts_of(data.get("districts")),
        "prompts": prompts_of(data.get("prompts"), languages, slugs),
    }


SETTINGS_KEYS = (
    "languages",
    "wording",
    "general_topic",
    "record_max_seconds",
    "menu_timeout_seconds",
    "zip_step",
    "districts",
    "prompts",
)


def _language_values(lang: dict) -> dict:
    """A language as stored: code, digit and voice, and the stand-in voice's marks when set."""
    values = {"code": str(lang["code"]), "digit": str(lang["digit"]), "voice": lang["voice"]}
    if lang.get("say_language"):
        values["say_language"] = str(lang["say_language"])
    if lang.get("needs_recordings"):
        values["needs_recordings"] = True
    return values


def _settings_values_of(row: LineSettings) -> dict:
    return {key: getattr(row, key) for key in SETTINGS_KEYS}


def _topic_values_of(row: Topic) -> dict:
    return {
        key: getattr(row, key) for key in ("digit", "position", "enabled", "stance", "callback", "names", "prompts")
    }


def _topic_values(topic: dict, position: int) -> dict:
    return {
        "digit": str(topic["digit"]),
        "position": position,
        "enabled": bool(topic.get("enabled", True)),
        "stance": bool(topic.get("stance", False)),
        "callback": bool(topic.get("callback", False)),
        "names": dict(topic["name"]),
        "prompts": dict(topic.get("prompt") or {}),
    }


def load_script(session, data: dict) -> bool:
    """Put the script into an empty line; return False (and change nothing) if it has one."""
    if not line_is_empty(session):
        return False
    session.add(LineSettings(id=1, version=1, **_settings_values(data)))
    for position, topic in enumerate(data["topics"]):
        session.add(Topic(slug=topic["slug"], **_topic_values(topic, position)))
    return True


def sync_script(session, data: dict) -> list[str]:
    """Apply a script file to the stored line, matching topics by slug. Topics the file no
    longer names are switched off, never deleted (their counts stay). Returns what changed."""
    if load_script(session, data):
        return ["loaded the script into an empty line"]
    changes = []
    settings = session.get(LineSettings, 1)
    for key, value in _settings_values(data).items():
        if getattr(settings, key) != value:
            setattr(settings, key, value)
            changes.append(f"line: {key} changed")
    stored = {t.slug: t for t in session.scalars(select(Topic))}
    named = set()
    for position, topic in enumerate(data["topics"]):
        named.add(topic["slug"])
        values = _topic_values(topic, position)
        row = stored.get(topic["slug"])
        if row is None:
            session.add(Topic(slug=topic["slug"], **values))
            changes.append(f"topic {topic['slug']}: added")
            continue
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changes.append(f"topic {row.slug}: {key} changed")
    for slug, row in stored.items():
        if slug not in named and row.enabled:
            row.enabled = False
            changes.append(f"topic {slug}: switched off (not in the file)")
    if changes:
        bump_version(session)
    return changes


def bump_version(session) -> None:
    """Every edit to the script calls this, so that each process reloads it."""
    session.execute(update(LineSettings).where(LineSettings.id == 1).values(version=LineSettings.version + 1))


def line_script(app) -> ScriptCache:
    """The app's cache of the line's script (set up by `init_script_cache`)."""
    return app.extensions["line_script"]


def init_script_cache(app) -> None:
    cfg = app.config
    app.extensions["line_script"] = ScriptCache(cfg["LINE_CACHE_SECONDS"], fallback_file=cfg["LINE_CONFIG"])
