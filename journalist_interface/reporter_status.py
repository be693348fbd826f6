"""Setting the status a reporter sees: sealed at once, sent in the next reply bundle.

The status (blagh/reporter_status.py) is sealed to the reporter's key and the analysts', like a
reply (replies.py), and kept in ``reporter_status`` with its envelope until a reply bundle
carries it; the server stores it as one more reply envelope, and nothing in clear says it is a
status or which one.  Each status set is a line of the case history and of the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l

from blagh import reporter_status
from blagh.payloads import encode_document
from crypto.envelope import MAX_RECIPIENTS, seal
from journalist_interface import audit
from journalist_interface.cases import record
from journalist_interface.errors import WorkstationError
from journalist_interface.vault import Vault, new_id, today

STATUSES = reporter_status.STATUSES
MESSAGES = reporter_status.MESSAGES

LABELS = {
    "received": _l("Received"),
    "being_reviewed": _l("Being reviewed"),
    "referred": _l("Referred to another unit"),
    "content_removed": _l("Content removed"),
    "closed": _l("Closed"),
}
MESSAGE_LABELS = {
    "": _l("No message"),
    "thanks": _l("Thank you for your report."),
    "more_information": _l("If you know more, add a message to this report."),
    "other_unit_contact": _l("The unit in charge may contact you through this page."),
    "danger_call": _l("If someone is in danger now, call the emergency number on this site."),
}
"""What the analyst picks from; the reporter reads the same texts in their language (the
source interface's catalogs)."""


class StatusError(WorkstationError):
    """A status that cannot be set: unknown code, no reporter key, no report."""


@dataclass(frozen=True)
class StatusRecord:
    day: str
    status: str
    message: str
    analyst: str
    sent: bool


def set_status(vault: Vault, report_id: str, status: str, message: str = "") -> str:
    """Seal ``status`` (with ``message``) for the reporter of ``report_id``; return its id."""
    if status not in STATUSES or message not in MESSAGES:
        raise StatusError("unknown status or message")
    report = vault.report(report_id)
    if report is None:
        raise StatusError("there is no such report")
    if report.source_public_key is None:
        raise StatusError("this reporter kept no codename: no status can reach them")
    recipients = [report.source_public_key]
    for key in [a.encryption for a in vault.analysts()] + [vault.key.public().encryption]:
        if key not in recipients:
            recipients.append(key)
    day = today()
    document = encode_document("status", reporter_status.body(status, message, day))
    envelope = seal(document, recipients[:MAX_RECIPIENTS])
    status_id = new_id()
    with vault.transaction() as db:
        db.execute(
            "INSERT INTO reporter_status (id, report_num, day, position, status, message,"
            " analyst, envelope) SELECT ?, num, ?, ?, ?, ?, ?, ? FROM reports WHERE id = ?",
            (
                status_id,
                day,
                vault.next_position(db),
                status,
                message,
                vault.analyst,
                envelope,
                report_id,
            ),
        )
        record(vault, db, "reporter_status", report_id, status=status, message=message)
        audit.append(
            db,
            vault.analyst,
            "reporter_status",
            {"report": report_id, "status": status, "message": message},
        )
    return status_id


def statuses(vault: Vault, report_id: str) -> list[StatusRecord]:
    """The statuses set on a report, oldest first (the last is what the reporter sees)."""
    with vault.transaction() as db:
        return [
            StatusRecord(day, status, message, analyst, bundle is not None)
            for day, status, message, analyst, bundle in db.execute(
                "SELECT s.day, s.status, s.message, s.analyst, s.bundle FROM reporter_status s"
                " JOIN reports r ON r.num = s.report_num WHERE r.id = ? ORDER BY s.position",
                (report_id,),
            )
        ]
