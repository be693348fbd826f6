"""Reply bundles into the server: applied whole after every check, or refused whole.

Each hostile bundle is checked to change nothing: the same rows in every table and the very
same set of blob files before and after.
"""

from __future__ import annotations

import json
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pickup_helpers import (
    Reply,
    Server,
    add_report,
    all_item_ids,
    make_server,
    members,
    reply_bundle,
    seal_reply,
    write_members,
)

from blagh.bundles import BundleError
from blagh.cli import cli
from blagh.payloads import decode_document
from crypto.envelope import open_envelope
from crypto.keys import generate_analyst_key
from source_interface.pickup.bundles import (
    MAX_REPLY_BYTES,
    envelope_shape_ok,
    import_reply_bundle,
)


@pytest.fixture(params=["sqlcipher", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """On each store backend (PostgreSQL: a database of its own in the session's cluster)."""
    store = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        store = {"backend": "postgresql", "dsn": postgres.new_database(f"p{secrets.token_hex(6)}")}
    server = make_server(tmp_path, store=store)
    try:
        yield server
    finally:
        server.close()


def apply(server: Server, path: Path) -> Any:
    return import_reply_bundle(
        server.store,
        server.config.recipients.analysts,
        path,
        delivered_days=server.config.retention.delivered_days,
    )


def refused(server: Server, path: Path, match: str) -> str:
    """Import ``path``, expect a refusal saying ``match``, and check nothing changed."""
    before = server.counts()
    with pytest.raises(BundleError, match=match) as caught:
        apply(server, path)
    assert server.counts() == before
    return str(caught.value)


def test_a_reply_bundle_stores_replies_acknowledges_and_deletes(
    server: Server, tmp_path: Path
) -> None:
    kept = add_report(server, files=2)
    gone = add_report(server, codename=False)
    acknowledged = all_item_ids(server)
    reply = Reply(kept.reports[0].id, kept.public_key or b"", "We have opened a case.")
    path = reply_bundle(
        tmp_path / "replies.bundle",
        server.analyst,
        [reply],
        acknowledged=acknowledged,
        delete_reports=[gone.reports[0].id],
    )
    gone_blobs = {item.blob for item in gone.reports[0].items}

    result = apply(server, path)

    assert result.summary() == "1 reply stored, 5 items acknowledged, 1 report deleted"
    (row,) = server.rows(
        "SELECT id, report_id, blob, delivered_day FROM items WHERE kind = 'reply'"
    )
    assert row[:2] == (reply.id, kept.reports[0].id) and row[3] is None
    envelope = server.store.read_blob(row[2])
    assert kept.secret_key is not None
    opened = decode_document(open_envelope(envelope, [kept.secret_key]), "reply")
    assert opened["text"] == "We have opened a case."
    delivered = server.rows("SELECT id FROM items WHERE delivered_day IS NOT NULL")
    assert {i for (i,) in delivered} == {item.id for item in kept.reports[0].items}
    assert server.rows("SELECT id FROM reports") == [(kept.reports[0].id,)]
    assert server.rows("SELECT id FROM sources") == [(kept.source_id,)], "left with nothing"
    assert not gone_blobs & server.store.blobs.names()
    assert server.store.blobs.names() == server.store.index.blob_names()
    assert server.store.index.undelivered() == []


def test_a_replayed_bundle_is_refused(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    path = reply_bundle(tmp_path / "r.bundle", server.analyst, [reply])
    apply(server, path)
    message = refused(server, path, "imported before")
    assert "make a new one on the workstation" in message
    # A new bundle that reuses the bundle id is a replay as well.
    again = reply_bundle(tmp_path / "r2.bundle", server.analyst, bundle_id=_bundle_id(path))
    refused(server, again, "imported before")


def _bundle_id(path: Path) -> str:
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.signed")
        assert member is not None
        body = member.read()[8 + 1 + 32 + 64 :]
    bundle_id: str = json.loads(body)["bundle"]
    return bundle_id


def test_a_reply_sent_again_in_a_new_bundle_is_kept_once(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    envelope = seal_reply(reply, [server.analyst.public().encryption])
    first = reply_bundle(tmp_path / "1", server.analyst, [reply], envelopes={reply.id: envelope})
    second = reply_bundle(tmp_path / "2", server.analyst, [reply], envelopes={reply.id: envelope})
    apply(server, first)
    result = apply(server, second)
    assert (result.replies_stored, result.replies_already_stored) == (0, 1)
    assert server.rows("SELECT count(*) FROM items WHERE kind = 'reply'") == [(1,)]
    assert server.store.blobs.names() == server.store.index.blob_names()


def test_a_reply_id_taken_by_another_item_refuses_the_bundle(
    server: Server, tmp_path: Path
) -> None:
    reporter = add_report(server)
    taken = reporter.reports[0].items[0].id
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"", id=taken)
    path = reply_bundle(tmp_path / "r", server.analyst, [reply], acknowledged=[taken])
    refused(server, path, "id of a different item")


def test_replies_to_reports_that_are_gone_are_dropped_not_refused(
    server: Server, tmp_path: Path
) -> None:
    reporter = add_report(server)
    anonymous = add_report(server, codename=False)
    deleted = add_report(server)
    server.store.delete_source(deleted.source_id)
    replies = [
        Reply(reporter.reports[0].id, reporter.public_key or b""),
        Reply(deleted.reports[0].id, deleted.public_key or b""),
        Reply(anonymous.reports[0].id, reporter.public_key or b""),
        Reply(secrets.token_hex(16), reporter.public_key or b""),
    ]
    path = reply_bundle(tmp_path / "r", server.analyst, replies, acknowledged=all_item_ids(server))
    result = apply(server, path)
    assert (result.replies_stored, result.replies_dropped) == (1, 3)
    assert "3 replies dropped: the report is gone" in result.summary()
    assert server.store.blobs.names() == server.store.index.blob_names()


def test_acknowledging_unknown_items_or_replies_changes_nothing_else(
    server: Server, tmp_path: Path
) -> None:
    reporter = add_report(server, files=0)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    apply(server, reply_bundle(tmp_path / "1", server.analyst, [reply]))
    path = reply_bundle(
        tmp_path / "2", server.analyst, acknowledged=[reply.id, secrets.token_hex(16)]
    )
    result = apply(server, path)
    assert result.summary() == "0 replies stored, 0 items acknowledged, 0 reports deleted"
    assert server.rows("SELECT count(*) FROM items WHERE delivered_day IS NOT NULL") == [(0,)]


# --- refused whole ------------------------------------------------------------------------------


@pytest.fixture
def good(server: Server, tmp_path: Path) -> Path:
    """A valid bundle: two replies, acknowledgements, a deletion."""
    first, second = add_report(server), add_report(server)
    replies = [
        Reply(first.reports[0].id, first.public_key or b""),
        Reply(second.reports[0].id, second.public_key or b""),
    ]
    return reply_bundle(
        tmp_path / "good.bundle",
        server.analyst,
        replies,
        acknowledged=all_item_ids(server),
        delete_reports=[second.reports[0].id],
    )


def test_a_flipped_byte_in_an_envelope(server: Server, good: Path, tmp_path: Path) -> None:
    entries = members(good)
    info, data = entries[1]
    assert data is not None
    entries[1] = (info, data[:-1] + bytes([data[-1] ^ 1]))
    refused(server, write_members(tmp_path / "bad", entries), "does not match its SHA-256")


def test_a_flipped_byte_anywhere_in_a_member(server: Server, good: Path, tmp_path: Path) -> None:
    """In any member's header or bytes (the tar format's zero padding carries nothing)."""
    data = good.read_bytes()
    with tarfile.open(good) as tar:
        spans = [(m.offset, m.offset_data + m.size) for m in tar.getmembers()]
    offsets = sorted({o for start, end in spans for o in (start + 3, start + 150, end - 1)})
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0x40
        path = tmp_path / f"bad-{offset}"
        path.write_bytes(bytes(damaged))
        before = server.counts()
        with pytest.raises(BundleError):
            apply(server, path)
        assert server.counts() == before, offset


def test_a_changed_manifest(server: Server, good: Path, tmp_path: Path) -> None:
    entries = members(good)
    info, signed = entries[0]
    assert signed is not None
    changed = signed.replace(b'"delete_reports":["', b'"delete_reports":["0', 1)
    changed = changed.replace(b'"acknowledged":[', b'"acknowledged":[ ', 1)
    assert changed != signed
    entries[0] = (info, changed)
    refused(server, write_members(tmp_path / "bad", entries), "signature does not verify")


def test_a_missing_item(server: Server, good: Path, tmp_path: Path) -> None:
    entries = members(good)
    del entries[2]
    refused(server, write_members(tmp_path / "bad", entries), "lacks 1 item")


def test_an_extra_file(server: Server, good: Path, tmp_path: Path) -> None:
    entries = members(good)
    entries.append((tarfile.TarInfo("items/" + secrets.token_hex(16)), b"extra"))
    refused(server, write_members(tmp_path / "bad", entries), "does not list")


def test_a_wrong_signer(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    stranger = generate_analyst_key()
    path = reply_bundle(
        tmp_path / "bad",
        stranger,
        [Reply(reporter.reports[0].id, reporter.public_key or b"")],
        acknowledged=all_item_ids(server),
    )
    refused(server, path, "does not verify with a trusted key")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "items/../../x", "items/../manifest"])
def test_hostile_member_names(server: Server, good: Path, tmp_path: Path, name: str) -> None:
    entries = members(good)
    entries.append((tarfile.TarInfo(name), b"owned"))
    refused(server, write_members(tmp_path / "bad", entries), "does not list")
    assert not (tmp_path / "x").exists()


def test_a_hostile_name_instead_of_an_item(server: Server, good: Path, tmp_path: Path) -> None:
    entries = members(good)
    info, data = entries[1]
    renamed = tarfile.TarInfo("../" + info.name)
    entries[1] = (renamed, data)
    refused(server, write_members(tmp_path / "bad", entries), "does not list")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_link_member(server: Server, good: Path, tmp_path: Path, kind: bytes) -> None:
    entries = members(good)
    info, _ = entries[1]
    link = tarfile.TarInfo(info.name)
    link.type = kind
    link.linkname = "/etc/passwd"
    entries[1] = (link, None)
    refused(server, write_members(tmp_path / "bad", entries), "not a regular file")


def test_a_pickup_bundle_is_not_a_reply_bundle(server: Server, tmp_path: Path) -> None:
    add_report(server)
    path = tmp_path / "pickup.bundle"
    from source_interface.pickup.bundles import PickupBundles

    bundle = PickupBundles(server.store, server.config.recipients.analysts, server.signing_key)
    opened = bundle.open_current()
    with opened.file:
        path.write_bytes(opened.file.read())
    message = refused(server, path, "pickup bundle")
    assert message == (
        f"{path} is a pickup bundle, not a reply bundle: it goes from the server to the "
        "workstation: import it there with `blagh workstation import`"
    )
    result = run("import-replies", "--data-dir", server.data_dir.path, path)
    assert result.exit_code == 1
    assert result.stderr == f"blagh: error: {message}\n"  # refused before any progress


def test_a_zip_is_named_as_one(server: Server, tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "evidence.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.signed", b"x")
    message = refused(server, path, "zip archive")
    assert message == (
        f"{path} is a zip archive, not a reply bundle: an evidence export is checked with "
        "`blagh verify-evidence`"
    )


def test_not_a_tar_file(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"hello" * 1000)
    refused(server, path, "not a bundle")


def test_an_item_that_is_not_an_envelope(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    path = reply_bundle(
        tmp_path / "bad", server.analyst, [reply], envelopes={reply.id: b"plain text reply" * 40}
    )
    refused(server, path, "is not an envelope sealed to the reporter and the analysts")


def test_a_reply_sealed_to_one_recipient_only(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    path = reply_bundle(tmp_path / "bad", server.analyst, [reply], analysts=[])
    refused(server, path, "is not an envelope")


def test_a_reply_too_large(server: Server, tmp_path: Path) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"", "x" * MAX_REPLY_BYTES)
    path = reply_bundle(tmp_path / "bad", server.analyst, [reply])
    refused(server, path, "larger than a reply may be")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(bundle="../x"), "bundle id"),
        (lambda m: m.update(day="yesterday"), "day is not a date"),
        (lambda m: m.update(day="2025-02-30"), "day is not a date"),
        (lambda m: m.update(acknowledged=["../x"]), "acknowledged is not a list of ids"),
        (lambda m: m.pop("acknowledged"), "acknowledged is not a list of ids"),
        (lambda m: m.update(delete_reports="all"), "delete_reports is not a list of ids"),
        (lambda m: m["items"][0].update(report=None), "names no report"),
        (lambda m: m.update(version=2), "not a blagh-replies bundle of version 1"),
        (lambda m: m.update(format="blagh-pickup"), "is a pickup bundle, not a reply bundle"),
        (lambda m: m.update(format="blagh-other"), "not a blagh-replies bundle"),
    ],
)
def test_malformed_manifests(server: Server, tmp_path: Path, edit: Any, match: str) -> None:
    reporter = add_report(server)
    reply = Reply(reporter.reports[0].id, reporter.public_key or b"")
    path = reply_bundle(
        tmp_path / "bad",
        server.analyst,
        [reply],
        acknowledged=all_item_ids(server),
        edit_manifest=edit,
    )
    refused(server, path, match)


