"""Admin pages: staff accounts, the line's topics and wording, publishing, and the audit log.

Changes to topics and wording go to the draft script (models/drafts.py), each written to the
audit log with what it was before; callers hear them once an admin publishes the draft, which
bumps the script's version, so each web process reloads it within `LINE_CACHE_SECONDS`.
"""

from __future__ import annotations

import re
import string

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from models import LineSettings, User, db
from models.audit import AuditEntry
from models.drafts import (
    current_version,
    differences,
    discard_draft,
    draft_document,
    has_draft,
    live_document,
    publish_draft,
    publish_version,
    published_versions,
    save_draft,
)
from models.line import WORDING_KEYS, ZIP_STEPS, Topic, line_script
from models.users import (
    ROLES,
    UserError,
    count_admins,
    create_user,
    disable_user,
    enable_user,
    generate_password,
    set_password,
    start_reset,
)

from .auth import NO_LINK_BASE, admin_required, can_make_links, record, reset_link
from .console import console, current_script, url_with
from .params import NO_ROW, ROW_ID_IN_PATH, row_id, shortened, text

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
AUDIT_PAGE = 100
ZIP_STEP_LABELS = {
    "off": "Never",
    "after_language": "After the language (on a one-language line, after the greeting)",
    "after_topic": "After the call's first topic",
}
AUDIT_FILTER_LENGTH = {"action": 64, "who": 254, "target": 255}  # their columns' lengths


# --- staff accounts -------------------------------------------------------------------------


def users_page(shown: dict | None = None, status: int = 200):
    users = db.session.scalars(select(User).order_by(User.email)).all()
    return render_template("users.html", users=users, roles=ROLES, shown=shown), status


@console.get("/admin/users")
@admin_required
def users():
    return users_page()


@console.post("/admin/users")
@admin_required
def add_user():
    """Make an account; show its one-time reset link or generated password, once."""
    email, name = request.form.get("email", ""), request.form.get("name", "")
    role, how = request.form.get("role", "staff"), request.form.get("how", "link")
    if how != "password" and not can_make_links():
        flash(NO_LINK_BASE, "error")
        return users_page(status=400)
    password = generate_password()
    try:
        user = create_user(db.session, email, password, role=role, name=name)
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return users_page(status=400)
    shown = {"email": user.email}
    if how == "password":
        shown["password"] = password
    else:
        shown["link"] = reset_link(start_reset(user))
    record("user_create", f"user {user.email}", role=user.role, how=how)
    db.session.commit()
    return users_page(shown)


def user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="There is no such account.")
    return user


def keeps_an_admin(user: User) -> bool:
    """False when changing `user` would leave the console without an active admin."""
    return not (user.is_admin and user.active and count_admins(db.session) <= 1)


@console.post(f"/admin/users/<{ROW_ID_IN_PATH}:user_id>/<change>")
@admin_required
def change_user(user_id: int, change: str):
    user = user_or_404(user_id)
    shown = None
    if change == "disable":
        if user.id == g.user.id or not keeps_an_admin(user):
            flash("You cannot disable your own account or the last admin.", "error")
            return redirect(url_for("console.users"))
        disable_user(user)
    elif change == "enable":
        enable_user(user)
    elif change == "role":
        role = request.form.get("role", "")
        if role not in ROLES:
            abort(400, description="Unknown role.")
        if role != "admin" and not keeps_an_admin(user):
            flash("The console needs at least one admin.", "error")
            return redirect(url_for("console.users"))
        record("user_role", f"user {user.email}", before=user.role, after=role)
        user.role = role
    elif change == "callbacks":  # the call-back role: sees callers' numbers (staff/callbacks_page.py)
        wanted = request.form.get("callbacks") == "on"
        record("user_callbacks", f"user {user.email}", before=user.callbacks, after=wanted)
        user.callbacks = wanted
    elif change == "reset":
        if request.form.get("how") == "password":
            password = generate_password()
            set_password(user, password)
            shown = {"email": user.email, "password": password}
        elif can_make_links():
            shown = {"email": user.email, "link": reset_link(start_reset(user))}
        else:
            flash(NO_LINK_BASE, "error")
            return users_page(status=400)
    else:
        abort(404)
    if change not in ("role", "callbacks"):
        record(f"user_{change}", f"user {user.email}", how=request.form.get("how") if change == "reset" else None)
    db.session.commit()
    if shown:
        return users_page(shown)
    flash(f"{user.email}: {change} done.")
    return redirect(url_for("console.users"))


