"""Takedown notices: asking a platform to remove a reported link or account, and tracking it.

The links and accounts of a report are its ``url`` and ``handle`` keys (connections.py), so a
notice's state belongs to the normalised link, not to one report: when a link already removed
is reported again, its new report shows "removed" at once (and the Connections view too).

Each link or account goes through::

    (none) -> drafted -> sent -> removed | refused | no_answer
    no_answer -> sent (sent again) | removed | refused | drafted
    refused | removed -> drafted (a new notice: the content is back, or a new argument)

Every step is a row of ``takedown_history`` (the drafted notice's text with it), a line of the
report's case history, and an entry of the audit log — which keeps the SHA-256 of the link, not
the link: the log holds nothing a reporter wrote.

A notice is filled in from the vault's templates (notice_templates.py) with the unit's name and
contact and the legal basis of the report's category, both from the workstation's
configuration (:class:`Unit`): never anything about the reporter.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass

from journalist_interface import audit, notice_templates
from journalist_interface.cases import now, record
from journalist_interface.config import Unit
from journalist_interface.connections import handle_of_url, normalise_url, refang
from journalist_interface.errors import WorkstationError
from journalist_interface.notice_templates import GOOD_FAITH, KIND_WORDS, LANGUAGES
from journalist_interface.vault import Vault, today

STATES = ("drafted", "sent", "removed", "refused", "no_answer")
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"drafted"}),
    "drafted": frozenset({"drafted", "sent"}),
    "sent": frozenset({"removed", "refused", "no_answer"}),
    "no_answer": frozenset({"sent", "removed", "refused", "drafted"}),
    "refused": frozenset({"drafted"}),
    "removed": frozenset({"drafted"}),
}
"""State now -> the states it may move to (``drafted`` only through :func:`draft`)."""

MIN_EXPLANATION = 20
MAX_EXPLANATION = 4000

PLATFORMS = {
    "facebook.com": "Meta Platforms Ireland (Facebook)",
    "instagram.com": "Meta Platforms Ireland (Instagram)",
    "threads.net": "Meta Platforms Ireland (Threads)",
    "x.com": "X (Twitter International Unlimited Company)",
    "tiktok.com": "TikTok Technology Limited",
    "youtube.com": "Google Ireland (YouTube)",
    "t.me": "Telegram",
    "snapchat.com": "Snap B.V. (Snapchat)",
    "github.com": "GitHub",
}
"""The platforms Blagh knows by their host; any other host is named as it is."""


class TakedownError(WorkstationError):
    """A notice that cannot be drafted, or a state change that is not allowed."""


@dataclass(frozen=True)
class Target:
    """A link or account of a report, with its takedown state (across all reports)."""

    kind: str
    value: str
    exact: str
    """The address as the report gave it (the notice cites it exactly), or the profile
    address of an account."""
    platform: str
    """The host that serves it ('' when unknown: an account named without an address)."""
    state: str | None
    sent_on: str | None


@dataclass(frozen=True)
class Step:
    at: str
    analyst: str
    state: str
    report: str | None
    language: str
    notice: str


def key_hash(kind: str, value: str) -> str:
    """What the audit log keeps of a link or account."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def platform_name(platform: str) -> str:
    return PLATFORMS.get(platform, platform)


# --- reading -----------------------------------------------------------------------------------


def targets(vault: Vault, report_id: str) -> list[Target]:
    """The links and accounts of a report, each with its state."""
    report = vault.report(report_id)
    if report is None:
        return []
    texts = [*report.links, report.description]
    texts += [entry.text for entry in report.conversation if entry.kind == "message"]
    with vault.transaction() as db:
        rows = db.execute(
            """SELECT k.kind, k.value, t.state, t.sent_on FROM report_keys k
               JOIN reports r ON r.num = k.report_num
               LEFT JOIN takedowns t ON t.kind = k.kind AND t.value = k.value
               WHERE r.id = ? AND k.kind IN ('url', 'handle') ORDER BY k.kind DESC, k.value""",
            (report_id,),
        ).fetchall()
    urls = [value for kind, value, _s, _d in rows if kind == "url"]
    found = []
    for kind, value, state, sent_on in rows:
        if kind == "url":
            exact = _exact(texts, value)
            platform = value.partition("/")[0]
        else:
            profile = next((url for url in urls if handle_of_url(url) == value), None)
            exact = _exact(texts, profile) if profile else value
            platform = profile.partition("/")[0] if profile else ""
        found.append(Target(kind, value, exact, platform, state, sent_on))
    return found


def _exact(texts: list[str], key: str) -> str:
    """The first spelling of ``key`` in the report's texts, with a scheme."""
    for text in texts:
        for token in re.split(r"\s+", text):
            token = token.strip("\"'<>()[]{},;!?“”‘’«»")
            if token and normalise_url(token) == key:
                token = refang(token)
                return token if "://" in token else "https://" + token
    return "https://" + key


def states(vault: Vault, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, value) -> (state, day sent or '') for those of ``keys`` with a notice."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    with vault.transaction() as db:
        for kind, value in keys:
            row = db.execute(
                "SELECT state, sent_on FROM takedowns WHERE kind = ? AND value = ?", (kind, value)
            ).fetchone()
            if row is not None:
                found[(kind, value)] = (row[0], row[1] or "")
    return found


def history(vault: Vault, kind: str, value: str) -> list[Step]:
    with vault.transaction() as db:
        return [
            Step(*row)
            for row in db.execute(
                """SELECT h.at, h.analyst, h.state, r.id, h.language, h.notice
                   FROM takedown_history h LEFT JOIN reports r ON r.num = h.report_num
                   WHERE h.kind = ? AND h.value = ? ORDER BY h.id""",
                (kind, value),
            )
        ]