def test_envelope_shapes() -> None:
    from crypto.envelope import seal

    key = secrets.token_bytes(32)
    for size in (0, 1, 100, 65535, 65536, 200_000):
        envelope = seal(bytes(size), [key, secrets.token_bytes(32)])
        assert envelope_shape_ok(envelope[:10], len(envelope), 2)
        assert not envelope_shape_ok(envelope[:10], len(envelope) + 1, 2)
        assert not envelope_shape_ok(envelope[:10], len(envelope) - 17, 2)
        assert not envelope_shape_ok(envelope[:10], len(envelope), 3)
    assert not envelope_shape_ok(b"BLAGHENV\x02\x02", 1000)
    assert not envelope_shape_ok(b"BLAGHENV\x01\x00", 1000)
    assert not envelope_shape_ok(b"BLAGHENV", 1000)


# --- the command ------------------------------------------------------------------------------


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="blagh")


def test_import_replies_command(server: Server, good: Path) -> None:
    data_dir = server.data_dir.path
    result = run("import-replies", "--data-dir", data_dir, good)
    assert result.exit_code == 0, result.output
    assert result.stdout == "2 replies stored, 4 items acknowledged, 1 report deleted.\n"
    again = run("import-replies", "--data-dir", data_dir, good)
    assert again.exit_code == 1
    (line,) = [x for x in again.stderr.splitlines() if x.startswith("blagh:")]  # and progress
    assert line.startswith("blagh: error: ") and "was imported before" in line


