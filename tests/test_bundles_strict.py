"""Hostile tar shapes: every bundle reader refuses them fast, with flat memory, changing nothing.

The archives are built here by hand, byte by byte (no fixture files), after a correctly signed
manifest where the shape needs one, so that nothing but the shape can be refused.  Each shape
is tried against the workstation's vault (a pickup bundle) and the server's store (a reply
bundle); each must leave every row and file as it was.

The negative-size archive of CVE-2025-8194 (Python's tarfile loops for ever on it, growing
memory) is tried through every entry point that reads a bundle, each in a child process under
a CPU-time and an address-space limit: on a reader that loops, the child is killed by its
limit and the test fails; on this one it refuses at once.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pickup_helpers import (
    Reply,
    Server,
    add_report,
    all_item_ids,
    make_server,
    members,
    reply_bundle,
    serve_pickup,
)
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    logged_in,
    make_analyst,
    make_vault,
    open_vault,
    vault_state,
    workstation_app,
)

from blagh.bundles import MANIFEST_MEMBER, BundleError, BundleReader
from blagh.pickup_tokens import new_token, token_hash
from blagh.strict_tar import BLOCK, MAX_PAX_BYTES, RECORD
from crypto.keys import ServerSigningKey
from crypto.manifest import sign_manifest
from journalist_interface.errors import ImportRefused
from journalist_interface.importer import import_bundle
from source_interface.pickup.app import UPLOAD_PREFIX
from source_interface.pickup.bundles import import_reply_bundle

SERVER = ServerSigningKey.generate()
BLAGH = Path(sys.executable).with_name("blagh")
TESTS = Path(__file__).parent
HOST = "127.0.0.1"

CPU_SECONDS = 20
"""A child reading one hostile bundle needs well under a second of CPU; a looping one is
killed at this bound (SIGXCPU), and the test fails."""

ADDRESS_SPACE = 2 * 1024**3
"""The child's whole address space (Python, Flask, SQLCipher, argon2 included)."""

PEAK_BYTES = 64 * 1024
"""What reading a hostile bundle may allocate, measured by tracemalloc: a header, a manifest."""

# --- tar archives by hand -------------------------------------------------------------------

USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"


def octal(number: int, width: int = 12) -> bytes:
    return b"%0*o\0" % (width - 1, number)


def base256(number: int, width: int = 12) -> bytes:
    """GNU's binary number form: 0x80 (or 0xff for a negative number), then big-endian."""
    raw = number.to_bytes(width, "big", signed=True)
    return (b"\xff" if number < 0 else b"\x80") + raw[1:]


def header(
    name: str | bytes,
    size: int | bytes,
    kind: bytes = b"0",
    *,
    magic: bytes = USTAR,
    prefix: bytes = b"",
    checksum_error: int = 0,
) -> bytes:
    """One 512-byte header as POSIX ustar lays it out (or with the given oddity)."""
    encoded = name.encode() if isinstance(name, str) else name
    block = bytearray(BLOCK)
    block[: len(encoded)] = encoded
    block[100:124] = octal(0o600, 8) + octal(0, 8) + octal(0, 8)
    block[124:136] = size if isinstance(size, bytes) else octal(size)
    block[136:148] = octal(0)
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[257:265] = magic
    block[345 : 345 + len(prefix)] = prefix
    block[148:155] = octal(sum(block) + checksum_error, 7)
    return bytes(block)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def member(name: str | bytes, data: bytes, kind: bytes = b"0", **oddity: object) -> bytes:
    return header(name, len(data), kind, **oddity) + data + padding(len(data))  # type: ignore[arg-type]


def record(keyword: str, value: str) -> bytes:
    """A pax record: its length (counting its own digits), the keyword, the value."""
    payload = f" {keyword}={value}\n".encode()
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length += 1
    return str(length).encode() + payload


def pax(*records: tuple[str, str], kind: bytes = b"x") -> bytes:
    body = b"".join(record(keyword, value) for keyword, value in records)
    return member(b"././@PaxHeader", body, kind)


def end(length: int) -> bytes:
    """Two zero blocks, then zeros to the end of the record, as tar writers end an archive."""
    return bytes(2 * BLOCK + -(length + 2 * BLOCK) % RECORD)


