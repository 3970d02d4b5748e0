"""Probes: `/livez` for the load balancer, `/healthz` for the database."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from models import db

health = Blueprint("health", __name__)


@health.get("/livez")
def livez():
    """200 whenever this process can answer a webhook; it does not touch the database, which
    callers do not need in order to be answered."""
    return jsonify(status="ok")


@health.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as exc:
        db.session.rollback()
        return jsonify(status="unavailable", database=type(exc).__name__), 503
    return jsonify(status="ok", database="ok")
