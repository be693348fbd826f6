"""The envelope: Blagh's one format for everything sealed (spec: docs/envelope.md).

A random file key is sealed (``crypto_box_seal``) to each of 1–32 X25519 recipients; the
payload is a ``crypto_secretstream_xchacha20poly1305`` stream of 64 KiB chunks whose first
chunk is bound to the header; the plaintext is padded (Padmé) so the size leaks little.

Both directions stream, so memory stays flat whatever the size:

* :class:`EnvelopeWriter` is fed plaintext and hands ciphertext to a sink as it is produced.
  The sink is the caller's (a file, a socket, a list); this module does no I/O of its own.
* :class:`EnvelopeReader` is fed ciphertext and returns the plaintext it could authenticate.
  Plaintext is released chunk by chunk, before the end of the envelope is seen: a caller
  must treat it as provisional until :meth:`EnvelopeReader.finish` returns, exactly as with
  age's STREAM.

Every way opening can fail raises the same :class:`~crypto.errors.DecryptionError`.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from secrets import token_bytes

from nacl import bindings as sodium

from crypto.errors import DecryptionError, InvalidPublicKey, InvalidRecipients
from crypto.padding import padded_length

MAGIC = b"BLAGHENV"
VERSION = 1
MAX_RECIPIENTS = 32
CHUNK_SIZE = 64 * 1024
FILE_KEY_SIZE = 32
KEY_SIZE = 32
STANZA_SIZE = FILE_KEY_SIZE + sodium.crypto_box_SEALBYTES
STREAM_HEADER_SIZE = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
CHUNK_OVERHEAD = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
SEALED_CHUNK_SIZE = CHUNK_SIZE + CHUNK_OVERHEAD
PREAMBLE_SIZE = len(MAGIC) + 2
MARKER = 0x80

TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_PUSH = sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

_ZERO_CHUNK = bytes(CHUNK_SIZE)
# Curve25519's field prime: a canonical X25519 public key encodes an integer below it.
_P25519 = 2**255 - 19
# Any clamped scalar sends a low-order point to zero (which libsodium refuses), and every
# other point elsewhere.
_PROBE_SCALAR = bytes([9]) * KEY_SIZE

Sink = Callable[[bytes], object]


def header_size(recipient_count: int) -> int:
    """Size in bytes of the header of an envelope with ``recipient_count`` recipients."""
    return PREAMBLE_SIZE + recipient_count * STANZA_SIZE + STREAM_HEADER_SIZE


def sealed_size(plaintext_size: int, recipient_count: int) -> int:
    """Exact size of the envelope sealing ``plaintext_size`` bytes: what storage will see."""
    padded = padded_length(plaintext_size)
    chunks = -(-padded // CHUNK_SIZE)
    return header_size(recipient_count) + padded + chunks * CHUNK_OVERHEAD


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 ``(secret_key, public_key)`` pair to receive envelopes."""
    public, secret = sodium.crypto_box_keypair()
    return secret, public


def public_key(secret_key: bytes) -> bytes:
    """The X25519 public key of ``secret_key``."""
    return sodium.crypto_scalarmult_base(secret_key)


def check_public_key(public: object) -> None:
    """Raise :class:`InvalidPublicKey` unless ``public`` is an X25519 public key an honest
    party could have made: 32 bytes, canonical (below the field prime), not of low order.

    libsodium refuses to seal to a low-order point (every shared secret with it is known), so
    a key that came from outside (a browser, a bundle, a config line) is checked with this
    where it comes in, and refused there with a clear error, rather than failing later.
    """
    if not isinstance(public, bytes) or len(public) != KEY_SIZE:
        raise InvalidPublicKey("an X25519 public key is 32 bytes")
    if int.from_bytes(public, "little") >= _P25519:
        raise InvalidPublicKey("not a canonical X25519 public key")
    try:
        sodium.crypto_scalarmult(_PROBE_SCALAR, public)
    except RuntimeError:  # PyNaCl's own RuntimeError subclasses it
        raise InvalidPublicKey("an X25519 public key of low order") from None