def archive(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return body + end(len(body))


Items = list[tuple[str, bytes]]
Shape = Callable[[bytes, Items], bytes]
"""Builds an archive from a signed manifest and the items (member name, bytes) it lists."""


def _head(signed: bytes, items: Items) -> bytes:
    return member(MANIFEST_MEMBER, signed) + b"".join(member(n, d) for n, d in items[1:])


def _first(items: Items) -> tuple[str, bytes]:
    return items[0]


def _smuggled_after_end(signed: bytes, items: Items) -> bytes:
    whole = archive(member(MANIFEST_MEMBER, signed), *(member(n, d) for n, d in items))
    return whole + member("items/" + secrets.token_hex(16), b"hidden") + bytes(RECORD)


def _byte_in_the_end_padding(signed: bytes, items: Items) -> bytes:
    body = member(MANIFEST_MEMBER, signed) + b"".join(member(n, d) for n, d in items)
    whole = bytearray(archive(body))
    if len(whole) == len(body) + 2 * BLOCK:  # no padding after the two blocks: add one
        whole += bytes(RECORD)
    whole[-1] = 1
    return bytes(whole)


def _after_a_single_zero_block(signed: bytes, items: Items) -> bytes:
    body = member(MANIFEST_MEMBER, signed) + b"".join(member(n, d) for n, d in items)
    hidden = member("items/" + secrets.token_hex(16), b"hidden")
    return archive(body + bytes(BLOCK) + hidden)


def _no_end(signed: bytes, items: Items) -> bytes:
    return member(MANIFEST_MEMBER, signed) + b"".join(member(n, d) for n, d in items)


def _one_zero_block_then_nothing(signed: bytes, items: Items) -> bytes:
    return _no_end(signed, items) + bytes(BLOCK)


def _first_item(build: Callable[[str, bytes], bytes]) -> Shape:
    """A shape where the first item's member is written by ``build`` (name, bytes)."""

    def shape(signed: bytes, items: Items) -> bytes:
        name, data = _first(items)
        return archive(_head(signed, items), build(name, data))

    return shape


def _sparse_pax_1_0(name: str, data: bytes) -> bytes:
    """GNU tar's pax format 1.0 for sparse files: the map before the data, records saying so."""
    sparse_map = b"1\n0\n%d\n" % len(data)
    stored = sparse_map + padding(len(sparse_map)) + data
    records = [
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", name),
        ("GNU.sparse.realsize", str(len(data))),
    ]
    return pax(*records) + member(name, stored)


def _sparse_pax_0_1(name: str, data: bytes) -> bytes:
    records = [
        ("GNU.sparse.size", str(len(data))),
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.map", f"0,{len(data)}"),
    ]
    return pax(*records) + member(name, data)


SHAPES: dict[str, tuple[Shape, str]] = {
    "GNU sparse member (type S)": (
        _first_item(lambda n, d: member(n, d, b"S", magic=GNU)), "GNU tar header"
    ),
    "sparse type S with a ustar magic": (
        _first_item(lambda n, d: member(n, d, b"S")), "GNU sparse"
    ),
    "pax 1.0 sparse member": (_first_item(_sparse_pax_1_0), "GNU sparse"),
    "pax 0.1 sparse member": (_first_item(_sparse_pax_0_1), "GNU sparse"),
    "a member after the end-of-archive blocks": (
        _smuggled_after_end, "follows the end of the archive"
    ),
    "a byte in the end's zero padding": (
        _byte_in_the_end_padding, "follows the end of the archive"
    ),
    "a member after a single zero block": (
        _after_a_single_zero_block, "follows a single zero block"
    ),
    "a single zero block, then nothing": (_one_zero_block_then_nothing, "truncated"),
    "no end-of-archive blocks": (_no_end, "truncated"),
    "GNU long name (type L)": (
        _first_item(lambda n, d: member("././@LongLink", n.encode() + b"\0", b"L")
                    + member("short", d)),
        "GNU long name",
    ),
    "GNU long link name (type K)": (
        _first_item(lambda n, d: member("././@LongLink", b"x\0", b"K") + member(n, d)),
        "GNU long link",
    ),
    "global pax header (type g)": (
        _first_item(lambda n, d: pax(("comment", "x"), kind=b"g") + member(n, d)),
        "global pax header",
    ),
    "GNU header magic": (_first_item(lambda n, d: member(n, d, magic=GNU)), "GNU tar header"),
    "old v7 header (no magic)": (
        _first_item(lambda n, d: member(n, d, magic=bytes(8))), "not a POSIX ustar header"
    ),
    "directory": (_first_item(lambda n, d: header(n, 0, b"5")), "a directory"),
    "FIFO": (_first_item(lambda n, d: header(n, 0, b"6")), "a FIFO"),
    "character device": (_first_item(lambda n, d: header(n, 0, b"3")), "a character device"),
    "unknown type": (_first_item(lambda n, d: member(n, d, b"Z")), "unknown type"),
    "pax keyword bundles do not use (comment)": (
        _first_item(lambda n, d: pax(("comment", "hi")) + member(n, d)), "keyword"
    ),
    "pax keyword bundles do not use (linkpath)": (
        _first_item(lambda n, d: pax(("linkpath", "/etc/passwd")) + member(n, d)), "keyword"
    ),
    "pax keyword bundles do not use (hdrcharset)": (
        _first_item(lambda n, d: pax(("hdrcharset", "BINARY")) + member(n, d)), "keyword"
    ),
    "pax header over its size cap": (
        _first_item(lambda n, d: pax(("uname", "u" * MAX_PAX_BYTES)) + member(n, d)),
        "pax header is too large",
    ),
    "two pax headers in a row": (
        _first_item(lambda n, d: pax(("mtime", "1")) + pax(("mtime", "2")) + member(n, d)),
        "two pax headers",
    ),
    "pax header with no member after it": (
        lambda s, items: archive(_no_end(s, items), pax(("mtime", "1"))),
        "followed by no member",
    ),
    "pax keyword given twice": (
        _first_item(lambda n, d: pax(("path", n), ("path", n)) + member(n, d)), "twice"
    ),
    "pax record with a wrong length": (
        _first_item(lambda n, d: member(b"././@PaxHeader", b"99 mtime=1\n", b"x") + member(n, d)),
        "pax header is malformed",
    ),
    "pax size beyond the end of the file": (
        _first_item(lambda n, d: pax(("size", str(10**9))) + member(n, d)), "truncated"
    ),
    "pax path naming another file": (
        _first_item(lambda n, d: pax(("path", "../x")) + member(n, d)), "does not list"
    ),
    "wrong header checksum": (
        _first_item(lambda n, d: member(n, d, checksum_error=1)), "wrong checksum"
    ),
    "size in base-256": (
        _first_item(lambda n, d: header(n, base256(len(d))) + d + padding(len(d))), "base-256"
    ),
    "size that is not octal": (
        _first_item(lambda n, d: header(n, b"0000000009x\0") + d + padding(len(d))),
        "malformed size",
    ),
    "name prefix": (_first_item(lambda n, d: member(n, d, prefix=b"..")), "name prefix"),
    "name not ASCII": (
        _first_item(lambda n, d: member(n.encode() + "é".encode(), d)), "does not list"
    ),
    "member bytes cut short": (
        lambda s, items: _head(s, items) + header(items[0][0], len(items[0][1]) + 2 * RECORD),
        "truncated",
    ),
}  # fmt: skip


# --- the workstation's vault ----------------------------------------------------------------


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst) -> Path:
    """A vault that already holds a report, so "unchanged" means more than "still empty"."""
    path = make_vault(tmp_path, analyst, SERVER)
    earlier = Pickup([analyst.key])
    earlier.report(earlier.source(), files=[(b"\x89PNG\r\n\x1a\n", "a.png", "image/png")])
    with open_vault(path) as vault:
        import_bundle(vault, earlier.write(tmp_path / "earlier", SERVER))
    return path


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    report = bundle.report(bundle.source(), files=[(b"GIF89a...", "b.gif", "image/gif")])
    bundle.message(report, bundle.sources[0], "More.")
    return bundle


