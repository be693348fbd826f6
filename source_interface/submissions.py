"""Turning a checked form into stored envelopes: shared by new reports and follow-ups.

Files were sealed while the request streamed in (source_interface.sealing); here they are made
durable and, when the form must be corrected first, kept as a *draft* under a random token that
travels in a hidden field, so the reporter does not have to upload them again.

Drafts are bounded, since anyone can make one (a form sent with a bad token is enough): one
draft holds at most one report's files and bytes, and all drafts together at most
``[limits] max_draft_total_mb``, the least recently used draft (to five minutes: expiries are
kept to five) dropped first to make room.  A
reporter whose draft was dropped is told to attach the files again (:func:`draft_lost`): the
form lists the files it believes kept, and the server compares.
"""

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from blagh.payloads import encode_document
from crypto.envelope import EnvelopeWriter, sealed_size
from source_interface.diskspace import NoSpace, is_no_space
from source_interface.sealing import SealedUpload
from source_interface.services import DRAFT_LIFETIME_SECONDS, Services
from source_interface.store import BlobRef

_DRAFT_TOKEN_BYTES = 32


def seal_document(
    services: Services, recipients: Sequence[bytes], kind: str, body: dict[str, Any]
) -> BlobRef:
    """Seal a JSON document to ``recipients`` into a durable blob.

    A document is small (a form's fields, bounded by the form memory limit): it is sealed in
    memory, then written, fsynced and renamed in one job off the event loop.
    """
    sealed = bytearray()
    writer = EnvelopeWriter(recipients, sealed.extend)
    writer.update(encode_document(kind, body))
    writer.finish()
    try:
        return services.store.blobs.write_whole(bytes(sealed))
    except OSError as error:
        if is_no_space(error):
            raise NoSpace() from None
        raise


def uploaded_files(uploads: Sequence[SealedUpload]) -> list[SealedUpload]:
    """The files received whole (refused ones, for lack of space, are not among them)."""
    return [upload for upload in uploads if upload.filename and not upload.refused]


def no_space_message() -> str:
    """Said next to the files when they were refused for lack of disk space."""
    message: str = _(
        "The server is short of disk space and could not keep the files you attached. "
        "Nothing else was lost: send your text now without the files and add them later, "
        "or try again in a few hours."
    )
    return message


def draft_lost_message() -> str:
    """Said next to the files when the files kept from an earlier attempt are gone."""
    message: str = _(
        "The files you attached before are no longer kept (too much time passed, or the "
        "server had to make room). Attach them again."
    )
    return message


def draft_lost(form: MultiDict[str, str], kept: Sequence[BlobRef]) -> bool:
    """Whether the form lists more kept files than the server still keeps for it."""
    return len(form.getlist("kept_file")) > len(kept)


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
    return token_hash, services.store.draft(token_hash)


def remove_kept(
    services: Services,
    form: MultiDict[str, str],
    draft_hash: bytes | None,
    kept: list[BlobRef],
    kept_names: list[str],
) -> tuple[list[BlobRef], list[str]]:
    """Drop the kept files whose "remove" box is ticked (``remove_file``: their positions in
    the list) from the draft and from the disk; the files and names that stay.

    A file kept from an earlier attempt may be the wrong one, an identifying photo: the
    reporter can take it out before anything is sent (issue 14)."""
    positions = {int(v) for v in form.getlist("remove_file") if v.isdigit() and len(v) < 4}
    positions &= set(range(min(len(kept), len(kept_names))))
    if draft_hash is None or not positions:
        return kept, kept_names
    names = [kept[i].name for i in sorted(positions)]
    for name in services.store.remove_from_draft(draft_hash, names):
        services.store.delete_blob(name)
    return (
        [ref for i, ref in enumerate(kept) if i not in positions],
        [name for i, name in enumerate(kept_names) if i not in positions],
    )


@dataclass(frozen=True)
class KeptDraft:
    """A draft after :func:`keep_as_draft`: its token, the names of all the files it keeps, and
    whether some file could not be kept (the reporter must attach it again)."""

    token: str
    names: list[str]
    lost: bool


def max_draft_bytes(services: Services) -> int:
    """One report's files, as envelopes: what the chunked uploads of one report may hold too."""
    limit = services.config.source_interface.max_upload_mb * 1024 * 1024
    return sealed_size(limit, len(services.analysts))


def keep_as_draft(
    services: Services, token: str, uploads: Sequence[SealedUpload], kept_names: Sequence[str]
) -> KeptDraft:
    """Commit ``uploads`` and keep them under ``token`` (a new one if needed) beside the files
    already kept there (``kept_names``)."""
    if _draft_hash(token) is None:
        token = secrets.token_hex(_DRAFT_TOKEN_BYTES)
    token_hash = _draft_hash(token)
    assert token_hash is not None
    if not uploads:
        return KeptDraft(token, list(kept_names), False)
    refs: list[BlobRef] = []
    try:
        for upload in uploads:
            refs.append(upload.commit())
    except NoSpace:
        for ref in refs:
            services.store.delete_blob(ref.name)
        return KeptDraft(token, list(kept_names), True)
    config = services.config
    kept, unused = services.store.add_to_draft(
        token_hash,
        refs,
        DRAFT_LIFETIME_SECONDS,
        max_files=config.source_interface.max_files_per_report,
        max_bytes=max_draft_bytes(services),
        max_total_bytes=config.limits.max_draft_total_mb * 1024 * 1024,
    )
    for name in unused:
        services.store.delete_blob(name)
    if not kept:
        survivors = services.store.draft(token_hash)
        return KeptDraft(token, list(kept_names)[: len(survivors)], True)
    return KeptDraft(token, [*kept_names, *(upload.filename for upload in uploads)], False)
