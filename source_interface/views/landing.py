"""The landing page: what can be reported here, how anonymity works, and where to start."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from blagh.web.categories import CATEGORIES, GUIDES
from source_interface.listeners import is_clearnet
from source_interface.services import Services

bp = Blueprint("landing", __name__)


@bp.get("/")
def index() -> str:
    """The first page a reporter sees, in the operator's default language unless they chose.

    Over the clearnet address it first says that the onion address protects more, and where
    to get Tor Browser: an ordinary browser keeps history, and the network sees the visit."""
    clearnet = is_clearnet(request.environ)
    onion = ""
    if clearnet:
        services: Services = current_app.extensions["blagh"]
        onion = services.config.clearnet.onion_address
    return render_template(
        "landing.html", categories=CATEGORIES, guides=GUIDES, clearnet=clearnet, onion=onion
    )


@bp.get("/help/sextortion")
def sextortion() -> str:
    """What to do at once when someone threatens to share intimate images (issue 14): a fifth
    of the seed platform's reports.  Static text in the page's language; the emergency numbers
    are the configured ones, shown in the page as well as in its header."""
    return render_template("guidance/sextortion.html")