# --- topics and wording: edits go to the draft ------------------------------------------------


def line_settings() -> LineSettings:
    """The stored line-wide script; 409 when the line has none yet (before `flask line load`)."""
    settings = db.session.get(LineSettings, 1)
    if settings is None:
        abort(409, description="The line has no script in its database yet: run `flask line load` first.")
    return settings


def draft() -> dict:
    """The draft script document staff edit (the live script when there is no draft)."""
    line_settings()
    return draft_document(db.session, for_update=request.method == "POST")


def language_codes(document: dict) -> list[str]:
    return [lang["code"] for lang in document["languages"]]


def topic_values(form, languages: list[str]) -> dict:
    """The topic's values as the form gives them; `public` (shown on the public tally) only
    from a form that has the field (`public_field`), so a form without it changes nothing."""
    values = {
        "digit": form.get("digit", "").strip(),
        "stance": form.get("stance") == "on",
        "callback": form.get("callback") == "on",
        "enabled": form.get("enabled") == "on",
        "name": {code: " ".join(form.get(f"name_{code}", "").split()) for code in languages},
        "prompt": {
            code: " ".join(form.get(f"prompt_{code}", "").split())
            for code in languages
            if form.get(f"prompt_{code}", "").strip()
        },
    }
    if form.get("public_field"):
        values["public"] = form.get("public") == "on"
    return values


def topic_problem(values: dict, others: list[dict], general: str, slug: str) -> str | None:
    """Why these values cannot be saved for topic `slug`, or None."""
    if values["callback"] and not current_app.config["CALLBACK_KEY"]:
        return "Call-backs need CALLBACK_KEY (a key of their own, to keep callers' numbers): ask whoever runs the line."
    if values["digit"] not in list("0123456789"):
        return "The key must be one digit, 0 to 9."
    if any(not name for name in values["name"].values()):
        return "Give the topic a name in every language."
    if values["enabled"] and any(t["enabled"] and t["digit"] == values["digit"] for t in others):
        return f"Key {values['digit']} is already used by another topic that is switched on."
    if not values["enabled"] and slug == general:
        return "The general topic takes callers who choose nothing; it cannot be switched off."
    return None


def show_publicly(slug: str, values: dict) -> bool:
    """Apply the form's `public` (shown on the public tally: the admins' choice, at once, not
    through the draft) to the live topic; pop it from `values`. Whether it changed."""
    wanted = values.pop("public", None)
    topic = db.session.scalar(select(Topic).where(Topic.slug == slug))
    if wanted is None or topic is None or topic.public == wanted:
        return False
    record("topic_public", f"topic {slug}", before=topic.public, after=wanted)
    topic.public = wanted
    db.session.commit()
    return True


def draft_changed(document: dict, message: str) -> None:
    """Save the edited draft and commit (with its audit entry); callers hear nothing of it
    until an admin publishes the draft."""
    save_draft(db.session, document)
    db.session.commit()
    line_script(current_app).forget()  # this process tries the new draft at once; others within the cache's time
    flash(f"{message} It is in the draft: publish it for callers to hear it.")


def topics_page(status: int = 200):
    document = draft()
    public = dict(db.session.execute(select(Topic.slug, Topic.public)).all())  # live, not drafted
    from .prompts import draft_script, missing_recordings  # the prompts page's module builds on this one

    return render_template(
        "topics.html",
        topics=[{**t, "public": public.get(t["slug"], True)} for t in document["topics"]],
        languages=language_codes(document),
        wording=document["wording"],
        wording_keys=WORDING_KEYS,
        pending=len(differences(live_document(db.session), document)),
        zip_steps=ZIP_STEP_LABELS,
        zip_step=document["zip_step"],
        districts=current_script().districts,
        missing=missing_recordings(draft_script()),
    ), status


