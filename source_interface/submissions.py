"""Turning a checked form into stored envelopes: shared by new reports and follow-ups.

Files were sealed while the request streamed in (source_interface.sealing); here they are made
durable and, when the form must be corrected first, kept as a *draft* under a random token that
travels in a hidden field, so the reporter does not have to upload them again.
"""

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from blagh.payloads import encode_document
from crypto.envelope import EnvelopeWriter
from source_interface.sealing import SealedUpload
from source_interface.services import DRAFT_LIFETIME_SECONDS, Services
from source_interface.store import BlobRef

_DRAFT_TOKEN_BYTES = 32


def seal_document(
    services: Services, recipients: Sequence[bytes], kind: str, body: dict[str, Any]
) -> BlobRef:
    """Seal a JSON document to ``recipients`` straight into a durable blob."""
    blob = services.store.new_blob()
    try:
        writer = EnvelopeWriter(recipients, blob.write)
        writer.update(encode_document(kind, body))
        writer.finish()
        return blob.commit()
    except BaseException:
        blob.discard()
        raise


def uploaded_files(uploads: Sequence[SealedUpload]) -> list[SealedUpload]:
    """The file parts that carry a file (an empty file input still sends a part)."""
    return [upload for upload in uploads if upload.filename]


def _draft_hash(token: str) -> bytes | None:
    try:
        raw = bytes.fromhex(token)
    except ValueError:
        return None
    return hashlib.sha256(raw).digest() if len(raw) == _DRAFT_TOKEN_BYTES else None


def draft_files(services: Services, token: str) -> tuple[bytes | None, list[BlobRef]]:
    """The files kept under a draft token from an earlier attempt (none if unknown/expired)."""
    token_hash = _draft_hash(token)
    if token_hash is None:
        return None, []
    return token_hash, services.store.index.draft(token_hash)


def keep_as_draft(services: Services, token: str, uploads: Sequence[SealedUpload]) -> str:
    """Commit ``uploads`` and keep them under ``token`` (a new one if needed); return it."""
    if _draft_hash(token) is None:
        token = secrets.token_hex(_DRAFT_TOKEN_BYTES)
    token_hash = _draft_hash(token)
    assert token_hash is not None
    refs = [upload.commit() for upload in uploads]
    if refs:
        services.store.index.add_to_draft(token_hash, refs, DRAFT_LIFETIME_SECONDS)
    return token
