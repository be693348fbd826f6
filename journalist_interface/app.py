"""The analysts' review app: ``create_app(config)`` builds one from a frozen config.

It runs on the workstation, on 127.0.0.1 only, under waitress (``server.py``).  The vault stays
locked until someone logs in with the analyst's passphrase; the key then lives in this process
only (``sessions.py``).  The reporters' style sheet is reused as it is, with a few rules of our own
on top (tables, the inbox), so the two sides look alike.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, g, send_from_directory
from flask.typing import ResponseReturnValue

from blagh.web.categories import label_of
from journalist_interface import i18n, security
from journalist_interface.config import WorkstationConfig
from journalist_interface.sessions import CSRF_FIELD, Sessions
from journalist_interface.views import (
    Services,
    analysts,
    auth,
    cases,
    evidence,
    files,
    insights,
    reports,
    retention,
    takedown,
    transfer,
)

REPORTER_STATIC = Path(__file__).parent.parent / "source_interface" / "static"


def create_app(config: WorkstationConfig) -> Flask:
    """Build the workstation app for the vault in ``config`` (made by ``workstation init``)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_import_mb * 1024 * 1024
    app.extensions["workstation"] = Services(
        config=config, sessions=Sessions(config.vault, config.idle_minutes * 60)
    )
    i18n.init_app(app, config)
    security.init_app(app, config.port)

    @app.get("/static/base.css")
    def base_css() -> ResponseReturnValue:
        return send_from_directory(REPORTER_STATIC, "style.css", max_age=0)

    @app.context_processor
    def page_context() -> dict[str, object]:
        session = g.get("analyst_session")
        return {
            "logged_in": session is not None,
            "csrf_token": session.csrf if session is not None else "",
            "csrf_field": CSRF_FIELD,
            "category_label": _category_label,
            "current_analyst": g.vault.analyst if session is not None else "",
            "analyst_is_admin": session is not None and session.admin,
        }

    app.register_blueprint(auth.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(transfer.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(insights.bp)
    app.register_blueprint(takedown.bp)
    app.register_blueprint(analysts.bp)
    app.register_blueprint(files.bp)
    files.init_app(app)
    app.register_blueprint(evidence.bp)
    retention.init_app(app, config.purge_closed_after_days)
    return app


def _category_label(slug: str) -> str:
    """The reporters' words for a category, in the page's language; the slug if unknown."""
    try:
        return label_of(slug)
    except KeyError:
        return slug