def pickup_parts(pickup: Pickup) -> tuple[bytes, Items]:
    signed = sign_manifest(pickup.manifest(), SERVER.sign, SERVER.public().verify)
    return signed, pickup.members()


def test_a_bundle_built_by_hand_imports(tmp_path: Path, vault_path: Path, pickup: Pickup) -> None:
    """The builder above makes what the reader accepts: what the shapes refuse is the shape."""
    signed, items = pickup_parts(pickup)
    bundle = tmp_path / "by-hand"
    bundle.write_bytes(archive(member(MANIFEST_MEMBER, signed), *(member(n, d) for n, d in items)))
    with open_vault(vault_path) as vault:
        assert import_bundle(vault, bundle).new_items == len(items)


def test_pax_records_as_a_writer_makes_them_are_read(
    tmp_path: Path, vault_path: Path, pickup: Pickup
) -> None:
    """A pax header giving an item's size and path (as tarfile writes past 8 GiB) is read."""
    signed, items = pickup_parts(pickup)
    name, data = items[0]
    parts = [member(MANIFEST_MEMBER, signed)]
    parts.append(pax(("path", name), ("size", str(len(data))), ("mtime", "1.5")))
    parts.append(header("items/cut-short", 0) + data + padding(len(data)))
    parts += [member(n, d) for n, d in items[1:]]
    bundle = tmp_path / "pax"
    bundle.write_bytes(archive(*parts))
    with open_vault(vault_path) as vault:
        assert import_bundle(vault, bundle).new_items == len(items)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_hostile_shape_changes_no_vault(
    tmp_path: Path, vault_path: Path, pickup: Pickup, shape: str
) -> None:
    build, says = SHAPES[shape]
    bundle = tmp_path / "hostile"
    bundle.write_bytes(build(*pickup_parts(pickup)))
    before = vault_state(vault_path)
    with open_vault(vault_path) as vault, pytest.raises(ImportRefused) as refused:
        import_bundle(vault, bundle)
    assert says in str(refused.value)
    assert "The whole bundle was refused: nothing was imported" in str(refused.value)
    assert vault_state(vault_path) == before