def test_import_replies_command_refuses_a_tampered_bundle_in_one_line(
    server: Server, good: Path, tmp_path: Path
) -> None:
    entries = members(good)
    info, data = entries[1]
    assert data is not None
    entries[1] = (info, bytes([data[0] ^ 1]) + data[1:])
    bad = write_members(tmp_path / "bad.bundle", entries)
    before = server.counts()
    result = run("import-replies", "--data-dir", server.data_dir.path, bad)
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("blagh:")]
    assert line == f"blagh: error: {bad}: item '{info.name}' does not match its SHA-256"
    assert server.counts() == before


def test_a_bundle_changed_while_it_is_copied_is_refused(
    server: Server, good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hashes are checked again as replies are copied: a file swapped after the checks
    (removable media, another process) is refused, the blobs made so far removed."""
    from blagh import bundles

    real = bundles.BundleReader.item_chunks
    calls: list[str] = []

    def swapped(self: bundles.BundleReader, item_id: str) -> Any:
        calls.append(item_id)
        chunks = list(real(self, item_id))
        if len(calls) > 2:  # the two shape checks are done: now the copies
            chunks[-1] = chunks[-1][:-1] + b"\x00"
        return iter(chunks)

    monkeypatch.setattr(bundles.BundleReader, "item_chunks", swapped)
    refused(server, good, "changed while it was being imported")
