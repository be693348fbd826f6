"""What can be reported: one list for the landing page, the report form and its validation.

Slugs are what a form posts and what is sealed into a report, so they never change once used;
labels are lazily translated, so the tuple can be built at import time and still render in each
request's language.
"""

from __future__ import annotations

from typing import NamedTuple

from flask_babel import lazy_gettext
from flask_babel.speaklater import LazyString


class Category(NamedTuple):
    """A kind of crime: ``slug`` is stable and posted by forms; ``label`` is shown to people.

    ``label`` is translated when used: templates print it as it is, Python code calls ``str()``
    on it inside a request.
    """

    slug: str
    label: LazyString


CATEGORIES: tuple[Category, ...] = (
    Category("terrorism", lazy_gettext("Terrorism: glorification, incitement or propaganda")),
    Category("sextortion", lazy_gettext("Sextortion or non-consensual intimate images")),
    Category("harassment", lazy_gettext("Online harassment or threats")),
    Category("minors", lazy_gettext("Content harming minors or child sexual exploitation")),
    Category("hate", lazy_gettext("Hate speech or incitement to violence")),
    Category("fraud", lazy_gettext("Fraud, scam or phishing")),
    Category("hacking", lazy_gettext("Hacking or data breach")),
    Category("impersonation", lazy_gettext("Identity theft or impersonation")),
    Category("illegal_trade", lazy_gettext("Illegal trade (drugs, weapons, counterfeits…)")),
    Category("other", lazy_gettext("Other")),
)
"""Every category, in the order forms list them (``other`` last, as the catch-all)."""

SLUGS: frozenset[str] = frozenset(category.slug for category in CATEGORIES)
"""The slugs a form may post: anything else is refused."""


def label_of(slug: str) -> str:
    """The translated label of ``slug`` for this request; ``KeyError`` for an unknown slug."""
    for category in CATEGORIES:
        if category.slug == slug:
            return str(category.label)
    raise KeyError(slug)


GUIDES: dict[str, str] = {"sextortion": "landing.sextortion"}
"""Categories with a guidance page (their endpoint), linked next to the category wherever it is
listed: what to do at once matters more to someone being extorted than the report itself."""