def template(db: sqlite3.Connection, category: str, platform: str, language: str) -> str:
    """The most specific template: this category and platform, then either, then the default."""
    for wanted in ((category, platform), (category, ""), ("", platform), ("", "")):
        row = db.execute(
            "SELECT body FROM notice_templates WHERE category = ? AND platform = ?"
            " AND language = ?",
            (*wanted, language),
        ).fetchone()
        if row is not None:
            return str(row[0])
    return notice_templates.DEFAULTS[language]


def set_template(vault: Vault, category: str, platform: str, language: str, body: str) -> None:
    """Write a template (an admin's edit; the caller checks the role)."""
    if language not in LANGUAGES:
        raise TakedownError("a notice language is one of " + ", ".join(LANGUAGES))
    body = body.replace("\r\n", "\n")
    try:
        notice_templates.check(body)
    except notice_templates.TemplateError as error:
        raise TakedownError(str(error)) from None
    with vault.transaction() as db:
        db.execute(
            "INSERT INTO notice_templates (category, platform, language, body, updated, analyst)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (category, platform, language)"
            " DO UPDATE SET body = excluded.body, updated = excluded.updated,"
            " analyst = excluded.analyst",
            (category, platform, language, body, now(), vault.analyst),
        )
        audit.append(
            db,
            vault.analyst,
            "notice_template",
            {"category": category, "platform": platform, "language": language},
        )


# --- writing -----------------------------------------------------------------------------------


def draft(
    vault: Vault,
    report_id: str,
    kind: str,
    value: str,
    *,
    language: str,
    explanation: str,
    unit: Unit,
) -> str:
    """Draft the notice for one link or account of a report; return its text."""
    if language not in LANGUAGES:
        raise TakedownError("a notice language is one of " + ", ".join(LANGUAGES))
    explanation = explanation.strip()
    if not MIN_EXPLANATION <= len(explanation) <= MAX_EXPLANATION:
        raise TakedownError(
            f"the explanation of why the content is illegal holds {MIN_EXPLANATION} to "
            f"{MAX_EXPLANATION} characters"
        )
    if not unit.name.strip() or not unit.contact.strip():
        raise TakedownError(
            "the unit's name and contact are not configured: a notice names its notifier"
        )
    report = vault.report(report_id)
    if report is None:
        raise TakedownError("there is no such report")
    legal_basis = unit.legal_basis.get(report.category, "").strip()
    if not legal_basis:
        raise TakedownError(f"no legal basis is configured for the category {report.category!r}")
    found = [t for t in targets(vault, report_id) if (t.kind, t.value) == (kind, value)]
    target = found[0] if found else None
    if target is None:
        raise TakedownError("this report names no such link or account")
    with vault.transaction() as db:
        body = template(db, report.category, target.platform, language)
        text = body.format(
            url=target.exact,
            explanation=explanation,
            legal_basis=legal_basis,
            unit_name=unit.name.strip(),
            unit_contact=unit.contact.strip(),
            good_faith=GOOD_FAITH[language],
            platform=platform_name(target.platform) if target.platform else "",
            day=today(),
            kind=KIND_WORDS[language][kind],
        )
        _move(db, vault, report_id, kind, value, "drafted", target.platform, language, text)
    return text


def set_state(vault: Vault, report_id: str, kind: str, value: str, state: str) -> None:
    """Record that a notice was sent, or the platform's answer (or its silence)."""
    if state not in STATES or state == "drafted":
        raise TakedownError("draft a notice to start again")
    with vault.transaction() as db:
        known = db.execute(
            "SELECT 1 FROM report_keys k JOIN reports r ON r.num = k.report_num"
            " WHERE r.id = ? AND k.kind = ? AND k.value = ?",
            (report_id, kind, value),
        ).fetchone()
        if known is None:
            raise TakedownError("this report names no such link or account")
        _move(db, vault, report_id, kind, value, state, "", "", "")


def _move(
    db: sqlite3.Connection,
    vault: Vault,
    report_id: str,
    kind: str,
    value: str,
    state: str,
    platform: str,
    language: str,
    notice: str,
) -> None:
    row = db.execute(
        "SELECT state FROM takedowns WHERE kind = ? AND value = ?", (kind, value)
    ).fetchone()
    before = row[0] if row else None
    if state not in TRANSITIONS[before]:
        raise TakedownError(f"a notice cannot go from {before or 'none'} to {state}")
    day = today()
    db.execute(
        "INSERT INTO takedowns (kind, value, state, sent_on, updated) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (kind, value) DO UPDATE SET state = excluded.state,"
        " sent_on = CASE WHEN excluded.state = 'sent' THEN excluded.sent_on"
        "   WHEN excluded.state = 'drafted' THEN NULL ELSE takedowns.sent_on END,"
        " updated = excluded.updated",
        (kind, value, state, day if state == "sent" else None, day),
    )
    db.execute(
        "INSERT INTO takedown_history (kind, value, report_num, at, analyst, state, platform,"
        " language, notice) SELECT ?, ?, num, ?, ?, ?, ?, ?, ? FROM reports WHERE id = ?",
        (kind, value, now(), vault.analyst, state, platform, language, notice, report_id),
    )
    record(vault, db, "takedown", report_id, kind=kind, value=value, state=state)
    audit.append(
        db,
        vault.analyst,
        "takedown",
        {"report": report_id, "kind": kind, "key": key_hash(kind, value), "state": state},
    )
