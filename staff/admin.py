"""Admin pages: staff accounts, the line's topics and wording, and the audit log.

Every change to the script calls `bump_version`, so each web process reloads it before its
next call, and is written to the audit log with what it was before.
"""

from __future__ import annotations

import re
import string

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from models import LineSettings, Topic, User, db
from models.audit import AuditEntry
from models.line import WORDING_KEYS, bump_version, line_script
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
from .console import all_topics, console, current_script, url_with
from .params import row_id, text

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
AUDIT_PAGE = 100
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


@console.post("/admin/users/<int:user_id>/<change>")
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
    if change != "role":
        record(f"user_{change}", f"user {user.email}", how=request.form.get("how") if change == "reset" else None)
    db.session.commit()
    if shown:
        return users_page(shown)
    flash(f"{user.email}: {change} done.")
    return redirect(url_for("console.users"))


# --- topics and wording ---------------------------------------------------------------------


def line_settings() -> LineSettings:
    """The stored line-wide script; 409 when the line has none yet (before `flask line load`)."""
    settings = db.session.get(LineSettings, 1)
    if settings is None:
        abort(409, description="The line has no script in its database yet: run `flask line load` first.")
    return settings


def topic_values(form, languages: list[str]) -> dict:
    return {
        "digit": form.get("digit", "").strip(),
        "stance": form.get("stance") == "on",
        "enabled": form.get("enabled") == "on",
        "names": {code: " ".join(form.get(f"name_{code}", "").split()) for code in languages},
        "prompts": {
            code: " ".join(form.get(f"prompt_{code}", "").split())
            for code in languages
            if form.get(f"prompt_{code}", "").strip()
        },
    }


def topic_problem(values: dict, others: list[Topic], general: str, slug: str) -> str | None:
    """Why these values cannot be saved for topic `slug`, or None."""
    if values["digit"] not in list("0123456789"):
        return "The key must be one digit, 0 to 9."
    if any(not name for name in values["names"].values()):
        return "Give the topic a name in every language."
    if values["enabled"] and any(t.enabled and t.digit == values["digit"] for t in others):
        return f"Key {values['digit']} is already used by another topic that is switched on."
    if not values["enabled"] and slug == general:
        return "The general topic takes callers who choose nothing; it cannot be switched off."
    return None


def script_changed(message: str) -> None:
    bump_version(db.session)
    db.session.commit()
    line_script(current_app).forget()
    flash(message)


def topics_page(status: int = 200):
    settings = line_settings()
    languages = [lang["code"] for lang in settings.languages]
    from .prompts import missing_recordings  # the prompts page's module builds on this one

    return render_template(
        "topics.html",
        topics=all_topics(),
        languages=languages,
        settings=settings,
        wording_keys=WORDING_KEYS,
        missing=missing_recordings(current_script()),
    ), status


@console.get("/admin/topics")
@admin_required
def topics():
    return topics_page()


@console.post("/admin/topics")
@admin_required
def add_topic():
    settings = line_settings()
    languages = [lang["code"] for lang in settings.languages]
    slug = request.form.get("slug", "").strip().lower()
    values = topic_values(request.form, languages)
    existing = all_topics()
    problem = None if SLUG.match(slug) else "The short name (slug) uses a–z, 0–9 and hyphens."
    if any(t.slug == slug for t in existing):
        problem = f"There is already a topic {slug!r}."
    problem = problem or topic_problem(values, existing, settings.general_topic, slug)
    if problem:
        flash(problem, "error")
        return topics_page(400)
    position = max((t.position for t in existing), default=-1) + 1
    db.session.add(Topic(slug=slug, position=position, **values))
    record("topic_add", f"topic {slug}", **values)
    script_changed(f"Topic {slug} added. Callers hear it from their next call.")
    return redirect(url_for("console.topics"))


@console.post("/admin/topics/<int:topic_id>")
@admin_required
def edit_topic(topic_id: int):
    settings = line_settings()
    languages = [lang["code"] for lang in settings.languages]
    topic = db.session.get(Topic, topic_id) or abort(404)
    values = topic_values(request.form, languages)
    others = [t for t in all_topics() if t.id != topic.id]
    problem = topic_problem(values, others, settings.general_topic, topic.slug)
    if problem:
        flash(f"{topic.slug}: {problem}", "error")
        return topics_page(400)
    before = {key: getattr(topic, key) for key in values}
    changed = {key: value for key, value in values.items() if before[key] != value}
    if not changed:
        flash(f"{topic.slug}: nothing changed.")
        return redirect(url_for("console.topics"))
    for key, value in changed.items():
        setattr(topic, key, value)
    record("topic_edit", f"topic {topic.slug}", before={k: before[k] for k in changed}, after=changed)
    script_changed(f"Topic {topic.slug} saved. Callers hear the change from their next call.")
    return redirect(url_for("console.topics"))


@console.post("/admin/topics/<int:topic_id>/move")
@admin_required
def move_topic(topic_id: int):
    ordered = all_topics()
    index = next((i for i, t in enumerate(ordered) if t.id == topic_id), None)
    if index is None:
        abort(404)
    other = index - 1 if request.form.get("direction") == "up" else index + 1
    if not 0 <= other < len(ordered):
        return redirect(url_for("console.topics"))
    ordered[index], ordered[other] = ordered[other], ordered[index]
    for position, topic in enumerate(ordered):
        topic.position = position
    record("topic_move", f"topic {ordered[other].slug}", order=[t.slug for t in ordered])
    script_changed("The menu order is saved.")
    return redirect(url_for("console.topics"))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@console.post("/admin/wording/<language>")
@admin_required
def edit_wording(language: str):
    """What the line says in one language; placeholders must stay those the text had."""
    settings = line_settings()
    if language not in settings.wording:
        abort(404)
    current = dict(settings.wording[language])
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
    settings.wording = {**settings.wording, language: current}
    flag_modified(settings, "wording")
    record("wording_edit", f"wording {language}", changes=changed)
    script_changed(f"The {language} wording is saved. Callers hear it from their next call.")
    return redirect(url_for("console.topics"))


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
