"""PyNaCl and libsodium.js agree on every byte: the committed vectors, and fresh envelopes.

tests/interop/envelope.mjs and keys.mjs are independent implementations of docs/envelope.md and
docs/keys.md on libsodium.js (what the browser uses). Here node checks every vector, opens what
Python seals and seals what Python opens. Node and the npm packages are part of the test
environment (`make test` installs them): their absence is a failure, not a skip.
"""

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crypto import envelope
from crypto.errors import DecryptionError

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "interop" / "check.mjs"
VECTORS = ROOT / "tests" / "vectors"
C = envelope.CHUNK_SIZE
BIG = 4 * 1024 * 1024  # the smallest data length whose padding fills a chunk of its own
SIZES = [0, 1, 511, C - 1, C, C + 1, 300_000, BIG]


def _load_make_vectors():
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_vectors", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


mv = _load_make_vectors()


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail(
            "node is not installed: the libsodium.js interop check needs it. "
            "Run `make test` (it installs nodejs and npm, then runs `npm ci`)."
        )
    if not (ROOT / "node_modules" / "libsodium-wrappers-sumo" / "package.json").is_file():
        pytest.fail(
            "node_modules/libsodium-wrappers-sumo is missing: run `npm ci` in the repository "
            "root, or `make test`, which does it."
        )
    return path


