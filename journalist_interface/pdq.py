"""PDQ perceptual hashes: computing them from decoded pixels, and finding near ones fast.

PDQ (Meta's photo hash, the one GIFCT's and NCMEC's hash lists carry) is 256 bits; two images
are "the same picture" when few bits differ (Hamming distance, ≤ 31 by default), and a hash is
worth matching only when its *quality* (0–100, how much detail the image has) is high enough:
a flat or blurred image gives a weak hash that meets many others by chance.

The hashing itself is Meta's reference C++ code through the ``pdqhash`` package (built from
source here: no wheel is published for this Python).  It is given pixels only, never a file:
the file is decoded by ffmpeg inside the sandbox (:mod:`journalist_interface.fingerprints`),
which hands back a fixed-size RGB frame, so the numbers it reads cannot steer a decoder.

Matching (:class:`PdqIndex`) keeps the hashes packed as four 64-bit words per row in one numpy
array loaded once; a query is an XOR with every row and a population count (``np.bitwise_count``,
numpy ≥ 2): a few milliseconds per image against a million hashes on one core (``make bench``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BITS = 256
HEX_LENGTH = BITS // 4
MAX_DISTANCE = 31
"""Meta's recommended threshold for "same image" (of 256 bits)."""
MIN_QUALITY = 50
"""Below this quality a hash is not matched at all (Meta's recommendation)."""
FRAME_SIDE = 1024
"""Frames larger than FRAME_SIDE a side are scaled down to fit before hashing: PDQ reduces any
image to 64 × 64 anyway."""

_HEX = re.compile(r"[0-9a-f]{64}")

Words = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash as 64 lower-case hex digits (Meta's notation) and its quality."""

    hex: str
    quality: int


def is_pdq(text: str) -> bool:
    return _HEX.fullmatch(text) is not None


def hash_rgb(pixels: bytes, width: int, height: int) -> PdqHash:
    """The PDQ hash of ``width`` × ``height`` packed RGB pixels (raises ``ValueError`` when the
    byte count does not match)."""
    import pdqhash  # the C++ extension: imported when hashing, not by every page

    if len(pixels) != width * height * 3:
        raise ValueError("a frame is width × height × 3 bytes")
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
    vector, quality = pdqhash.compute(image)
    # pdqhash lists the bits from the most significant of Meta's hex notation down.
    return PdqHash(np.packbits(vector.astype(np.uint8)).tobytes().hex(), int(quality))


def words(hexes: Iterable[str]) -> Words:
    """Hex hashes packed as an (n, 4) array of big-endian-ordered 64-bit words."""
    raw = b"".join(bytes.fromhex(text) for text in hexes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def distance(a: str, b: str) -> int:
    """The Hamming distance between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class PdqIndex:
    """Hashes to match against, packed once; :meth:`near` answers in one vectorised pass.

    The words are kept as four columns (word k of every hash contiguous), so a query XORs and
    counts long runs of memory; the last two words are read only for the rows whose first two
    are already within the distance (a hash within ``d`` of the query is within ``d`` on any
    half of it), which halves the work for a threshold of 31.
    """

    def __init__(self, hexes: Sequence[str]) -> None:
        packed = words(hexes) if hexes else np.zeros((0, 4), dtype=np.uint64)
        self._columns: Words = np.ascontiguousarray(packed.T)
        self.size = len(packed)

    @classmethod
    def from_words(cls, packed: Words) -> PdqIndex:
        """An index of an (n, 4) array of words as :func:`words` makes them."""
        index = cls([])
        index._columns = np.ascontiguousarray(np.asarray(packed, dtype=np.uint64).reshape(-1, 4).T)
        index.size = index._columns.shape[1]
        return index

    def distances(self, hex_hash: str) -> npt.NDArray[np.uint16]:
        """The distance from ``hex_hash`` to every row, in row order."""
        query = words([hex_hash])[0]
        total = np.zeros(self.size, dtype=np.uint16)
        for k in range(4):
            total += np.bitwise_count(self._columns[k] ^ query[k])
        return total

    def near(self, hex_hash: str, max_distance: int = MAX_DISTANCE) -> list[tuple[int, int]]:
        """(row, distance) of every row within ``max_distance``, nearest first."""
        if self.size == 0:
            return []
        query = words([hex_hash])[0]
        half = np.bitwise_count(self._columns[0] ^ query[0])
        half += np.bitwise_count(self._columns[1] ^ query[1])  # ≤ 128: fits in uint8
        rows = np.flatnonzero(half <= max_distance)
        found = half[rows].astype(np.uint16)
        found += np.bitwise_count(self._columns[2][rows] ^ query[2])
        found += np.bitwise_count(self._columns[3][rows] ^ query[3])
        keep = found <= max_distance
        rows, found = rows[keep], found[keep]
        order = np.argsort(found, kind="stable")
        return [(int(rows[i]), int(found[i])) for i in order]
