"""The unit's indicators, for a CERT or a MISP instance: a STIX 2.1 bundle, or CSV.

Indicators are the links, accounts and file hashes of the reports (``report_keys``,
connections.py), each with the first and last day it was reported, how many reports gave it,
and its takedown state.  Nothing else leaves: no e-mail address (it may be the reporter's own),
no report text, no report id, no identity.  Links are exported as they are normalised (no
scheme, tracking parameters dropped), with ``https://`` in front.

The STIX bundle is made with the ``stix2`` package and parsed back with it before it is
returned, so a bundle that does not follow STIX 2.1 is never handed out.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import stix2

from journalist_interface.vault import Vault

KINDS = ("url", "handle", "file")
CSV_COLUMNS = ("type", "value", "first_seen", "last_seen", "reports", "takedown_state")
_TYPES = {"url": "url", "handle": "account", "file": "sha256"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Indicator:
    kind: str
    value: str
    first_seen: str
    last_seen: str
    reports: int
    takedown_state: str

    @property
    def exported(self) -> str:
        """The value as exported: a link with a scheme, an account without its ``@``."""
        if self.kind == "url":
            return "https://" + self.value
        if self.kind == "handle":
            return self.value.removeprefix("@")
        return self.value


def indicators(vault: Vault) -> list[Indicator]:
    with vault.transaction() as db:
        return [
            Indicator(kind, value, first, last, count, state or "")
            for kind, value, first, last, count, state in db.execute(
                """SELECT k.kind, k.value, min(r.day), max(r.day), count(*), t.state
                   FROM report_keys k JOIN reports r ON r.num = k.report_num
                   LEFT JOIN takedowns t ON t.kind = k.kind AND t.value = k.value
                   WHERE k.kind IN ('url', 'handle', 'file')
                   GROUP BY k.kind, k.value ORDER BY k.kind, k.value"""
            )
        ]


def to_csv(found: list[Indicator]) -> str:
    """CSV, one indicator a line; a cell a spreadsheet would run as a formula starts with '."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in found:
        row = [
            _TYPES[item.kind],
            item.exported,
            item.first_seen,
            item.last_seen,
            str(item.reports),
            item.takedown_state,
        ]
        writer.writerow(["'" + cell if cell.startswith(_FORMULA) else cell for cell in row])
    return out.getvalue()


def _pattern(item: Indicator) -> str:
    value = item.exported.replace("\\", "\\\\").replace("'", "\\'")
    if item.kind == "url":
        return f"[url:value = '{value}']"
    if item.kind == "handle":
        return f"[user-account:account_login = '{value}']"
    return f"[file:hashes.'SHA-256' = '{value}']"


def to_stix(found: list[Indicator], unit_name: str) -> str:
    """A STIX 2.1 bundle: the unit as an identity, and one indicator per link, account or
    file hash; checked by parsing it back with ``stix2``."""
    unit = stix2.v21.Identity(name=unit_name or "Blagh unit", identity_class="organization")
    objects: list[object] = [unit]
    for item in found:
        objects.append(
            stix2.v21.Indicator(
                name=f"{_TYPES[item.kind]} reported {item.reports} time(s)",
                pattern=_pattern(item),
                pattern_type="stix",
                valid_from=f"{item.first_seen}T00:00:00Z",
                indicator_types=["malicious-activity"],
                created_by_ref=unit.id,
            )
        )
    text = stix2.v21.Bundle(objects=objects).serialize(pretty=True)
    parsed = stix2.parse(text, allow_custom=False, version="2.1")
    if len(parsed.objects) != len(objects):  # pragma: no cover (stix2 refuses first)
        raise ValueError("the STIX bundle does not parse back whole")
    json.loads(text)
    return str(text)