def test_a_pickup_item_of_kind_reply_is_refused(
    tmp_path: Path, vault_path: Path, pickup: Pickup
) -> None:
    """Replies go to the server, never from it: one in a pickup bundle (which the vault would
    show as the analysts' own words) refuses the bundle."""
    manifest = pickup.manifest()
    manifest["items"][1]["kind"] = "reply"
    bundle = pickup.write(tmp_path / "with-a-reply", SERVER, manifest)
    before = vault_state(vault_path)
    with open_vault(vault_path) as vault, pytest.raises(ImportRefused, match="kind 'reply'"):
        import_bundle(vault, bundle)
    assert vault_state(vault_path) == before


# --- the server's store ---------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path)
    try:
        yield server
    finally:
        server.close()


def reply_parts(server: Server, tmp_path: Path) -> tuple[bytes, Items]:
    """A real reply bundle's signed manifest and items, acknowledging everything stored."""
    reporter = add_report(server)
    path = reply_bundle(
        tmp_path / "replies",
        server.analyst,
        [Reply(reporter.reports[0].id, reporter.public_key or b"")],
        acknowledged=all_item_ids(server),
    )
    (_, signed), *rest = members(path)
    assert signed is not None
    return signed, [(info.name, data or b"") for info, data in rest]


def apply(server: Server, path: Path) -> object:
    return import_reply_bundle(
        server.store, server.config.recipients.analysts, path, delivered_days=7
    )


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_hostile_shape_changes_no_store(server: Server, tmp_path: Path, shape: str) -> None:
    build, says = SHAPES[shape]
    bundle = tmp_path / "hostile"
    bundle.write_bytes(build(*reply_parts(server, tmp_path)))
    before = server.counts()
    with pytest.raises(BundleError) as refused:
        apply(server, bundle)
    assert says in str(refused.value)
    assert server.counts() == before


def test_a_reply_bundle_built_by_hand_applies(server: Server, tmp_path: Path) -> None:
    signed, items = reply_parts(server, tmp_path)
    bundle = tmp_path / "by-hand"
    bundle.write_bytes(archive(member(MANIFEST_MEMBER, signed), *(member(n, d) for n, d in items)))
    assert "1 reply stored" in apply(server, bundle).summary()  # type: ignore[attr-defined]


# --- the negative size, through every entry point, under limits ------------------------------


