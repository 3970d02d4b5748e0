"""The draft script beside the live one, the published versions, and what differs between two.

A *script document* is the whole script as `config/line.yaml` writes it: `languages`,
`wording` per language, `topics` in menu order (each with `slug`, `digit`, `enabled`,
`stance`, `name` and `prompt` per language), `general_topic`, `record_max_seconds` and
`menu_timeout_seconds`, `zip_step`, `districts`; and `prompts`, the recorded prompts it plays
({language: {line key: SHA-256 of the audio}}, models/prompts.py), which no file has: staff
record them. Callers hear the live script (`line_settings` and `topics`); staff edit
the draft (`line_settings.draft`, None while it is the live script unchanged). Publishing puts
a document into the live tables, bumps the script's version (each process rereads it within
`LINE_CACHE_SECONDS`) and keeps the document whole in `script_versions`, so that any version
can be published again, which is how a publish is undone. The caller commits: one
transaction per publish.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import flag_modified

from .audit import audit
from .base import db, utcnow
from .line import (
    TOPIC_LINE,
    LineSettings,
    ScriptError,
    Topic,
    check_script,
    districts_of,
    prompts_of,
    sync_script,
    zip_step_of,
)


class ScriptVersion(db.Model):
    """A script as it was published: one row per live version staff or `flask line sync
    --publish` put live (and the version that stood before the first publish)."""

    __tablename__ = "script_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)  # line_settings.version it became
    document: Mapped[dict] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str] = mapped_column(String(254))
    republished_from: Mapped[int | None] = mapped_column(Integer)  # the version published again


# --- documents ------------------------------------------------------------------------------


def normal_document(data: dict) -> dict:
    """A checked script (file or draft) in the one shape documents are kept and compared in;
    raise ScriptError saying what is wrong."""
    data = check_script(copy.deepcopy(data))
    languages = [str(lang["code"]) for lang in data["languages"]]
    return {
        # A language keeps every setting it has (code, digit, voice, and any other).
        "languages": [{**lang, "code": str(lang["code"]), "digit": str(lang["digit"])} for lang in data["languages"]],
        "wording": {code: dict(lines) for code, lines in data["wording"].items()},
        "topics": [
            {
                "slug": str(t["slug"]),
                "digit": str(t["digit"]),
                "enabled": bool(t.get("enabled", True)),
                "stance": bool(t.get("stance", False)),
                "callback": bool(t.get("callback", False)),
                "name": dict(t["name"]),
                "prompt": dict(t.get("prompt") or {}),
            }
            for t in data["topics"]
        ],
        "general_topic": data["general_topic"],
        "record_max_seconds": int(data.get("record_max_seconds", 180)),
        "menu_timeout_seconds": int(data.get("menu_timeout_seconds", 6)),
        "zip_step": zip_step_of(data.get("zip_step")),
        "districts": districts_of(data.get("districts")),
        "prompts": prompts_of(data.get("prompts"), languages, [str(t["slug"]) for t in data["topics"]]),
    }


def with_prompts_of(document: dict, other: dict) -> dict:
    """`document` (a script file's, which has no recordings) playing the recorded prompts of
    `other` (the draft) for the lines both have."""
    return normal_document({**document, "prompts": other.get("prompts") or {}})


def line_settings_row(session, for_update: bool = False) -> LineSettings:
    """The one `line_settings` row; with `for_update`, locked until the transaction ends (on
    PostgreSQL: two admins editing or publishing at once take turns, and none loses the
    other's change)."""
    query = select(LineSettings).where(LineSettings.id == 1)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    settings = session.scalar(query)
    if settings is None:
        raise ScriptError("the line has no script yet: run `flask line load` first")
    return settings


def live_document(session) -> dict:
    """The script callers hear now, as a document."""
    settings = line_settings_row(session)
    topics = sorted(session.scalars(select(Topic)), key=lambda t: (t.position, t.digit))
    return {
        "languages": [dict(lang) for lang in settings.languages],
        "wording": {code: dict(lines) for code, lines in settings.wording.items()},
        "topics": [
            {
                "slug": t.slug,
                "digit": t.digit,
                "enabled": bool(t.enabled),
                "stance": bool(t.stance),
                "callback": bool(t.callback),
                "name": dict(t.names),
                "prompt": dict(t.prompts or {}),
            }
            for t in topics
        ],
        "general_topic": settings.general_topic,
        "record_max_seconds": settings.record_max_seconds,
        "menu_timeout_seconds": settings.menu_timeout_seconds,
        "zip_step": settings.zip_step,
        "districts": districts_of(settings.districts),
        "prompts": prompts_of(
            settings.prompts, [lang["code"] for lang in settings.languages], [t.slug for t in topics]
        ),
    }


def draft_document(session, for_update: bool = False) -> dict:
    """The script staff are editing: the draft, or the live script when there is none (with
    `for_update`, read to be changed: see `line_settings_row`)."""
    settings = line_settings_row(session, for_update)
    if settings.draft is None:
        return live_document(session)
    return {"prompts": {}, **copy.deepcopy(settings.draft)}


def has_draft(session) -> bool:
    """Whether the draft differs from what callers hear."""
    return line_settings_row(session).draft is not None


def save_draft(session, document: dict) -> None:
    """Make `document` the draft (checked; ScriptError when it is not a usable script). A draft
    equal to the live script is no draft. Live callers hear no difference until a publish."""
    document = normal_document(document)
    settings = line_settings_row(session)
    settings.draft = None if document == live_document(session) else document
    flag_modified(settings, "draft")
    settings.draft_revision = (settings.draft_revision or 0) + 1


def discard_draft(session) -> None:
    """Drop the draft's changes: the draft is the live script again."""
    settings = line_settings_row(session)
    settings.draft = None
    flag_modified(settings, "draft")
    settings.draft_revision = (settings.draft_revision or 0) + 1


# --- publishing -----------------------------------------------------------------------------


def current_version(session) -> int:
    return session.execute(select(LineSettings.version).where(LineSettings.id == 1)).scalar_one()


def keep_live_version(session, by: str) -> None:
    """Keep the live script as a version if it is not kept yet (the script that stood before
    the first publish, or one `flask line sync` changed without publishing), so that it can
    be published again."""
    version = current_version(session)
    if session.scalar(select(ScriptVersion.id).where(ScriptVersion.version == version)) is None:
        session.add(ScriptVersion(version=version, document=live_document(session), published_by=by))
        session.flush()


def put_live(session, document: dict, actor, *, republished_from: int | None = None) -> ScriptVersion | None:
    """Make `document` the live script in the session's transaction: the live tables follow
    it (topics matched by slug, never deleted: one the document lacks is switched off), the
    version is bumped, the document kept as a version and the publish audited with its
    differences. None (and nothing changed) when it is the live script already."""
    document = normal_document(document)
    label = actor if isinstance(actor, str) else getattr(actor, "label", None) or "system"
    line_settings_row(session, for_update=True)
    keep_live_version(session, label)
    before = live_document(session)
    changed = differences(before, document)
    if not changed:
        settings = line_settings_row(session)
        if settings.draft is not None and normal_document(settings.draft) == document:
            discard_draft(session)  # the draft was live already
        return None
    sync_script(session, document)
    session.flush()
    version = ScriptVersion(
        version=current_version(session), document=document, published_by=label, republished_from=republished_from
    )
    session.add(version)
    settings = line_settings_row(session)
    if settings.draft is not None and normal_document(settings.draft) == document:
        settings.draft = None
        flag_modified(settings, "draft")
    settings.draft_revision = (settings.draft_revision or 0) + 1
    audit(
        session,
        actor,
        "script_publish",
        f"script version {version.version}",
        changes=[str(d) for d in changed],
        republished_from=republished_from,
    )
    session.flush()
    return version


def publish_draft(session, actor) -> ScriptVersion | None:
    """Put the draft live (see `put_live`); None when there is no draft."""
    settings = line_settings_row(session, for_update=True)
    if settings.draft is None:
        return None
    return put_live(session, settings.draft, actor)


def publish_version(session, version: int, actor) -> ScriptVersion | None:
    """Publish a kept version again (undo a publish by publishing the one before). The draft
    is left as it is; it follows when it had no changes of its own. LookupError when there
    is no such version; None when it is live already."""
    kept = session.scalar(select(ScriptVersion).where(ScriptVersion.version == version))
    if kept is None:
        raise LookupError(f"there is no published version {version}")
    return put_live(session, kept.document, actor, republished_from=version)


def published_versions(session, limit: int = 50) -> list[ScriptVersion]:
    return list(session.scalars(select(ScriptVersion).order_by(ScriptVersion.version.desc()).limit(limit)))


# --- differences ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One readable change between two scripts: where (`part`: "line", "wording es-US",
    "topic budget", "languages"), what ("greeting", "name en-US", "added") and the values."""

    part: str
    what: str
    before: str | None = None
    after: str | None = None

    def __str__(self) -> str:
        if self.before is None and self.after is None:
            return f"{self.part}: {self.what}"
        return f"{self.part}: {self.what}: {self.before or '(none)'} → {self.after or '(none)'}"


def _text(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _zips(zips: list[str] | None) -> str | None:
    return None if zips is None else " ".join(zips)


def differences(before: dict, after: dict) -> list[Difference]:
    """What changes when `after` replaces `before` (two documents), in the order staff read
    a script: languages, line settings, topics, then wording per language."""
    found: list[Difference] = []
    old_langs = {lang["code"]: lang for lang in before["languages"]}
    new_langs = {lang["code"]: lang for lang in after["languages"]}
    for code in sorted(new_langs.keys() - old_langs.keys()):
        found.append(Difference("languages", f"{code} added (key {new_langs[code]['digit']})"))
    for code in sorted(old_langs.keys() - new_langs.keys()):
        found.append(Difference("languages", f"{code} removed"))
    for code in sorted(old_langs.keys() & new_langs.keys()):
        old, new = old_langs[code], new_langs[code]
        for key in sorted((old.keys() | new.keys()) - {"code"}):
            if old.get(key) != new.get(key):
                found.append(Difference("languages", f"{code} {key}", _text(old.get(key)), _text(new.get(key))))
    for key in ("general_topic", "record_max_seconds", "menu_timeout_seconds", "zip_step"):
        if before.get(key) != after.get(key):
            found.append(Difference("line", key.replace("_", " "), _text(before.get(key)), _text(after.get(key))))
    for name in sorted(before.get("districts", {}).keys() | after.get("districts", {}).keys()):
        was, now = before.get("districts", {}).get(name), after.get("districts", {}).get(name)
        if was != now:
            found.append(Difference("line", f"district {name}", _zips(was), _zips(now)))
    found += _topic_differences(before["topics"], after["topics"])
    for code in sorted(before["wording"].keys() | after["wording"].keys()):
        old, new = before["wording"].get(code, {}), after["wording"].get(code, {})
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key):
                found.append(Difference(f"wording {code}", key.replace("_", " "), old.get(key), new.get(key)))
    found += _prompt_differences(before.get("prompts") or {}, after.get("prompts") or {})
    return found


def line_label(key: str) -> str:
    """A recordable line as staff read it: "greeting", "topic housing's menu line"."""
    if key.startswith(TOPIC_LINE):
        return f"topic {key[len(TOPIC_LINE) :]}'s menu line"
    return key.replace("_", " ")


def _recording(digest: str | None) -> str:
    return "the voice" if digest is None else f"recording {digest[:8]}"


def _prompt_differences(before: dict, after: dict) -> list[Difference]:
    """Each line whose recorded prompt is added, replaced or removed, per language."""
    found = []
    for code in sorted(before.keys() | after.keys()):
        old, new = before.get(code, {}), after.get(code, {})
        for key in sorted(old.keys() | new.keys()):
            was, now = old.get(key), new.get(key)
            if was == now:
                continue
            change = "added" if was is None else "removed" if now is None else "replaced"
            found.append(
                Difference(f"recorded prompt {code}", f"{line_label(key)}: {change}", _recording(was), _recording(now))
            )
    return found


def _topic_differences(before: list[dict], after: list[dict]) -> list[Difference]:
    found = []
    old = {t["slug"]: t for t in before}
    for topic in after:
        slug, was = topic["slug"], old.get(topic["slug"])
        if was is None:
            names = ", ".join(topic["name"].values())
            state = "" if topic["enabled"] else ", switched off"
            found.append(Difference(f"topic {slug}", f"added (key {topic['digit']}: {names}{state})"))
            continue
        if was["enabled"] != topic["enabled"]:
            found.append(Difference(f"topic {slug}", "switched on" if topic["enabled"] else "switched off"))
        if was["digit"] != topic["digit"]:
            found.append(Difference(f"topic {slug}", "key", was["digit"], topic["digit"]))
        if was["stance"] != topic["stance"]:
            found.append(
                Difference(f"topic {slug}", "asks support/oppose", _text(was["stance"]), _text(topic["stance"]))
            )
        if was.get("callback", False) != topic.get("callback", False):
            found.append(
                Difference(
                    f"topic {slug}", "offers a call-back", _text(was.get("callback")), _text(topic.get("callback"))
                )
            )
        for field, label in (("name", "name"), ("prompt", "menu prompt")):
            for code in sorted(was[field].keys() | topic[field].keys()):
                if was[field].get(code) != topic[field].get(code):
                    found.append(
                        Difference(f"topic {slug}", f"{label} {code}", was[field].get(code), topic[field].get(code))
                    )
    named = {t["slug"] for t in after}
    for topic in before:
        if topic["slug"] not in named and topic["enabled"]:
            found.append(Difference(f"topic {topic['slug']}", "switched off (not in the new script)"))
    old_order = [t["slug"] for t in before if t["slug"] in named]
    new_order = [t["slug"] for t in after if t["slug"] in old]
    if old_order != new_order:
        found.append(Difference("menu order", "changed", ", ".join(old_order), ", ".join(new_order)))
    return found