@console.get("/admin/topics")
@admin_required
def topics():
    return topics_page()


def draft_topic_or_404(document: dict, slug: str) -> dict:
    topic = next((t for t in document["topics"] if t["slug"] == slug), None)
    if topic is None:
        abort(404, description=f"There is no topic {shortened(slug)!r}.")
    return topic


@console.post("/admin/topics")
@admin_required
def add_topic():
    document = draft()
    slug = request.form.get("slug", "").strip().lower()
    values = topic_values(request.form, language_codes(document))
    existing = document["topics"]
    problem = None if SLUG.match(slug) else "The short name (slug) uses a–z, 0–9 and hyphens."
    if any(t["slug"] == slug for t in existing):
        problem = f"There is already a topic {slug!r}."
    problem = problem or topic_problem(values, existing, document["general_topic"], slug)
    if problem:
        flash(problem, "error")
        return topics_page(400)
    values.pop("public", None)  # a new topic is shown on the public tally; hide it once it is live
    existing.append({"slug": slug, **values})
    record("topic_add", f"topic {slug}", draft=True, **values)
    draft_changed(document, f"Topic {slug} added.")
    return redirect(url_for("console.topics"))


@console.post("/admin/topics/<slug>")
@admin_required
def edit_topic(slug: str):
    document = draft()
    topic = draft_topic_or_404(document, slug)
    values = topic_values(request.form, language_codes(document))
    others = [t for t in document["topics"] if t["slug"] != slug]
    problem = topic_problem(values, others, document["general_topic"], slug)
    if problem:
        flash(f"{slug}: {problem}", "error")
        return topics_page(400)
    shown = show_publicly(slug, values)
    changed = {key: value for key, value in values.items() if topic.get(key) != value}
    if not changed:
        flash(f"{slug}: saved." if shown else f"{slug}: nothing changed.")
        return redirect(url_for("console.topics"))
    record("topic_edit", f"topic {slug}", draft=True, before={k: topic.get(k) for k in changed}, after=changed)
    topic.update(changed)
    draft_changed(document, f"Topic {slug} saved.")
    return redirect(url_for("console.topics"))


@console.post("/admin/topics/<slug>/move")
@admin_required
def move_topic(slug: str):
    document = draft()
    ordered = document["topics"]
    index = next((i for i, t in enumerate(ordered) if t["slug"] == slug), None)
    if index is None:
        abort(404)
    other = index - 1 if request.form.get("direction") == "up" else index + 1
    if not 0 <= other < len(ordered):
        return redirect(url_for("console.topics"))
    ordered[index], ordered[other] = ordered[other], ordered[index]
    record("topic_move", f"topic {slug}", draft=True, order=[t["slug"] for t in ordered])
    draft_changed(document, "The menu order is saved.")
    return redirect(url_for("console.topics"))


@console.post("/admin/line")
@admin_required
def edit_line():
    """Line-wide settings: where the line asks for the caller's ZIP code."""
    document = draft()
    zip_step = request.form.get("zip_step", "")
    if zip_step not in ZIP_STEPS:
        flash(f"Choose when to ask for the ZIP code: {', '.join(ZIP_STEPS)}.", "error")
        return topics_page(400)
    if zip_step == document["zip_step"]:
        flash("Nothing changed.")
        return redirect(url_for("console.topics"))
    record("line_edit", "line zip_step", draft=True, before=document["zip_step"], after=zip_step)
    document["zip_step"] = zip_step
    draft_changed(document, f"The ZIP code step is now: {ZIP_STEP_LABELS[zip_step]}.")
    return redirect(url_for("console.topics"))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@console.post("/admin/wording/<language>")