class EnvelopeWriter:
    """Seals a stream of plaintext to a fixed set of recipients.

    Feed plaintext with :meth:`update` in pieces of any size, then call :meth:`finish` once.
    Ciphertext goes to ``sink`` as soon as a whole chunk is ready, so at most one chunk of
    plaintext is ever held here.
    """

    def __init__(self, recipients: Sequence[bytes], sink: Sink) -> None:
        _check_recipients(recipients)
        file_key = token_bytes(FILE_KEY_SIZE)
        try:
            stanzas = b"".join(sodium.crypto_box_seal(file_key, r) for r in recipients)
        except RuntimeError:  # libsodium refuses a low-order key: PyNaCl raises RuntimeError
            raise InvalidRecipients("a recipient is not a usable X25519 public key") from None
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, file_key
        )
        self._header: bytes | None = (
            MAGIC + bytes((VERSION, len(recipients))) + stanzas + stream_header
        )
        self._sink = sink
        self._pending = bytearray()
        self._length = 0
        self._finished = False
        sink(self._header)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add plaintext; whole chunks are sealed and handed to the sink at once."""
        if self._finished:
            raise ValueError("update() after finish()")
        view = memoryview(data).cast("B")
        self._length += len(view)
        if self._pending:
            take = CHUNK_SIZE - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < CHUNK_SIZE:
                return
            self._push(bytes(self._pending), TAG_MESSAGE)
            self._pending.clear()
        offset = 0
        while len(view) - offset >= CHUNK_SIZE:
            self._push(bytes(view[offset : offset + CHUNK_SIZE]), TAG_MESSAGE)
            offset += CHUNK_SIZE
        self._pending += view[offset:]

    def finish(self) -> None:
        """Pad, seal the last chunks, and end the stream. The writer is spent afterwards."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        remaining = len(self._pending) + padded_length(self._length) - self._length
        first = bytes(self._pending) + bytes((MARKER,))
        first += bytes(min(remaining, CHUNK_SIZE) - len(first))
        self._pending.clear()
        remaining -= len(first)
        self._push(first, TAG_PUSH if remaining else TAG_FINAL)
        while remaining:
            size = min(remaining, CHUNK_SIZE)
            remaining -= size
            chunk = _ZERO_CHUNK if size == CHUNK_SIZE else bytes(size)
            self._push(chunk, TAG_MESSAGE if remaining else TAG_FINAL)

    def _push(self, chunk: bytes, tag: int) -> None:
        header, self._header = self._header, None
        self._sink(
            sodium.crypto_secretstream_xchacha20poly1305_push(self._state, chunk, header, tag)
        )


