"""Pickup bundles into the vault, and reply bundles out of it.

Bundles are built here to docs/bundles.md and signed by a server key made here.  Every way a
bundle can be wrong is refused whole, with the vault left exactly as it was; importing twice, or
an old bundle again, changes nothing; replies open with the reporter's own secret key.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from workstation_helpers import (
    DAY,
    PASSPHRASE,
    Analyst,
    Pickup,
    make_analyst,
    make_vault,
    open_vault,
    vault_state,
)

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.payloads import decode_document
from crypto.envelope import open_envelope, seal
from crypto.keys import ServerSigningKey
from journalist_interface.errors import ImportRefused, NothingToSend
from journalist_interface.importer import import_bundle
from journalist_interface.replies import ReplyError, add_reply, make_reply_bundle
from journalist_interface.vault import Vault

SERVER = ServerSigningKey.generate()
PHOTO = (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300, "screenshot.png", "image/png")


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst) -> Path:
    return make_vault(tmp_path, analyst, SERVER)


@pytest.fixture
def vault(vault_path: Path) -> Iterator[Vault]:
    with open_vault(vault_path) as opened:
        yield opened


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    """A report with a photo, from a reporter with a codename, and a message with a file."""
    bundle = Pickup([analyst.key])
    source = bundle.source()
    report = bundle.report(
        source,
        danger=True,
        identity={"name": "Samira", "phone": "+33 1 23", "email": ""},
        files=[PHOTO],
    )
    bundle.message(report, source, "Here is another one.", [(b"log", "chat.txt", "text/plain")])
    return bundle


def passphrase_file(directory: Path) -> Path:
    path = directory / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], prog_name="blagh")


# --- importing ---------------------------------------------------------------------------------


def test_import_decrypts_reports_and_keeps_attachments_encrypted(
    tmp_path: Path, vault: Vault, pickup: Pickup
) -> None:
    result = import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    assert (result.items, result.new_items, result.new_reports, result.unreadable) == (4, 4, 1, 0)
    (summary,) = vault.inbox()
    assert summary.danger and summary.received and (summary.messages, summary.files) == (1, 2)
    report = vault.report(summary.id)
    assert report is not None
    assert report.description == "A fake shop took my money."
    assert report.links == ("https://shop.example/pay",)
    assert report.identity is not None and report.identity.name == "Samira"
    assert report.source_public_key == pickup.sources[0].public_key
    assert [entry.text for entry in report.conversation] == ["Here is another one."]
    photo, chat = report.files
    assert (photo.name, photo.content_type, photo.size) == (PHOTO[1], PHOTO[2], len(PHOTO[0]))
    assert b"".join(vault.attachment_chunks(photo)) == PHOTO[0]
    assert b"".join(vault.attachment_chunks(chat)) == b"log"
    # At rest the attachment is the server's envelope, byte for byte.
    stored = (vault.paths.blobs / photo.blob).read_bytes()
    assert stored in pickup.envelopes.values()
    assert PHOTO[0][:64] not in stored
    assert vault.pending().acknowledgements == 4


def test_importing_the_same_bundle_twice_changes_nothing(
    tmp_path: Path, vault_path: Path, pickup: Pickup
) -> None:
    bundle = pickup.write(tmp_path / "pickup", SERVER)
    with open_vault(vault_path) as vault:
        import_bundle(vault, bundle)
    before = vault_state(vault_path)
    with open_vault(vault_path) as vault:
        again = import_bundle(vault, bundle)
    assert (again.items, again.new_items, again.new_reports) == (4, 0, 0)
    assert vault_state(vault_path) == before


def test_a_later_bundle_brings_only_what_is_new_and_an_old_one_changes_nothing(
    tmp_path: Path, vault_path: Path, pickup: Pickup, analyst: Analyst
) -> None:
    old = pickup.write(tmp_path / "old", SERVER)
    with open_vault(vault_path) as vault:
        import_bundle(vault, old)
    source = pickup.sources[0]
    report_id = pickup.reports[0]["id"]
    pickup.message(report_id, source, "One more thing.")
    newer = pickup.write(tmp_path / "newer", SERVER, pickup.manifest(day="2025-03-15"))
    with open_vault(vault_path) as vault:
        result = import_bundle(vault, newer)
        assert (result.new_items, result.new_reports) == (1, 0)
        report = vault.report(report_id)
        assert report is not None
        assert [e.text for e in report.conversation][-1] == "One more thing."
    before = vault_state(vault_path)
    with open_vault(vault_path) as vault:  # the old bundle, replayed
        import_bundle(vault, old)
    assert vault_state(vault_path) == before


def test_items_a_reporter_sealed_badly_are_recorded_not_fatal(
    tmp_path: Path, vault: Vault, pickup: Pickup
) -> None:
    source = pickup.sources[0]
    report_id = pickup.reports[0]["id"]
    stranger = make_analyst(tmp_path, "stranger").key.public().encryption
    pickup.add_item(report_id, "message", seal(b'{"v":1,"kind":"message","text":"x"}', [stranger]))
    pickup.add_item(
        report_id, "message", seal(b"not json", [pickup.analysts[0].public().encryption])
    )
    pickup.add_item(report_id, "file", seal(b"no description line", [stranger]))
    pickup.message(report_id, source, "Still readable.")
    result = import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    assert (result.new_items, result.unreadable) == (8, 3)
    report = vault.report(report_id)
    assert report is not None
    assert "Still readable." in [entry.text for entry in report.conversation]
    assert len(report.files) == 2  # the unreadable file is not kept
    assert vault.pending().acknowledgements == 8  # so the server can drop them


def test_odd_document_fields_are_dropped_not_trusted(
    tmp_path: Path, vault: Vault, analyst: Analyst
) -> None:
    pickup = Pickup([analyst.key])
    source = pickup.source(codename=False)
    report_id = pickup.report(
        source,
        description=["not", "text"],  # type: ignore[arg-type]
        links=["https://a.example", 7, None],  # type: ignore[list-item]
        danger="yes",  # type: ignore[arg-type]
        seen_on="yesterday",
        identity={"name": "", "phone": "", "email": ""},
    )
    import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    report = vault.report(report_id)
    assert report is not None
    assert (report.description, report.links, report.danger) == ("", ("https://a.example",), False)
    assert report.seen_on is None and report.identity is None
    assert not report.can_reply


# --- refusing a bundle whole -------------------------------------------------------------------


def _flip_envelope_byte(pickup: Pickup) -> list[tuple[str, bytes]]:
    members = pickup.members()
    name, data = members[1]
    members[1] = (name, data[:100] + bytes([data[100] ^ 1]) + data[101:])
    return members


def _bad_source_list(pickup: Pickup) -> dict[str, Any]:
    manifest = pickup.manifest()
    manifest["sources"][0]["public_key"] = "zz"
    return manifest


def _unknown_report(pickup: Pickup) -> dict[str, Any]:
    manifest = pickup.manifest()
    manifest["items"][0]["report"] = secrets.token_hex(16)
    return manifest


TAMPERINGS: dict[str, Callable[[Pickup, Path], Path]] = {
    "flipped byte in an envelope": lambda p, out: p.write_raw(
        out, SERVER, _flip_envelope_byte(p)
    ),
    "changed manifest": lambda p, out: p.write_raw(
        out, SERVER, p.members(), signed=_changed_manifest(p)
    ),
    "missing file": lambda p, out: p.write_raw(out, SERVER, p.members()[1:]),
    "extra file": lambda p, out: p.write_raw(
        out, SERVER, [*p.members(), (f"items/{secrets.token_hex(16)}", b"extra")]
    ),
    "same file twice": lambda p, out: p.write_raw(out, SERVER, [*p.members(), p.members()[0]]),
    "wrong signer": lambda p, out: p.write(out, ServerSigningKey.generate()),
    "relative path ../x": lambda p, out: p.write_raw(out, SERVER, [*p.members(), ("../x", b"x")]),
    "absolute path": lambda p, out: p.write_raw(
        out, SERVER, [*p.members(), ("/tmp/blagh-x", b"x")]
    ),
    "item renamed ../": lambda p, out: p.write_raw(
        out, SERVER, [("../" + name, data) for name, data in p.members()]
    ),
    "not a tar file": lambda p, out: _write(out, b"\x00" * 4096 + b"not a bundle"),
    "truncated": lambda p, out: _write(out, _half(p.write(out.with_suffix(".t"), SERVER))),
    "a reply bundle instead": lambda p, out: p.write(out, SERVER, _as_replies(p)),
    "malformed source list": lambda p, out: p.write(out, SERVER, _bad_source_list(p)),
    "item of an unknown report": lambda p, out: p.write(out, SERVER, _unknown_report(p)),
}  # fmt: skip


def _as_replies(pickup: Pickup) -> dict[str, Any]:
    return {**pickup.manifest(), "format": "blagh-replies"}


def _half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _changed_manifest(pickup: Pickup) -> bytes:
    """A correctly signed manifest with one character of its JSON changed afterwards."""
    from crypto.manifest import sign_manifest

    signed = sign_manifest(pickup.manifest(), SERVER.sign, SERVER.public().verify)
    return signed.replace(DAY.encode(), b"2025-03-13", 1)


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_a_tampered_bundle_is_refused_whole(
    tmp_path: Path, vault_path: Path, pickup: Pickup, analyst: Analyst, tampering: str
) -> None:
    # The vault already holds something, so "unchanged" means more than "still empty".
    earlier = Pickup([analyst.key])
    earlier.report(earlier.source(), files=[PHOTO])
    with open_vault(vault_path) as vault:
        import_bundle(vault, earlier.write(tmp_path / "earlier", SERVER))
    before = vault_state(vault_path)
    bundle = TAMPERINGS[tampering](pickup, tmp_path / "tampered")
    with open_vault(vault_path) as vault, pytest.raises(ImportRefused) as refused:
        import_bundle(vault, bundle)
    assert "The whole bundle was refused: nothing was imported" in str(refused.value)
    assert vault_state(vault_path) == before
    assert not Path("/tmp/blagh-x").exists()
    assert not (tmp_path / "x").exists()


def test_the_refusal_says_which_check_failed(tmp_path: Path, vault: Vault, pickup: Pickup) -> None:
    checks = {
        "flipped byte in an envelope": "does not match its SHA-256",
        "wrong signer": "signature does not verify",
        "missing file": "lacks 1 item",
        "relative path ../x": "'../x'",
        "malformed source list": "source list is malformed",
    }
    for tampering, says in checks.items():
        bundle = TAMPERINGS[tampering](pickup, tmp_path / secrets.token_hex(8))
        with pytest.raises(ImportRefused, match=None) as refused:
            import_bundle(vault, bundle)
        assert says in str(refused.value), (tampering, str(refused.value))


# --- the import command ------------------------------------------------------------------------


def test_import_command_shows_progress_and_a_summary(
    tmp_path: Path, vault_path: Path, pickup: Pickup
) -> None:
    bundle = pickup.write(tmp_path / "pickup", SERVER)
    result = run("workstation", "import", "--vault", vault_path,
                 "--passphrase-file", passphrase_file(tmp_path), bundle)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Decrypting" in result.stderr
    assert "4 new item(s) of 4, 1 new report(s)" in result.stdout


def test_import_command_refusal_is_one_line(
    tmp_path: Path, vault_path: Path, pickup: Pickup
) -> None:
    bundle = pickup.write(tmp_path / "pickup", ServerSigningKey.generate())
    result = run("workstation", "import", "--vault", vault_path,
                 "--passphrase-file", passphrase_file(tmp_path), bundle)  # fmt: skip
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("blagh:")]
    assert line.startswith("blagh: error: ") and "signature does not verify" in line
    assert "Traceback" not in result.output


def test_a_reply_bundle_is_named_as_one(tmp_path: Path, vault_path: Path, analyst: Analyst) -> None:
    """A bundle of the wrong kind is named for what it is, not "signature does not verify"."""
    from blagh.bundles import write_bundle

    key = analyst.key
    bundle = tmp_path / "replies.bundle"
    with bundle.open("wb") as out:
        manifest = {"format": "blagh-replies", "version": 1, "items": []}
        write_bundle(out, manifest, key.sign, key.public().verify, [])
    result = run("workstation", "import", "--vault", vault_path,
                 "--passphrase-file", passphrase_file(tmp_path), bundle)  # fmt: skip
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("blagh:")]
    assert line == (
        f"blagh: error: {bundle} is a reply bundle, not a pickup bundle: it goes from the "
        "workstation to the server: apply it there with `blagh import-replies` (or `blagh "
        "deliver` from the transfer station). The whole bundle was refused: nothing was imported"
    )
    result = run("verify-evidence", bundle)
    assert result.exit_code == 1
    assert result.stderr == (
        f"blagh: error: {bundle} is a reply bundle, not an evidence export: a bundle is "
        "imported, not verified\n"
    )


def test_import_command_wrong_passphrase(tmp_path: Path, vault_path: Path, pickup: Pickup) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    bundle = pickup.write(tmp_path / "pickup", SERVER)
    result = run("workstation", "import", "--vault", vault_path, "--passphrase-file", wrong, bundle)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "blagh: error: wrong passphrase: nothing was opened. Type the passphrase of the analyst "
        "key file this vault was made with"
    ]


# --- replies -----------------------------------------------------------------------------------


def test_a_reply_reaches_the_reporter_in_a_signed_reply_bundle(
    tmp_path: Path, vault: Vault, pickup: Pickup, analyst: Analyst
) -> None:
    import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    report_id = pickup.reports[0]["id"]
    reply_id = add_reply(vault, report_id, "  Thank you: we are looking into it.  ")
    vault.ask_deletion(report_id, True)
    made = make_reply_bundle(vault, tmp_path / "replies.bundle")
    assert (made.replies, made.acknowledged, made.deletions) == (1, 4, 1)

    with BundleReader(
        tmp_path / "replies.bundle", [analyst.key.public().verify], "blagh-replies"
    ) as bundle:
        manifest = bundle.manifest
        assert bundle.signer == analyst.key.public().verify
        assert sorted(manifest["acknowledged"]) == sorted(i["id"] for i in pickup.items)
        assert manifest["delete_reports"] == [report_id]
        (item,) = manifest["items"]
        assert (item["id"], item["report"]) == (reply_id, report_id)
        envelope = bundle.read_item(reply_id)
    source_secret = pickup.sources[0].secret_key
    assert source_secret is not None
    document = decode_document(open_envelope(envelope, [source_secret]), "reply")
    assert document["text"] == "Thank you: we are looking into it."
    # The analysts can read it too.
    assert open_envelope(envelope, [analyst.key.encryption_secret])

    assert vault.pending().empty
    report = vault.report(report_id)
    assert report is not None and report.delete_sent
    assert [(e.kind, e.sent) for e in report.conversation][-1] == ("reply", True)
    with pytest.raises(NothingToSend):
        make_reply_bundle(vault, tmp_path / "again.bundle")
    assert not (tmp_path / "again.bundle").exists()


def test_replies_are_sealed_to_every_analyst_of_the_newest_pickup(
    tmp_path: Path, vault: Vault, pickup: Pickup, analyst: Analyst
) -> None:
    colleague = make_analyst(tmp_path, "colleague").key
    pickup.analysts = [analyst.key, colleague]
    import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    reply_id = add_reply(vault, pickup.reports[0]["id"], "Noted.")
    make_reply_bundle(vault, tmp_path / "replies.bundle")
    with BundleReader(
        tmp_path / "replies.bundle", [analyst.key.public().verify], "blagh-replies"
    ) as bundle:
        envelope = bundle.read_item(reply_id)
    assert json.loads(open_envelope(envelope, [colleague.encryption_secret]))["text"] == "Noted."


def test_no_reply_to_a_reporter_without_codename(
    tmp_path: Path, vault: Vault, analyst: Analyst
) -> None:
    pickup = Pickup([analyst.key])
    report_id = pickup.report(pickup.source(codename=False))
    import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
    with pytest.raises(ReplyError, match="no codename"):
        add_reply(vault, report_id, "Hello")
    with pytest.raises(ReplyError, match="empty"):
        add_reply(vault, report_id, "   ")
    assert vault.pending().replies == 0


@pytest.mark.parametrize("key", ["00" * 32, "01" + "00" * 31, "ec" + "ff" * 30 + "7f"])
def test_no_reply_to_a_reporter_whose_key_nothing_can_be_sealed_to(
    tmp_path: Path, vault: Vault, pickup: Pickup, key: str
) -> None:
    """A low-order key (which an older server took from a tampered browser) imports as no key
    at all: the report comes in, and a reply says plainly it cannot reach the reporter,
    instead of failing inside the sealing code."""
    manifest = pickup.manifest()
    manifest["sources"][0]["public_key"] = key
    result = import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER, manifest))
    assert result.new_reports == 1 and result.unreadable == 0
    with pytest.raises(ReplyError, match="no codename"):
        add_reply(vault, pickup.reports[0]["id"], "Hello")
    assert vault.pending().replies == 0


def test_replies_command(tmp_path: Path, vault_path: Path, pickup: Pickup) -> None:
    with open_vault(vault_path) as vault:
        import_bundle(vault, pickup.write(tmp_path / "pickup", SERVER))
        add_reply(vault, pickup.reports[0]["id"], "Hello")
    out = tmp_path / "replies.bundle"
    args = ("workstation", "replies", "--vault", vault_path, "--out", out,
            "--passphrase-file", passphrase_file(tmp_path))  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "1 reply(ies), 4 acknowledgement(s), 0 deletion request(s)" in result.stdout
    assert out.stat().st_size > 0
    again = run(*args)
    assert again.exit_code == 1
    assert again.stderr.startswith("blagh: error: ")
    out.unlink()
    nothing = run(*args)
    assert nothing.stderr.strip() == (
        "blagh: error: nothing to send: no reply, acknowledgement or deletion is waiting"
    )
