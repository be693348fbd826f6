"""What goes inside envelopes: the plaintext formats both the server and the workstation read.

Specified in docs/payloads.md.  A report's fields, a message and a reply are one JSON document
each; an attachment is a one-line JSON description followed by the file's bytes, so that it can
be sealed while it streams in and its name and type never travel outside the envelope.
"""

import json
from typing import Any

FORMAT_VERSION = 1
MAX_ATTACHMENT_HEADER = 4096


class PayloadError(ValueError):
    """A decrypted payload does not follow docs/payloads.md."""


def encode_document(kind: str, body: dict[str, Any]) -> bytes:
    """A JSON document: ``{"v": 1, "kind": kind, ...body}``, compact, UTF-8."""
    document = {"v": FORMAT_VERSION, "kind": kind, **body}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_document(data: bytes, kind: str) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError("not a JSON document") from None
    if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
        raise PayloadError("unknown document version")
    if document.get("kind") != kind:
        raise PayloadError(f"expected a {kind} document")
    return document


def attachment_header(name: str, content_type: str) -> bytes:
    """The first line of an attachment's plaintext: its name and declared type."""
    line = json.dumps({"v": FORMAT_VERSION, "name": name, "type": content_type}, ensure_ascii=True)
    return line.encode("ascii") + b"\n"


def split_attachment(data: bytes) -> tuple[dict[str, Any], bytes]:
    """``(description, file bytes)`` of a whole attachment plaintext."""
    end = data.find(b"\n", 0, MAX_ATTACHMENT_HEADER)
    if end < 0:
        raise PayloadError("attachment without a description line")
    try:
        description = json.loads(data[:end])
    except json.JSONDecodeError:
        raise PayloadError("attachment description is not JSON") from None
    if not isinstance(description, dict) or description.get("v") != FORMAT_VERSION:
        raise PayloadError("unknown attachment version")
    return description, data[end + 1 :]
