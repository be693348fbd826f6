"""The server store: an index in SQLCipher and a folder of envelope blobs, behind one interface.

Views talk to :class:`Store` only, so that the embedded default (SQLCipher + files) can later be
swapped for PostgreSQL and an object store without touching them.
"""

from pathlib import Path
from typing import BinaryIO

from source_interface.store.blobs import BlobFolder, BlobRef, PendingBlob
from source_interface.store.index import Index, Item, Report, Session, Source

__all__ = ["BlobRef", "Item", "PendingBlob", "Report", "Session", "Source", "Store"]


class Store:
    """Ciphertext in, ciphertext out; never plaintext, never a time finer than a day."""

    def __init__(self, root: Path, db_key: bytes) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs = BlobFolder(root / "blobs")
        self.index = Index(root / "index.db", db_key)

    def close(self) -> None:
        self.index.close()

    def new_blob(self) -> PendingBlob:
        return self.blobs.new()

    def open_blob(self, name: str) -> BinaryIO:
        return self.blobs.open(name)

    def read_blob(self, name: str) -> bytes:
        with self.blobs.open(name) as f:
            return f.read()

    def delete_source(self, source_id: str) -> None:
        """Remove a source's rows, then their blobs (a crash between leaves only orphans)."""
        for name in self.index.delete_source(source_id):
            self.blobs.delete(name)

    def sweep(self) -> int:
        """Remove blobs left by a crash or an abandoned upload, and sources a crash left without
        their report; run before serving.  Returns how many blobs were removed."""
        self.index.delete_sources_without_reports()
        self.expire_drafts()
        return self.blobs.sweep(self.index.blob_names())

    def expire_drafts(self) -> None:
        """Delete the files of drafts nobody came back to (rows first, then blobs)."""
        for name in self.index.expire_drafts():
            self.blobs.delete(name)
