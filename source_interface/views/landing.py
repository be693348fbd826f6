"""The landing page: what can be reported here, how anonymity works, and where to start."""

from __future__ import annotations

from flask import Blueprint, render_template

from source_interface.categories import CATEGORIES

bp = Blueprint("landing", __name__)


@bp.get("/")
def index() -> str:
    """The first page a reporter sees, in the operator's default language unless they chose."""
    return render_template("landing.html", categories=CATEGORIES)