@admin_required
def edit_wording(language: str):
    """What the line says in one language; placeholders must stay those the text had."""
    document = draft()
    if language not in document["wording"]:
        abort(404)
    current = dict(document["wording"][language])
    changed = {}
    for key in WORDING_KEYS:
        text = " ".join(request.form.get(key, current.get(key, "")).split())
        try:
            used = placeholders(text)
        except ValueError:
            used = None
        if not text or used is None or used != placeholders(current.get(key, "")):
            flash(
                f"{language} {key}: keep it non-empty and keep exactly the placeholders "
                f"{', '.join('{' + p + '}' for p in sorted(placeholders(current.get(key, '')))) or '(none)'}.",
                "error",
            )
            return topics_page(400)
        if text != current.get(key):
            changed[key] = {"before": current.get(key), "after": text}
            current[key] = text
    if not changed:
        flash("Nothing changed.")
        return redirect(url_for("console.topics"))
    document["wording"][language] = current
    record("wording_edit", f"wording {language}", draft=True, changes=changed)
    draft_changed(document, f"The {language} wording is saved.")
    return redirect(url_for("console.topics"))


# --- the draft's differences, publishing, and published versions -----------------------------


@console.get("/admin/script")
@admin_required
def script_versions():
    """The draft's differences from what callers hear, and the published versions."""
    line_settings()
    live = live_document(db.session)
    document = draft_document(db.session)
    versions = published_versions(db.session)
    return render_template(
        "script.html",
        changes=differences(live, document),
        versions=versions,
        live_version=current_version(db.session),
        undo=[(v, differences(live, v.document)) for v in versions],
    )


def after_publish(published, what: str) -> None:
    if published is None:
        flash(f"{what}: nothing to publish, callers hear it already.")
        return
    db.session.commit()
    line_script(current_app).forget()
    flash(
        f"{what} is live as version {published.version}. Each web process answers with it within "
        f"{current_app.config['LINE_CACHE_SECONDS']:g} s."
    )


@console.post("/admin/script/publish")
@admin_required
def publish():
    """Put the draft live: one transaction, audited, kept as a version."""
    line_settings()
    after_publish(publish_draft(db.session, g.user), "The draft")
    return redirect(url_for("console.script_versions"))


@console.post(f"/admin/script/versions/<{ROW_ID_IN_PATH}:version>/publish")
@admin_required
def publish_again(version: int):
    """Publish a kept version again (how a publish is undone)."""
    line_settings()
    if version == NO_ROW:
        abort(404, description="There is no published version with that number.")
    try:
        published = publish_version(db.session, version, g.user)
    except LookupError as exc:
        abort(404, description=str(exc).capitalize() + ".")
    after_publish(published, f"Version {version}")
    return redirect(url_for("console.script_versions"))


@console.post("/admin/script/discard")
@admin_required
def discard():
    """Drop the draft's changes."""
    line_settings()
    if has_draft(db.session):
        changes = [str(d) for d in differences(live_document(db.session), draft_document(db.session))]
        discard_draft(db.session)
        record("script_discard", "script draft", changes=changes)
        db.session.commit()
        flash("The draft's changes are discarded: it is the live script again.")
    return redirect(url_for("console.script_versions"))


# --- the audit log ----------------------------------------------------------------------------


@console.get("/admin/audit")
@admin_required
def audit_log():
    """The audit log, newest first, filtered by `action`, `who` and `target`; `before` (an
    entry's id, from the "older" link) pages. A bad value is a 400 saying which."""
    wanted = {k: text(request.args.get(k), k, AUDIT_FILTER_LENGTH[k]) for k in AUDIT_FILTER_LENGTH}
    kept = {k: v for k, v in wanted.items() if v is not None}
    before = row_id(request.args.get("before"), "before")
    query = select(AuditEntry)
    if "action" in kept:
        query = query.where(AuditEntry.action == kept["action"])
    if "who" in kept:
        query = query.where(AuditEntry.actor_label == kept["who"].lower())
    if "target" in kept:
        query = query.where(AuditEntry.target == kept["target"])
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE + 1)).all()
    older = (
        url_with("console.audit_log", kept, before=entries[AUDIT_PAGE - 1].id) if len(entries) > AUDIT_PAGE else None
    )
    return render_template(
        "audit.html",
        entries=entries[:AUDIT_PAGE],
        filters=kept,
        older=older,
        first_page=url_with("console.audit_log", kept) if before else None,
        script=current_script(),
    )