def negative_size_bundle(path: Path, signed: bytes = b"") -> Path:
    """CVE-2025-8194's shape: the second member's size is -512 in base-256, which sends
    tarfile back to that same header for ever.  Unsigned (an empty manifest) unless told."""
    first = member(MANIFEST_MEMBER, signed)
    second = header("items/" + "0" * 32, base256(-BLOCK))
    data = first + second
    path.write_bytes(data + bytes(max(0, 2048 - len(data))))
    return path


def limited() -> None:
    """Run in the child before it starts: bounds on CPU time and address space."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def cpu_limited() -> None:
    """For gunicorn, whose threads reserve much address space they never use: CPU time only."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def run_limited(args: list[str | Path], **options: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(TESTS)]))
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limited,
        check=False,
        **options,  # type: ignore[arg-type]
    )


READER = """
import json, sys, time, tracemalloc
from pathlib import Path
from blagh.bundles import BundleError, BundleReader

tracemalloc.start()
started = time.perf_counter()
try:
    BundleReader(Path(sys.argv[1]), [bytes.fromhex(sys.argv[2])], "blagh-pickup").close()
    outcome = "accepted"
except BundleError as error:
    outcome = str(error)
print(json.dumps({
    "outcome": outcome,
    "peak": tracemalloc.get_traced_memory()[1],
    "seconds": time.perf_counter() - started,
}))
"""


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "after a signed manifest"])
def test_the_negative_size_fails_fast_with_flat_memory(
    tmp_path: Path, pickup: Pickup, signed: bool
) -> None:
    manifest = pickup_parts(pickup)[0] if signed else b""
    bundle = negative_size_bundle(tmp_path / "negative", manifest)
    child = run_limited([sys.executable, "-c", READER, bundle, SERVER.public().verify.hex()])
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    result = json.loads(child.stdout)
    says = "base-256" if signed else "signature does not verify"
    assert says in result["outcome"]
    assert result["peak"] < PEAK_BYTES, result
    # A figure for the record, not asserted: timing is the CPU limit's business.
    print(f"refused in {result['seconds'] * 1e6:.0f} µs, {result['peak']} bytes at peak")


def passphrase_file(directory: Path) -> Path:
    path = directory / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def test_workstation_import_command_refuses_it(tmp_path: Path, vault_path: Path) -> None:
    bundle = negative_size_bundle(tmp_path / "negative.bundle")
    before = vault_state(vault_path)
    child = run_limited(
        [BLAGH, "workstation", "import", "--vault", vault_path,
         "--passphrase-file", passphrase_file(tmp_path), bundle]
    )  # fmt: skip
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    assert "blagh: error: " in child.stderr and "signature does not verify" in child.stderr
    assert "Traceback" not in child.stderr
    assert vault_state(vault_path) == before


IMPORT_PAGE = """
import io, re, sys
from pathlib import Path
from workstation_helpers import logged_in, workstation_app

bundle = Path(sys.argv[2]).read_bytes()
for app in workstation_app(Path(sys.argv[1])):
    client = logged_in(app)
    page = client.get("/import").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/import?lang=en",
        data={"csrf": csrf, "bundle": (io.BytesIO(bundle), "hostile.bundle")},
        content_type="multipart/form-data",
    )
    print(answer.status_code)
    print(answer.get_data(as_text=True))
    client.post("/logout", data={"csrf": csrf})
"""


def test_workstation_import_page_refuses_it(tmp_path: Path, vault_path: Path) -> None:
    bundle = negative_size_bundle(tmp_path / "negative.bundle")
    for app in workstation_app(vault_path):  # a first login updates the database's statistics
        logged_in(app)
    before = vault_state(vault_path)
    child = run_limited([sys.executable, "-c", IMPORT_PAGE, vault_path, bundle])
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    status, page = child.stdout.split("\n", 1)
    assert status == "400"
    assert "hostile.bundle: the manifest&#39;s signature does not verify" in page
    assert vault_state(vault_path) == before
    assert list((vault_path / "incoming").iterdir()) == []


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "after a signed manifest"])
def test_transfer_station_deliver_refuses_it(tmp_path: Path, signed: bool) -> None:
    """``blagh deliver`` verifies a reply bundle (with the key its manifest names) before
    sending it: nothing is sent, the address is never contacted."""
    manifest = {"format": "blagh-replies", "version": 1, "items": []}
    signature = sign_manifest(manifest, SERVER.sign, SERVER.public().verify) if signed else b""
    bundle = negative_size_bundle(tmp_path / "negative.bundle", signature)
    token = tmp_path / "station.token"
    token.write_text(new_token() + "\n")
    token.chmod(0o600)
    child = run_limited([BLAGH, "deliver", bundle, "--url", f"http://{HOST}:9/", "--token", token])
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    says = "base-256" if signed else "has no manifest as its first member"
    assert says in child.stderr
    assert "nothing was sent" in child.stderr and "Traceback" not in child.stderr


