"""Fill a server store with many reports quickly, for the benchmark's costs-at-scale figures.

Bench only.  100,000 reports through HTTP would take most of an hour (each one derives nothing,
but seals, fsyncs twice and commits); here they go straight in through the store's own API
(``Index.add_report``, ``create_session``, ``add_to_draft``) so the rows are exactly what the
source interface writes, with two shortcuts that change nothing the server later reads:

- many calls share one SQLite transaction (BATCH of them), by handing the index's
  ``transaction()`` the open one while a batch runs; the commit per report is what makes the
  real path slow, and the figures measured afterwards do not depend on how rows got there;
- blob files are written with no fsync and no temporary name (the real path does both): every
  report's fields blob is the same small envelope, sealed once.  Draft rows point at no file
  (a draft's files are only read when its reporter comes back, which the bench never does).

Each report comes from its own source (no codename: no verifier, no key), and there are as many
live sessions and live drafts as reports, as on the busy server of issue 10's measurements.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterator, Sequence

from blagh.datadir import DataDir
from blagh.payloads import encode_document
from crypto.envelope import seal
from source_interface.app import open_store
from source_interface.store import BlobRef, Store
from source_interface.store.index import Index, NewSource, new_id

BATCH = 5_000
"""Reports per transaction."""
SESSION_SECONDS = 6 * 3600
"""Sessions and drafts stay live for the whole bench."""


@contextlib.contextmanager
def one_transaction(index: Index) -> Iterator[None]:
    """Run the index's calls inside one transaction: its ``transaction()`` reuses the open one."""
    with index.transaction() as db:
        index.transaction = lambda: contextlib.nullcontext(db)  # type: ignore[method-assign]
        try:
            yield
        finally:
            del index.transaction


def small_blob(store: Store, envelope: bytes, digest: str) -> BlobRef:
    """A committed-looking blob file, written without fsync (see the module's docstring)."""
    name = secrets.token_hex(16)
    store.blobs.path_of(name).write_bytes(envelope)
    return BlobRef(name, len(envelope), digest)


def fill(data_dir: DataDir, reports: int, analysts: Sequence[bytes]) -> None:
    """Add ``reports`` one-item reports, and as many live sessions and drafts, to the store."""
    fields = encode_document(
        "report",
        {
            "category": "fraud",
            "danger": False,
            "description": "x" * 200,
            "links": [],
            "platform": "",
            "seen_on": None,
            "identity": None,
            "attachments": [],
        },
    )
    envelope = seal(fields, list(analysts))
    digest = hashlib.sha256(envelope).hexdigest()
    store = open_store(data_dir)
    try:
        for start in range(0, reports, BATCH):
            with one_transaction(store.index):
                for _ in range(min(BATCH, reports - start)):
                    source_id = new_id()
                    blob = small_blob(store, envelope, digest)
                    store.index.add_report(
                        source_id, [("fields", blob)], new_source=NewSource(None, None)
                    )
                    store.index.create_session(
                        secrets.token_bytes(32), source_id, secrets.token_bytes(72), SESSION_SECONDS
                    )
                    draft = BlobRef(secrets.token_hex(16), len(envelope), digest)
                    store.index.add_to_draft(secrets.token_bytes(32), [draft], SESSION_SECONDS)
    finally:
        store.close()