class EnvelopeReader:
    """Opens an envelope fed to it in pieces of any size, with any of several identities.

    :meth:`update` returns the plaintext authenticated so far (possibly empty);
    :meth:`finish` checks that the stream ended properly. Any failure raises
    :class:`DecryptionError` and leaves the reader unusable.
    """

    _DATA, _PADDING, _DONE, _FAILED = range(4)

    def __init__(self, identities: Sequence[bytes]) -> None:
        if not identities or any(len(k) != KEY_SIZE for k in identities):
            raise ValueError("identities must be one or more 32-byte X25519 secret keys")
        self._identities = [(sk, public_key(sk)) for sk in identities]
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._first_ad: bytes | None = None
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._phase = self._DATA
        self._data_length = 0
        self._padded_length = 0

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Add ciphertext; return the plaintext of every chunk now complete.

        Whole chunks are pulled straight from ``data``: only a partial chunk (or a partial
        header) is ever copied into the buffer, so each byte is copied once before libsodium.
        """
        if self._phase == self._FAILED:
            raise DecryptionError()
        view = memoryview(data).cast("B")
        try:
            if self._header is None:
                view = self._read_header(view)
                if self._header is None:
                    return b""
            out = []
            if self._buffer:
                take = SEALED_CHUNK_SIZE - len(self._buffer)
                self._buffer += view[:take]
                view = view[take:]
                if len(self._buffer) < SEALED_CHUNK_SIZE:
                    return b""
                out.append(self._pull(bytes(self._buffer)))
                self._buffer.clear()
            offset = 0
            while len(view) - offset >= SEALED_CHUNK_SIZE:
                out.append(self._pull(view[offset : offset + SEALED_CHUNK_SIZE].tobytes()))
                offset += SEALED_CHUNK_SIZE
            self._buffer += view[offset:]
            return b"".join(out)
        except DecryptionError:
            self._fail()
            raise

    def finish(self) -> bytes:
        """Open the last, short chunk if any; check the stream ended canonically."""
        if self._phase == self._FAILED:
            raise DecryptionError()
        try:
            out = b""
            if self._header is None:
                raise DecryptionError()
            if self._buffer:
                out = self._pull(bytes(self._buffer))
                self._buffer.clear()
            if self._phase != self._DONE:
                raise DecryptionError()
            if self._padded_length != padded_length(self._data_length):
                raise DecryptionError()
            return out
        except DecryptionError:
            self._fail()
            raise

    def _fail(self) -> None:
        self._phase = self._FAILED
        self._buffer.clear()

    def _read_header(self, view: memoryview) -> memoryview:
        """Move header bytes from ``view`` to the buffer, parse it once whole; return the rest.

        Only the header's own bytes are buffered, so the chunks after it are never copied here.
        """
        take = max(PREAMBLE_SIZE - len(self._buffer), 0)
        self._buffer += view[:take]
        view = view[take:]
        if len(self._buffer) < PREAMBLE_SIZE:
            return view
        if self._buffer[: len(MAGIC)] != MAGIC or self._buffer[len(MAGIC)] != VERSION:
            raise DecryptionError()
        count = self._buffer[len(MAGIC) + 1]
        if not 1 <= count <= MAX_RECIPIENTS:
            raise DecryptionError()
        size = header_size(count)
        take = size - len(self._buffer)
        self._buffer += view[:take]
        view = view[take:]
        if len(self._buffer) < size:
            return view
        header = bytes(self._buffer)
        self._buffer.clear()
        file_key = self._unseal_file_key(header[PREAMBLE_SIZE : size - STREAM_HEADER_SIZE])
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(
                self._state, header[size - STREAM_HEADER_SIZE :], file_key
            )
        except Exception:
            raise DecryptionError() from None
        self._header = self._first_ad = header
        return view

    def _unseal_file_key(self, stanzas: bytes) -> bytes:
        for offset in range(0, len(stanzas), STANZA_SIZE):
            stanza = stanzas[offset : offset + STANZA_SIZE]
            for secret, public in self._identities:
                try:
                    file_key: bytes = sodium.crypto_box_seal_open(stanza, public, secret)
                except Exception:  # noqa: S112 — not our key: try the next one
                    continue
                if len(file_key) == FILE_KEY_SIZE:
                    return file_key
        raise DecryptionError()

    def _pull(self, sealed: bytes) -> bytes:
        if self._phase == self._DONE or len(sealed) <= CHUNK_OVERHEAD:
            raise DecryptionError()
        ad, self._first_ad = self._first_ad, None
        try:
            chunk, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, sealed, ad)
        except Exception:
            raise DecryptionError() from None
        self._padded_length += len(chunk)
        if self._phase == self._PADDING:
            if tag not in (TAG_MESSAGE, TAG_FINAL) or chunk.count(0) != len(chunk):
                raise DecryptionError()
            if tag == TAG_FINAL:
                self._phase = self._DONE
            return b""
        if tag == TAG_MESSAGE:
            if len(chunk) != CHUNK_SIZE:
                raise DecryptionError()
            self._data_length += len(chunk)
            return chunk
        if tag not in (TAG_PUSH, TAG_FINAL):
            raise DecryptionError()
        if tag == TAG_PUSH and len(chunk) != CHUNK_SIZE:
            raise DecryptionError()
        data = chunk.rstrip(b"\x00")
        if not data or data[-1] != MARKER:
            raise DecryptionError()
        self._data_length += len(data) - 1
        self._phase = self._DONE if tag == TAG_FINAL else self._PADDING
        return data[:-1]


def _check_recipients(recipients: Sequence[bytes]) -> None:
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise InvalidRecipients(f"an envelope needs 1 to {MAX_RECIPIENTS} recipients")
    if any(not isinstance(r, bytes) or len(r) != KEY_SIZE for r in recipients):
        raise InvalidRecipients("every recipient must be a 32-byte X25519 public key")
    if len(set(recipients)) != len(recipients):
        raise InvalidRecipients("the same recipient is listed twice")


def seal(plaintext: bytes, recipients: Sequence[bytes]) -> bytes:
    """Seal ``plaintext`` in one call (for small payloads: reports, messages, replies)."""
    out: list[bytes] = []
    writer = EnvelopeWriter(recipients, out.append)
    writer.update(plaintext)
    writer.finish()
    return b"".join(out)


def open_envelope(envelope: bytes, identities: Sequence[bytes]) -> bytes:
    """Open a whole envelope held in memory."""
    reader = EnvelopeReader(identities)
    return reader.update(envelope) + reader.finish()


def seal_stream(chunks: Iterable[bytes], recipients: Sequence[bytes]) -> Iterator[bytes]:
    """Seal an iterable of plaintext pieces, yielding ciphertext as it is produced."""
    out: list[bytes] = []
    writer = EnvelopeWriter(recipients, out.append)
    for chunk in chunks:
        writer.update(chunk)
        yield from out
        out.clear()
    writer.finish()
    yield from out


def open_stream(chunks: Iterable[bytes], identities: Sequence[bytes]) -> Iterator[bytes]:
    """Open an iterable of ciphertext pieces, yielding plaintext as it is authenticated.

    Raises :class:`DecryptionError` at the point of failure; what was yielded before it
    must then be discarded.
    """
    reader = EnvelopeReader(identities)
    for chunk in chunks:
        plaintext = reader.update(chunk)
        if plaintext:
            yield plaintext
    last = reader.finish()
    if last:
        yield last
