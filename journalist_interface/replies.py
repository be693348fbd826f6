"""Replies to reporters, and the reply bundle that carries them to the server.

A reply is sealed as soon as it is written, to the reporter's public key (from the pickup
manifest's ``sources``) and to every analyst the newest pickup bundle listed (and to this
analyst), as a ``reply`` document (docs/payloads.md); the vault keeps its text to show and its
envelope to send.

A reply bundle (docs/bundles.md, format ``blagh-replies``) holds the replies not yet sent (and
the reporter-visible statuses, which travel as replies: reporter_status.py), the
acknowledgement of every item imported since the last bundle, and the deletions the analyst
asked for; it is signed with the analyst's Ed25519 key.  Once the file is written and flushed,
what it carries is marked sent, in the same transaction that read it.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from blagh.bundles import ItemSource, write_bundle
from blagh.payloads import encode_document
from crypto.envelope import MAX_RECIPIENTS, seal
from journalist_interface.errors import NothingToSend, WorkstationError
from journalist_interface.vault import ReplyBundleRecord, Vault, new_id, today

REPLIES_FORMAT = "blagh-replies"
MAX_REPLY = 20_000


class ReplyError(WorkstationError):
    """A reply cannot be written: no reporter key, an empty or too long text, no analysts."""


def add_reply(vault: Vault, report_id: str, text: str) -> str:
    """Seal a reply to the reporter of ``report_id`` and the analysts; return its id."""
    text = text.strip()
    if not text:
        raise ReplyError("the reply is empty")
    if len(text) > MAX_REPLY:
        raise ReplyError(f"the reply is too long: at most {MAX_REPLY} characters")
    report = vault.report(report_id)
    if report is None:
        raise ReplyError("there is no such report")
    if report.source_public_key is None:
        raise ReplyError("this reporter kept no codename: no reply can reach them")
    recipients = [report.source_public_key]
    own = vault.key.public().encryption
    for key in [analyst.encryption for analyst in vault.analysts()] + [own]:
        if key not in recipients:
            recipients.append(key)
    envelope = seal(encode_document("reply", {"text": text}), recipients[:MAX_RECIPIENTS])
    reply_id = new_id()
    with vault.transaction() as db:
        db.execute(
            "INSERT INTO replies (id, report_id, day, position, text, envelope)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (reply_id, report_id, today(), vault.next_position(db), text, envelope),
        )
    return reply_id


def make_reply_bundle(vault: Vault, out: Path) -> ReplyBundleRecord:
    """Write a reply bundle to ``out`` (a new file) and mark what it carries as sent.

    Raises :class:`NothingToSend` when nothing waits, and ``FileExistsError`` if ``out`` exists.
    """
    bundle_id = new_id()
    day = today()
    written = False
    try:
        with vault.transaction() as db:
            replies = db.execute(
                "SELECT id, report_id, envelope FROM replies WHERE bundle IS NULL ORDER BY position"
            ).fetchall()
            statuses = db.execute(
                "SELECT s.id, r.id, s.envelope FROM reporter_status s"
                " JOIN reports r ON r.num = s.report_num WHERE s.bundle IS NULL"
                " ORDER BY s.position, s.rowid"
            ).fetchall()
            acknowledged = [
                row[0]
                for row in db.execute("SELECT id FROM items WHERE ack_bundle IS NULL ORDER BY id")
            ]
            deletions = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM reports WHERE delete_asked IS NOT NULL"
                    " AND delete_bundle IS NULL ORDER BY id"
                )
            ]
            sent_statuses = [(row[0], row[1], row[2]) for row in statuses]
            replies = [(row[0], row[1], row[2]) for row in replies]
            carried = replies + sent_statuses  # a status travels as a reply (reporter_status.py)
            if not (carried or acknowledged or deletions):
                raise NothingToSend(
                    "nothing to send: no reply, acknowledgement or deletion is waiting"
                )
            items = [
                ItemSource(
                    id=reply_id,
                    size=len(envelope),
                    sha256=hashlib.sha256(envelope).hexdigest(),
                    open=_opener(envelope),
                )
                for reply_id, _report, envelope in carried
            ]
            manifest = {
                "format": REPLIES_FORMAT,
                "version": 1,
                "bundle": bundle_id,
                "day": day,
                "acknowledged": acknowledged,
                "delete_reports": deletions,
                "items": [
                    {"id": item.id, "report": report, "size": item.size, "sha256": item.sha256}
                    for item, (_id, report, _envelope) in zip(items, carried, strict=True)
                ],
            }
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            written = True
            with os.fdopen(fd, "wb") as file:
                write_bundle(
                    file,
                    manifest,
                    sign=vault.key.sign,
                    signer_public=vault.key.public().verify,
                    items=items,
                )
                file.flush()
                os.fsync(file.fileno())
            _mark_sent(db, bundle_id, replies, acknowledged, deletions)
            db.executemany(
                "UPDATE reporter_status SET bundle = ? WHERE id = ?",
                [(bundle_id, row[0]) for row in sent_statuses],
            )
            db.execute(
                "INSERT INTO reply_bundles (id, day, file, replies, acknowledged, deletions)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (bundle_id, day, str(out), len(carried), len(acknowledged), len(deletions)),
            )
    except BaseException:
        if written:
            out.unlink(missing_ok=True)
        raise
    return ReplyBundleRecord(
        bundle_id, day, str(out), len(carried), len(acknowledged), len(deletions)
    )


def _opener(envelope: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(envelope)


def _mark_sent(
    db: sqlite3.Connection,
    bundle_id: str,
    replies: list[tuple[str, str, bytes]],
    acks: list[str],
    deletions: list[str],
) -> None:
    db.executemany(
        "UPDATE replies SET bundle = ? WHERE id = ?", [(bundle_id, r[0]) for r in replies]
    )
    db.executemany("UPDATE items SET ack_bundle = ? WHERE id = ?", [(bundle_id, i) for i in acks])
    db.executemany(
        "UPDATE reports SET delete_bundle = ? WHERE id = ?", [(bundle_id, r) for r in deletions]
    )
