"""What the server store hands out and takes in, whichever backend keeps it (protocol.py):
ids, days, and the records of sources, reports, items, sessions and replies.

Apart from the backends (index.py, postgres.py) so that views, the pickup API and the CLI name
these without importing a backend.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from blagh.blobs import BlobRef

EXPIRY_GRAIN_SECONDS = 300
"""Expiries of sessions and drafts are rounded up to a multiple of this: a row says only in
which five minutes its owner was last active, and a session's idle timer is written back at
most once per grain (most page views only read).  A session then ends between its idle time
and five minutes more."""


def today() -> str:
    """The current UTC day: the finest time the store keeps."""
    return datetime.now(UTC).date().isoformat()


def new_id() -> str:
    """A random id: it says nothing of when, or after what, its row came."""
    return secrets.token_hex(16)


def coarse_expiry(now: float, lifetime: int) -> int:
    """``now + lifetime`` rounded up to :data:`EXPIRY_GRAIN_SECONDS`."""
    grain = EXPIRY_GRAIN_SECONDS
    return -(-(int(now) + lifetime) // grain) * grain


@dataclass(frozen=True)
class Source:
    id: str
    public_key: bytes | None
    day: str


@dataclass(frozen=True)
class NewSource:
    """A source to create with its first report: what the store keeps of it."""

    verifier: bytes | None
    public_key: bytes | None


@dataclass(frozen=True)
class NewSession:
    """A session to start with a report, in the same transaction: the reporter who stored it
    can never be left without the session that shows its codename."""

    token_hash: bytes
    sealed_secret: bytes
    lifetime: int


@dataclass(frozen=True)
class Submission:
    """A form's one-time submission, recorded with the report it stored."""

    key: bytes
    outcome: str


def _yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


class DuplicateSubmission(Exception):
    """This form's submission already stored a report: nothing was recorded this time."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass(frozen=True)
class Item:
    id: str
    report_id: str
    kind: str
    blob: str
    size: int
    sha256: str
    day: str


@dataclass(frozen=True)
class Report:
    id: str
    source_id: str
    day: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Session:
    source_id: str
    sealed_secret: bytes
    expires: int


@dataclass(frozen=True)
class PendingItem:
    """An item the workstation has not acknowledged yet, with what a pickup manifest says."""

    id: str
    report_id: str
    source_id: str
    kind: str
    blob: str
    size: int
    sha256: str
    day: str
    seq: int
    report_day: str
    source_public_key: bytes | None


@dataclass(frozen=True)
class NewReply:
    """A reply from a reply bundle, its envelope already a committed blob."""

    id: str
    report_id: str
    blob: BlobRef


@dataclass(frozen=True)
class AppliedReplies:
    """What applying a reply bundle changed, and the blobs no row refers to any more."""

    stored: int
    already_stored: int
    dropped: int
    acknowledged: int
    deleted_reports: int
    sources_removed: int
    unused_blobs: tuple[str, ...]


@dataclass(frozen=True)
class Purged:
    """What a retention purge removed, and the blobs to delete."""

    items: int
    reports: int
    sources: int
    blobs: tuple[str, ...]


class ReplyConflict(Exception):
    """A reply's id is already used by a different item: the bundle cannot be applied."""


@dataclass(frozen=True)
class PickupState:
    """The pickup counters the store keeps (in index.py, its triggers), and the last bundle."""

    generation: int
    deletions: int
    bundle_generation: int | None
    bundle_context: str | None
    bundle_key: str | None
    bundle_items: int | None


@dataclass(frozen=True)
class PickupSnapshot:
    """Every undelivered item, and the counters as they were when it was listed."""

    generation: int
    deletions: int
    items: list[PendingItem]