def test_transfer_station_verify_refuses_a_signed_one(tmp_path: Path, pickup: Pickup) -> None:
    """The same shape after a genuinely signed manifest, through the station's verify."""
    bundle = negative_size_bundle(tmp_path / "negative.bundle", pickup_parts(pickup)[0])
    script = (
        "import sys; from pathlib import Path\n"
        "from transfer.client import verify_bundle\n"
        "from blagh.bundles import BundleError\n"
        "try: verify_bundle(Path(sys.argv[1]), 'blagh-pickup', bytes.fromhex(sys.argv[2]))\n"
        "except BundleError as error: print(error)\n"
    )
    child = run_limited([sys.executable, "-c", script, bundle, SERVER.public().verify.hex()])
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "base-256" in child.stdout


def test_pickup_api_reply_upload_refuses_it(server: Server, tmp_path: Path) -> None:
    """Through a real gunicorn, its workers under a CPU-time limit: a 400 naming the check,
    and nothing changed in the store."""
    add_report(server)
    token = new_token()
    assert server.store.index.add_pickup_token("station-1", token_hash(token))
    bundle = negative_size_bundle(tmp_path / "negative.bundle").read_bytes()
    before = server.counts()
    with serve_pickup(server.data_dir, tmp_path, limits=cpu_limited) as port:
        connection = http.client.HTTPConnection(HOST, port, timeout=120)
        try:
            connection.request(
                "POST",
                "/v1/replies",
                body=bundle,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/octet-stream",
                },
            )
            response = connection.getresponse()
            status, body = response.status, json.loads(response.read())
        finally:
            connection.close()
    assert status == 400
    assert body["error"].startswith("the uploaded bundle: the manifest's signature does not")
    assert server.counts() == before
    assert not [p for p in server.store.pickup_dir.iterdir() if p.name.startswith(UPLOAD_PREFIX)]


def test_import_replies_command_refuses_it(server: Server, tmp_path: Path) -> None:
    """The server's own command for reply bundles carried by hand, signed by its analyst."""
    signed, _items = reply_parts(server, tmp_path)
    bundle = negative_size_bundle(tmp_path / "negative.bundle", signed)
    before = server.counts()
    child = run_limited([BLAGH, "import-replies", "--data-dir", server.data_dir.path, bundle])
    assert child.returncode == 1, (child.returncode, child.stderr[-2000:])
    (line,) = child.stderr.splitlines()
    assert line.startswith("blagh: error: ") and "base-256" in line
    assert server.counts() == before


def test_the_reader_parses_only_the_first_header_before_the_signature(
    tmp_path: Path, pickup: Pickup
) -> None:
    """An unsigned file whose second header is garbage is refused for its signature: the
    second header was never parsed."""
    garbage = bytes(range(256)) * 2
    bundle = tmp_path / "unsigned"
    bundle.write_bytes(member(MANIFEST_MEMBER, b"not signed") + garbage + end(1024))
    with pytest.raises(BundleError, match="signature does not verify"):
        BundleReader(bundle, [SERVER.public().verify], "blagh-pickup")


def test_a_bundle_cut_short_after_it_was_verified(tmp_path: Path, pickup: Pickup) -> None:
    """Items are read from the file again after the checks: if it shrank meanwhile, that is
    the reader's own error, not an OSError from deep inside."""
    bundle = pickup.write(tmp_path / "pickup", SERVER)
    with BundleReader(bundle, [SERVER.public().verify], "blagh-pickup") as reader:
        os.truncate(bundle, BLOCK)
        with pytest.raises(BundleError, match="changed while it was being read"):
            reader.read_item(pickup.items[0]["id"])


def test_a_folder_or_a_fifo_is_not_a_bundle(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(BundleError, match="not a regular file"):
            BundleReader(path, [SERVER.public().verify], "blagh-pickup")
