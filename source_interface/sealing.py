"""Sealing uploads while they stream in, so no plaintext file part ever reaches the disk.

Werkzeug hands each file part of a multipart body to a "stream factory"; its default spools parts
over 500 KiB to a plaintext temporary file.  Our request class returns instead a
:class:`SealedUpload`, which seals each piece as Werkzeug writes it (64 KiB chunks of an
envelope to the analysts) into a pending blob.  The view later commits the blobs it keeps; the
rest are discarded when the request closes.

Two kinds of part get no blob at all, their bytes read and dropped so that the fields after them
are still parsed:

* a part with no file name: what every browser sends for a file input left empty, so creating
  and deleting an envelope for it would cost every report for nothing;
* a file refused for lack of disk space (source_interface.diskspace): below the free-space floor
  nothing is written, and a write that runs out of space mid-way deletes its blob at once.  The
  view then sends the form back with everything typed and says so (:func:`files_refused`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, cast

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from blagh.blobs import BlobFolder, BlobRef, PendingBlob
from blagh.payloads import attachment_header
from crypto.envelope import EnvelopeWriter
from source_interface.diskspace import FreeSpace, NoSpace, is_no_space
from source_interface.formdata import StreamingFormDataParser

MAX_FILENAME_CHARS = 255
MAX_CONTENT_TYPE_CHARS = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class UploadLimits:
    max_request_bytes: int
    max_files: int
    max_field_bytes: int = 1024 * 1024
    max_fields: int = 64


class TooManyFiles(RequestEntityTooLarge):
    """More file parts than a report may carry."""


class EmptyPart:
    """A file input left empty: Werkzeug writes its (no) bytes here, and nothing is kept."""

    def write(self, data: bytes) -> int:
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def close(self) -> None:
        pass


class SealedUpload:
    """A write-only file object that seals what is written to it into a pending blob.

    ``blob`` None, or a write that runs out of space, makes it *refused*: what is written then
    is dropped (the parser still reads the fields that follow), and no file is left behind.
    """

    def __init__(
        self,
        blob: PendingBlob | None,
        recipients: Sequence[bytes],
        filename: str,
        content_type: str,
    ) -> None:
        self.filename = filename[-MAX_FILENAME_CHARS:]
        self.content_type = declared_type(content_type)
        self.size = 0
        self._blob = blob
        self._ref: BlobRef | None = None
        self._closed = False
        self._writer: EnvelopeWriter | None = None
        if blob is not None:
            self._writer = EnvelopeWriter(recipients, self._blob_write)
            self._seal(attachment_header(self.filename, self.content_type))

    @property
    def refused(self) -> bool:
        """Whether this file was not kept for lack of disk space."""
        return self._writer is None

    def _blob_write(self, data: bytes) -> None:
        assert self._blob is not None
        self._blob.write(data)

    def _seal(self, data: bytes) -> None:
        if self._writer is None:
            return
        try:
            self._writer.update(data)
        except OSError as error:
            if not is_no_space(error):
                raise
            self._give_up()

    def _give_up(self) -> None:
        """Out of space: delete the blob now (PendingBlob.write already has) and drop the rest."""
        self._writer = None
        if self._blob is not None:
            self._blob.discard()

    def write(self, data: bytes) -> int:
        self._seal(data)
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Werkzeug rewinds a part once written; there is nothing to rewind to."""
        return 0

    def commit(self) -> BlobRef:
        """Finish the envelope and make the blob durable (fsync, rename).  Out of space at
        this last step, the blob is deleted and :class:`NoSpace` (a 507 page) raised."""
        if self._ref is None:
            if self._writer is None or self._blob is None:
                raise ValueError("a refused file cannot be committed")
            try:
                self._writer.finish()
                self._ref = self._blob.commit()
            except OSError as error:
                if not is_no_space(error):
                    raise
                self._give_up()
                raise NoSpace() from None
        return self._ref

    def close(self) -> None:
        """Discard the blob unless it was committed."""
        if not self._closed:
            self._closed = True
            if self._ref is None and self._blob is not None:
                self._blob.discard()


def files_refused(uploads: Sequence[SealedUpload]) -> bool:
    """Whether some file of the request was refused for lack of disk space."""
    return any(upload.refused for upload in uploads)


def declared_type(content_type: str) -> str:
    """The part's declared content type if it is plausible, else ``application/octet-stream``.

    Plausible is printable ASCII, at most 255 characters.  The type is whatever the client
    claimed; unbounded, it could push the attachment's description line past
    ``payloads.MAX_ATTACHMENT_HEADER`` and the workstation could not read the file at all.  With
    the name cut to 255 code points (at most 12 bytes each as ASCII JSON) and this, the line
    stays well under the limit.
    """
    if 0 < len(content_type) <= MAX_CONTENT_TYPE_CHARS and all(
        " " <= char <= "~" for char in content_type
    ):
        return content_type
    return DEFAULT_CONTENT_TYPE


def sealing_request_class(
    blobs: BlobFolder,
    recipients: Sequence[bytes],
    limits: UploadLimits,
    space: FreeSpace | None = None,
) -> type[Request]:
    """A Request class bound to this app's blob folder, analysts' keys, limits and free-space
    floor (none: no floor)."""
    frozen_recipients = tuple(recipients)

    class SealingRequest(Request):
        max_content_length = limits.max_request_bytes
        max_form_memory_size = limits.max_field_bytes
        max_form_parts = limits.max_files + limits.max_fields
        form_data_parser_class = StreamingFormDataParser

        @property
        def sealed_uploads(self) -> list[SealedUpload]:
            """Every file part of this request that names a file, in form order."""
            uploads: list[SealedUpload] = self.__dict__.setdefault("_sealed_uploads", [])
            return uploads

        def _room_for_files(self) -> bool:
            """Checked at the first file, before anything of it is written: the whole body
            (Content-Length) must fit above the floor.  One answer for the whole request."""
            if space is None:
                return True
            if "_blagh_room" not in self.__dict__:
                self.__dict__["_blagh_room"] = space.room_for(self.content_length or 0)
            room: bool = self.__dict__["_blagh_room"]
            return room

        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            if not filename:
                return cast(IO[bytes], EmptyPart())
            uploads = self.sealed_uploads
            if len(uploads) >= limits.max_files:
                raise TooManyFiles()
            blob = None
            if self._room_for_files() and not files_refused(uploads):
                try:
                    blob = blobs.new()
                except OSError as error:
                    if not is_no_space(error):
                        raise
            upload = SealedUpload(
                blob,
                frozen_recipients,
                filename,
                content_type or DEFAULT_CONTENT_TYPE,
            )
            uploads.append(upload)
            return cast(IO[bytes], upload)

        def make_form_data_parser(self) -> FormDataParser:
            """Like Werkzeug's, but a malformed body is an error, not an empty form."""
            return self.form_data_parser_class(
                stream_factory=self._get_file_stream,
                max_form_memory_size=self.max_form_memory_size,
                max_content_length=self.max_content_length,
                max_form_parts=self.max_form_parts,
                cls=self.parameter_storage_class,
                silent=False,
            )

        def _load_form_data(self) -> None:
            try:
                super()._load_form_data()
            except ValueError:
                self.discard_uploads()
                raise BadRequest("malformed form data") from None
            except BaseException:
                self.discard_uploads()
                raise

        def discard_uploads(self) -> None:
            for upload in self.sealed_uploads:
                upload.close()

        def close(self) -> None:
            self.discard_uploads()
            super().close()

    return SealingRequest