def _run(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(CHECK), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _node_open(node: str, identities: list[bytes], *files: Path):
    return _run(node, "open", ",".join(k.hex() for k in identities), *map(str, files))


def _node_seal(node: str, recipients: list[bytes], *files: Path):
    return _run(node, "seal", ",".join(k.hex() for k in recipients), *map(str, files))


def test_node_checks_every_vector(node):
    result = _run(node, "vectors", str(VECTORS))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    count = sum(
        len(list((VECTORS / kind).glob("*.json")))
        for kind in ("envelope", "codename", "keyfile", "manifest")
    )
    assert lines[-1].startswith(f"{count} vectors: {count} passed, 0 failed"), lines[-1]
    assert sum(line.startswith("ok   ") for line in lines) == count


def test_node_check_fails_on_a_wrong_vector(node, tmp_path):
    # The checker itself must catch a mismatch (a vector that claims the wrong outcome).
    folder = tmp_path / "envelope"
    folder.mkdir()
    good = (VECTORS / "envelope" / "success_size_1.json").read_text("utf-8")
    (folder / "wrong.json").write_text(good.replace('"success"', '"failure"'), "utf-8")
    result = _run(node, "vectors", str(folder))
    assert result.returncode == 1
    assert "FAIL" in result.stdout


def test_python_seals_node_opens(node, tmp_path):
    # One node run for every size: its start-up (WebAssembly) dominates the time.
    secret, public = envelope.generate_keypair()
    payloads = {size: os.urandom(size) for size in SIZES}
    files: list[Path] = []
    for size, data in payloads.items():
        pieces = [data[i : i + 100_000] for i in range(0, size, 100_000)]
        (tmp_path / f"{size}.sealed").write_bytes(b"".join(envelope.seal_stream(pieces, [public])))
        files += [tmp_path / f"{size}.sealed", tmp_path / f"{size}.opened"]
    result = _node_open(node, [secret], *files)
    assert result.returncode == 0, result.stderr
    for size, data in payloads.items():
        assert (tmp_path / f"{size}.opened").read_bytes() == data, size


def test_node_seals_python_opens(node, tmp_path):
    secret, public = envelope.generate_keypair()
    payloads = {size: os.urandom(size) for size in SIZES}
    files: list[Path] = []
    for size, data in payloads.items():
        (tmp_path / f"{size}.plain").write_bytes(data)
        files += [tmp_path / f"{size}.plain", tmp_path / f"{size}.sealed"]
    result = _node_seal(node, [public], *files)
    assert result.returncode == 0, result.stderr
    for size, data in payloads.items():
        blob = (tmp_path / f"{size}.sealed").read_bytes()
        assert len(blob) == envelope.sealed_size(size, 1), size
        assert envelope.open_envelope(blob, [secret]) == data, size


def test_several_recipients_both_ways(node, tmp_path):
    pairs = [envelope.generate_keypair() for _ in range(3)]
    publics = [p for _, p in pairs]
    stranger, _ = envelope.generate_keypair()
    data = os.urandom(70_000)
    sealed = tmp_path / "by_python"
    sealed.write_bytes(envelope.seal(data, publics))
    out = tmp_path / "opened"
    assert _node_open(node, [stranger, pairs[2][0]], sealed, out).returncode == 0
    assert out.read_bytes() == data

    plain = tmp_path / "plain"
    plain.write_bytes(data)
    by_node = tmp_path / "by_node"
    assert _node_seal(node, publics, plain, by_node).returncode == 0
    for secret, _ in pairs:
        assert envelope.open_envelope(by_node.read_bytes(), [secret]) == data
    with pytest.raises(DecryptionError):
        envelope.open_envelope(by_node.read_bytes(), [stranger])


def test_node_open_failure_leaves_nothing(node, tmp_path):
    secret, public = envelope.generate_keypair()
    blob = bytearray(envelope.seal(os.urandom(200_000), [public]))
    blob[-1] ^= 1  # the last chunk: three chunks of plaintext open before the failure
    sealed = tmp_path / "sealed"
    sealed.write_bytes(bytes(blob))
    out = tmp_path / "opened"
    result = _node_open(node, [secret], sealed, out)
    assert result.returncode == 2
    assert result.stderr.strip() == f"DecryptionError {sealed}"
    assert list(tmp_path.iterdir()) == [sealed]


# Envelopes whose padding fills whole chunks exist only from 4 MiB of data, too big to commit
# as vectors: these are built here. Each is validly sealed and breaks exactly one rule, which
# only that check can catch (the padded length stays canonical).
@functools.cache
def _big_chunks() -> tuple[bytes, list[tuple[bytes, int]]]:
    data = mv.payload(BIG)
    chunks = mv.canonical_chunks(data)
    tags = [tag for _, tag in chunks]
    assert tags == [mv.MESSAGE] * 64 + [mv.PUSH, mv.FINAL]  # boundary chunk, padding chunk
    return data, chunks


def _big_malformed(kind: str) -> list[tuple[bytes, int]]:
    chunks = list(_big_chunks()[1])
    boundary, padding = chunks[64][0], chunks[65][0]
    if kind == "nonzero_padding_chunk":
        return [*chunks[:65], (padding[:-1] + b"\x01", mv.FINAL)]
    if kind == "chunk_after_final":
        # The boundary chunk is FINAL; the padding chunk follows it, sealed after FINAL.
        return [*chunks[:64], (boundary, mv.FINAL), (padding, mv.FINAL)]
    if kind == "push_in_padding":
        # PUSH MESSAGE* FINAL: a PUSH after the boundary chunk breaks the grammar. Only from
        # 8 MiB of data are there padding chunks other than the last.
        chunks = mv.canonical_chunks(os.urandom(2 * BIG))
        assert [tag for _, tag in chunks[128:]] == [mv.PUSH, mv.MESSAGE, mv.MESSAGE, mv.FINAL]
        chunks[129] = (chunks[129][0], mv.PUSH)
        return chunks
    raise AssertionError(kind)


MALFORMED = ["nonzero_padding_chunk", "chunk_after_final", "push_in_padding"]


def test_big_envelopes_with_padding_chunks(node, tmp_path):
    data, chunks = _big_chunks()
    secret, public = mv.identity(1)
    files: list[Path] = []
    for kind in ["canonical", *MALFORMED]:
        sealed = tmp_path / f"{kind}.sealed"
        sealed.write_bytes(
            mv.build([public], chunks if kind == "canonical" else _big_malformed(kind))
        )
        files += [sealed, tmp_path / f"{kind}.opened"]
        if kind == "canonical":
            assert envelope.open_envelope(sealed.read_bytes(), [secret]) == data
        else:
            with pytest.raises(DecryptionError):
                envelope.open_envelope(sealed.read_bytes(), [secret])
    result = _node_open(node, [secret], *files)
    assert result.returncode == 2, result.stdout + result.stderr
    refused = sorted(line.split()[1] for line in result.stderr.splitlines())
    assert refused == sorted(str(tmp_path / f"{kind}.sealed") for kind in MALFORMED)
    assert (tmp_path / "canonical.opened").read_bytes() == data
    assert not any((tmp_path / f"{kind}.opened").exists() for kind in MALFORMED)
