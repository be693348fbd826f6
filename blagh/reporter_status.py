"""The status a reporter sees on their follow-up page: the codes both ends agree on.

An analyst sets it on the workstation; it is sealed, like a reply, to the reporter's key and the
analysts', as a ``status`` document (docs/payloads.md) carried in the reply bundle as a reply
item: the server stores one more envelope and cannot tell a status from a reply.  The
follow-up page opens it with the key derived from the codename and shows the label and the
message of these codes in the page's language.  A message is one of :data:`MESSAGES`, never
free text, so that every reporter reads it in their own language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

STATUSES = ("received", "being_reviewed", "referred", "content_removed", "closed")
MESSAGES = ("", "thanks", "more_information", "other_unit_contact", "danger_call")
"""Message codes ('' for none)."""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Status:
    status: str
    message: str
    day: str


def body(status: str, message: str, day: str) -> dict[str, Any]:
    """The fields of a ``status`` document."""
    if status not in STATUSES or message not in MESSAGES or _DAY.fullmatch(day) is None:
        raise ValueError("unknown status, message or day")
    return {"status": status, "message": message, "day": day}


def read(document: dict[str, Any]) -> Status | None:
    """A decoded ``status`` document's status, or None if it holds codes this version does not
    know (a newer workstation's): the page then shows the status it knew before."""
    status, message, day = document.get("status"), document.get("message", ""), document.get("day")
    if status not in STATUSES or message not in MESSAGES:
        return None
    if not isinstance(day, str) or _DAY.fullmatch(day) is None:
        return None
    return Status(str(status), str(message), day)
