"""The public side: a tally anyone can read at `/public` (off unless PUBLIC_TALLY is on), the
"was my comment counted?" lookup, and the daily receipts that let anyone check the count."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from .cache import StaleWhileRefreshing
from .routes import public


def init_app(app: Flask) -> None:
    app.register_blueprint(public)
    app.extensions["public_cache"] = StaleWhileRefreshing(app.config["PUBLIC_CACHE_SECONDS"])
    app.extensions.setdefault("metrics_gauges", []).append(lambda: lookups_held_back(app))


def lookups_held_back(app: Flask):
    """For /metrics: addresses whose reference lookups are used up in the current window."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy.exc import SQLAlchemyError

    from models import db

    from .limits import addresses_held_back

    gauge = GaugeMetricFamily(
        "commentline_public_check_addresses_held_back",
        "Addresses that used up their reference lookups (/public/check) in the current window",
    )
    window = timedelta(minutes=app.config["PUBLIC_CHECK_WINDOW_MINUTES"])
    try:
        gauge.add_metric([], addresses_held_back(db.session, app.config["PUBLIC_CHECKS_PER_ADDRESS"], window))
    except SQLAlchemyError:
        db.session.rollback()
        return
    yield gauge
