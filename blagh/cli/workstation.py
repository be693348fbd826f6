"""``blagh workstation``: the analyst's vault, pickup imports, reply bundles and review app.

Run on the analyst's isolated workstation.  Each command that opens the vault asks for the
analyst's passphrase (or reads it from ``--passphrase-file``); failures end in the one line
every ``blagh`` command prints, since :mod:`blagh.cli` runs this group.
"""

from __future__ import annotations

import base64
import errno
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from blagh.cli.common import FROM_FILE_HELP, read_passphrase_file
from blagh.errors import BlaghError
from crypto.errors import InvalidPublicKey
from crypto.keys import ServerVerifyKey

if TYPE_CHECKING:
    from journalist_interface.vault import Vault


_vault_option = click.option(
    "--vault",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="The vault folder made by `blagh workstation init`.",
)
_ANALYST = "blagh.analyst"


def _remember_analyst(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    ctx.meta[_ANALYST] = value
    return value


def _passphrase_option(command: Any) -> Any:
    """``--passphrase-file``, and ``--analyst`` (read by :func:`_open_vault`)."""
    command = click.option(
        "--analyst",
        default="",
        metavar="NAME",
        expose_value=False,
        callback=_remember_analyst,
        help="Your account name, when the vault has several analysts (docs/casework.md); "
        "leave it out if you made the vault.",
    )(command)
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help=FROM_FILE_HELP,
    )(command)


class _ServerLine(click.ParamType[ServerVerifyKey, str]):
    name = "line"

    def convert(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> ServerVerifyKey:
        try:
            return ServerVerifyKey.from_line(value)
        except InvalidPublicKey as error:
            self.fail(f"{error}; copy the whole line that `blagh init` printed", param, ctx)


@click.group("workstation")
def workstation() -> None:
    """The analyst's workstation, offline: vault, imports, replies, review app.

    \b
    Once:        blagh workstation init --vault DIR --key-file F --server-key LINE
    Each round:  blagh workstation import --vault DIR PICKUP-BUNDLE
                 blagh workstation serve --vault DIR    (read, triage, reply)
                 blagh workstation replies --vault DIR --out FILE
    """


@workstation.command("init", short_help="Create a vault for an analyst key.")
@_vault_option
@click.option(
    "--key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The analyst key file that `blagh keygen` wrote; it is copied into the vault.",
)
@click.option(
    "--server-key",
    required=True,
    type=_ServerLine(),
    metavar="LINE",
    help="The server's public key line, as `blagh init` printed it: pickup bundles must be "
    "signed by it.",
)
@_passphrase_option
def init(
    vault: Path, key_file: Path, server_key: ServerVerifyKey, passphrase_file: Path | None
) -> None:
    """Create the vault DIR (mode 0700): a copy of the analyst key file, and an encrypted
    database that the key's passphrase opens, with the server's public key pinned in it.

    An existing DIR must be empty.
    """
    from journalist_interface.vault import create_vault

    analyst = create_vault(vault, key_file, server_key, _passphrase(passphrase_file))
    click.echo(f"Created the vault {vault} (mode 0700).")
    click.echo(f"Analyst key fingerprint: {analyst.fingerprint()}")
    click.echo(f"Pinned server key fingerprint: {server_key.fingerprint()}")
    click.echo()
    click.echo("Compare the server key's fingerprint with the operator by a separate channel (in")
    click.echo("person, by phone): only bundles it signed will be imported.")


@workstation.command("import", short_help="Verify a pickup bundle and decrypt it into the vault.")
@_vault_option
@_passphrase_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--pdq-distance",
    type=click.IntRange(0, 128),
    default=31,
    show_default=True,
    help="A PDQ hash within this many bits of a listed one is a match.",
)
@click.option(
    "--pdq-quality",
    type=click.IntRange(0, 100),
    default=50,
    show_default=True,
    help="PDQ hashes of lower quality (flat, blurred images) are not matched.",
)
def import_command(
    vault: Path, passphrase_file: Path | None, file: Path, pdq_distance: int, pdq_quality: int
) -> None:
    """Verify the pickup bundle FILE whole (the pinned server key's signature, every item's
    hash), then decrypt what is new into the vault.

    A bundle that fails any check is refused whole and the vault is left unchanged.  Importing
    the same bundle twice changes nothing.
    """
    from journalist_interface import audit
    from journalist_interface.importer import import_bundle

    with _open_vault(vault, passphrase_file) as opened:
        click.echo(f"Verifying {file}…", err=True)
        with _ProgressBar() as bar:
            result = import_bundle(opened, file, on_start=bar.start, on_progress=bar.advance)
        audit.record_import(opened, result.bundle, result.new_items, result.new_reports)
        click.echo(
            f"Imported {file}: {result.new_items} new item(s) of {result.items}, "
            f"{result.new_reports} new report(s)."
        )
        _check_known_content(opened, pdq_distance, pdq_quality)
    if result.unreadable:
        click.echo(
            f"{result.unreadable} item(s) could not be opened with this analyst's key (sealed to "
            "other keys, or malformed); they are recorded and will be acknowledged."
        )


def _check_known_content(opened: Vault, pdq_distance: int, pdq_quality: int) -> None:
    """Fingerprint the new attachments in the sandbox and check them against the hash lists."""
    from journalist_interface import matching
    from journalist_interface.sandbox import SandboxUnavailable

    try:
        found = matching.after_import(opened, matching.Thresholds(pdq_distance, pdq_quality))
    except SandboxUnavailable as error:
        click.echo(
            f"The attachments were not checked against the hash lists: {error}. The next "
            "import checks them.",
            err=True,
        )
        return
    for match in found:
        click.echo(
            f"Known content: report {match.report_id}, file {match.item_id} is on the list "
            f"{match.list_name} ({match.kind}, distance {match.distance})"
            + (f": {match.label}" if match.label else "")
            + ". Its preview stays hidden until an analyst asks for it."
        )


@workstation.command("replies", short_help="Write a signed reply bundle to carry to the server.")
@_vault_option
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The reply bundle to create; never overwritten.",
)
@_passphrase_option
def replies(vault: Path, out: Path, passphrase_file: Path | None) -> None:
    """Write a reply bundle to FILE: the replies not yet sent, acknowledgements of everything
    imported since the last bundle, and the deletions asked for, signed with the analyst's key.
    What it carries is then marked sent.
    """
    from journalist_interface import audit
    from journalist_interface.replies import make_reply_bundle

    with _open_vault(vault, passphrase_file) as opened:
        try:
            made = make_reply_bundle(opened, out)
        except FileExistsError:
            raise BlaghError(f"{out} already exists; choose another --out") from None
        audit.log(
            opened,
            "reply_bundle",
            bundle=made.id,
            replies=made.replies,
            acknowledged=made.acknowledged,
            deletions=made.deletions,
        )
    click.echo(
        f"Wrote {out}: {made.replies} reply(ies), {made.acknowledged} acknowledgement(s), "
        f"{made.deletions} deletion request(s)."
    )
    click.echo("Carry it to the server, where `blagh import-replies` applies it.")


@workstation.command("serve", short_help="Serve the review app on 127.0.0.1.")
@_vault_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8090, show_default=True, help="Port."
)
@click.option(
    "--purge-closed-after",
    "purge_days",
    type=click.IntRange(0),
    metavar="DAYS",
    help="Purge closed cases DAYS days after closing, once a day while someone is logged in "
    "(each purge is in the audit log).  Default: never.",
)
@click.option(
    "--preview-megapixels",
    type=click.IntRange(1, 250),
    default=40,
    show_default=True,
    help="Images larger than this are not decoded for a preview (16 bits per channel count "
    "twice): the page says they are too large to preview.",
)
@click.option(
    "--unit-config",
    "unit_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A TOML file with the unit's name and contact ([unit]) and the legal references of "
    "each report category ([legal_basis]), for takedown notices (docs/casework.md).",
)
def serve(
    vault: Path,
    port: int,
    purge_days: int | None,
    preview_megapixels: int,
    unit_file: Path | None,
) -> None:
    """Serve the analysts' review app on http://127.0.0.1:PORT/ (waitress).  Log in with the
    analyst's passphrase; the vault stays locked until then.  Stop with Ctrl-C.
    """
    from journalist_interface.config import LOOPBACK, Unit, WorkstationConfig, load_unit
    from journalist_interface.server import serve as run_server
    from journalist_interface.vault import VaultPaths, check_is_vault

    check_is_vault(VaultPaths(vault))
    try:
        unit = load_unit(unit_file) if unit_file else Unit()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    _check_port_free(LOOPBACK, port)
    click.echo(f"Analyst workstation: http://{LOOPBACK}:{port}/  (Ctrl-C stops it)")
    sys.stdout.flush()
    run_server(
        WorkstationConfig(
            vault=vault.absolute(),
            port=port,
            purge_closed_after_days=purge_days,
            preview_megapixels=preview_megapixels,
            unit=unit,
        )
    )


@workstation.command("purge", short_help="Purge closed cases after a retention time.")
@_vault_option
@click.option(
    "--closed-days",
    required=True,
    type=click.IntRange(0),
    metavar="DAYS",
    help="Purge the cases closed at least DAYS days ago.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be purged.")
@_passphrase_option
def purge(vault: Path, closed_days: int, dry_run: bool, passphrase_file: Path | None) -> None:
    """Remove from the vault every case closed at least DAYS days ago: the report, its
    messages, replies, notes, files and their envelopes.  Each purge is written to the audit
    log.  A case whose acknowledgements, replies or deletion request have not left in a reply
    bundle yet is kept until they have (or the next pickup would bring it back).
    """
    from journalist_interface import retention

    with _open_vault(vault, passphrase_file) as opened:
        done = retention.purge(opened, closed_days, dry_run=dry_run)
    verb = "Would purge" if dry_run else "Purged"
    click.echo(f"{verb} {len(done.purged)} closed case(s) and {done.files} file(s).")
    for report_id in done.purged:
        click.echo(f"  {report_id}")
    if done.waiting:
        click.echo(
            f"{len(done.waiting)} case(s) are due but kept until their acknowledgements, replies "
            "or deletion request leave in a reply bundle (blagh workstation replies)."
        )


@workstation.group("audit")
def audit_group() -> None:
    """The vault's audit log: every view, status change, reply, export, deletion and purge,
    append-only and hash-chained."""


@audit_group.command("verify", short_help="Check that no audit entry was edited or removed.")
@_vault_option
@_passphrase_option
def audit_verify(vault: Path, passphrase_file: Path | None) -> None:
    """Check the whole audit chain: every entry's hash, every link to the entry before, no gap,
    and the head kept in the vault's settings.  Prints the head (SEQ:HASH): note it elsewhere
    (on paper, in a case file) to detect later a chain rebuilt by someone holding the key.

    Exits with status 1 when anything is wrong, and says what.
    """
    from journalist_interface import audit

    with _open_vault(vault, passphrase_file) as opened:
        check = audit.verify(opened)
    if not check.ok:
        for problem in check.problems[1:]:
            click.echo(f"  {problem}", err=True)
        raise BlaghError(
            f"the audit log of {vault} is NOT intact: {check.problems[0]}"
            + (
                f" (and {len(check.problems) - 1} more problem(s), listed above)"
                if len(check.problems) > 1
                else ""
            )
        )
    click.echo(f"The audit log of {vault} is intact: {check.entries} entries.")
    click.echo(f"Head: {check.entries}:{check.head}")


@audit_group.command("show", short_help="Print the audit log, one JSON line per entry.")
@_vault_option
@_passphrase_option
@click.option("--report", metavar="ID", help="Only the entries about this report.")
def audit_show(vault: Path, passphrase_file: Path | None, report: str | None) -> None:
    """Print the audit log, oldest first, one line of canonical JSON per entry: seq, at (UTC),
    analyst, event, fields, prev and hash."""
    from journalist_interface import audit

    with _open_vault(vault, passphrase_file) as opened:
        for entry in audit.entries(opened, report=report):
            click.echo(entry.line())


@workstation.group("hashlist")
def hashlist_group() -> None:
    """Lists of known content (SHA-256, MD5 or PDQ hashes) that attachments are checked
    against: format in docs/casework.md, "Known-content matching"."""


@hashlist_group.command("import", short_help="Import a hash list (a new version if it exists).")
@_vault_option
@_passphrase_option
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--signature",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="A detached Ed25519 signature of FILE (64 bytes, raw, hex or base64).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The Ed25519 public key the signature must verify with (hex, base64 or PEM).",
)
@click.option(
    "--bare-64",
    type=click.Choice(["sha256", "pdq"]),
    default="sha256",
    show_default=True,
    help="What an unprefixed 64-digit hash is.",
)
@click.option("--pdq-distance", type=click.IntRange(0, 128), default=31, show_default=True)
@click.option("--pdq-quality", type=click.IntRange(0, 100), default=50, show_default=True)
def hashlist_import(
    vault: Path,
    passphrase_file: Path | None,
    name: str,
    file: Path,
    signature: Path | None,
    key_file: Path | None,
    bare_64: str,
    pdq_distance: int,
    pdq_quality: int,
) -> None:
    """Import the hash list FILE as NAME (a new version when NAME exists: it replaces the
    entries of the previous one), then check every attachment in the vault against it.

    With --signature, the list is imported only if the signature verifies with --key.
    """
    from journalist_interface import matching

    data = file.read_bytes()
    signer = _check_list_signature(data, signature, key_file)
    with _open_vault(vault, passphrase_file) as opened:
        info, found = matching.import_list(
            opened,
            name,
            data,
            signer=signer,
            bare_64=bare_64,
            thresholds=matching.Thresholds(pdq_distance, pdq_quality),
        )
    click.echo(
        f"Imported the list {info.name}, version {info.version}: {info.entries} hash(es)"
        + (f", signed by {signer}." if signer else ", unsigned.")
    )
    files = len({match.item_id for match in found})
    click.echo(
        f"{len(found)} new match(es), on {files} of the files already in the vault"
        + (": their previews are hidden." if files else ".")
    )


def _check_list_signature(data: bytes, signature: Path | None, key_file: Path | None) -> str | None:
    from crypto.keys import ed25519_fingerprint, parse_ed25519_public, verify_detached

    if signature is None and key_file is None:
        return None
    if signature is None or key_file is None:
        raise BlaghError("a signed list needs both --signature FILE and --key FILE")
    try:
        public = parse_ed25519_public(key_file.read_text(encoding="utf-8", errors="replace"))
    except InvalidPublicKey as error:
        raise BlaghError(f"{key_file}: {error}") from None
    raw = signature.read_bytes()
    if len(raw) != 64:
        text = raw.decode("ascii", "replace").strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 128 else base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
    if not verify_detached(public, data, raw):
        raise BlaghError(
            f"the signature {signature} does not verify {key_file.name}'s key over the list: "
            "nothing was imported"
        )
    return ed25519_fingerprint(public)


@hashlist_group.command("list", short_help="List the hash lists and their versions.")
@_vault_option
@_passphrase_option
def hashlist_list(vault: Path, passphrase_file: Path | None) -> None:
    """One line per version: name, version, day imported, entries, signer, state."""
    from journalist_interface import matching

    with _open_vault(vault, passphrase_file) as opened:
        found = matching.lists(opened)
    if not found:
        click.echo("No hash list in this vault.")
    for info in found:
        state = f"removed {info.removed}" if info.removed else "active"
        click.echo(
            f"{info.name}\tv{info.version}\t{info.imported}\t{info.entries} hash(es)\t"
            f"{info.signed_by or 'unsigned'}\t{state}"
        )


@hashlist_group.command("remove", short_help="Remove a hash list (its entries are deleted).")
@_vault_option
@_passphrase_option
@click.argument("name")
def hashlist_remove(vault: Path, passphrase_file: Path | None, name: str) -> None:
    """Delete every entry of the list NAME; its versions stay listed as removed, and the
    matches already found stay on their reports."""
    from journalist_interface import matching

    with _open_vault(vault, passphrase_file) as opened:
        try:
            gone = matching.remove_list(opened, name)
        except matching.HashListError as error:
            raise BlaghError(str(error)) from None
    click.echo(f"Removed the list {name}: {gone} hash(es) deleted.")


@workstation.command("export", short_help="Export a case as a signed evidence zip.")
@_vault_option
@click.option("--report", "report_id", required=True, metavar="ID", help="The report's reference.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The zip to create; never overwritten.",
)
@click.option(
    "--no-clean",
    is_flag=True,
    help="Leave out the copies cleaned of metadata (mat2 is not run).",
)
@_passphrase_option
def export(
    vault: Path, report_id: str, out: Path, no_clean: bool, passphrase_file: Path | None
) -> None:
    """Write the evidence export of one report to FILE: the original envelopes, the decrypted
    files, copies cleaned of metadata by mat2, the report as HTML and JSON, the chain of
    custody from the audit log, and a manifest of every file's SHA-256 signed with the
    analyst's key.  The export is recorded in the audit log.  Check it with
    `blagh verify-evidence FILE`.

    FILE holds the decrypted files: keep it as you would the vault.
    """
    from journalist_interface.evidence import export_case

    with _open_vault(vault, passphrase_file) as opened:
        try:
            made = export_case(opened, report_id.strip().lower(), out, clean=not no_clean)
        except FileExistsError:
            raise BlaghError(f"{out} already exists; choose another --out") from None
        fingerprint = opened.key.public().fingerprint()
    click.echo(f"Wrote {out}: {made.files} file(s), SHA-256 {made.sha256}.")
    if made.not_cleaned:
        click.echo(
            f"{made.not_cleaned} file(s) could not be cleaned of metadata (see the manifest's "
            "not_cleaned): share only the cleaned copies, never the originals."
        )
    click.echo(f"Signed by the analyst key {fingerprint}.")


@click.command("verify-evidence", short_help="Check an evidence export offline.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--analyst-key",
    "analyst_keys",
    multiple=True,
    metavar="LINE",
    help="The exporting analyst's public key line (`blagh key show`): the signature must be "
    "theirs.  Repeat for several.  Without it, compare the fingerprint printed with theirs.",
)
def verify_evidence(file: Path, analyst_keys: tuple[str, ...]) -> None:
    """Check the evidence export FILE, offline: the Ed25519 signature of its manifest, that it
    holds exactly the files the manifest lists (no path that could leave a folder), and the
    size and SHA-256 of every one.  Exits with status 1, saying what failed, if anything does.
    """
    from crypto.keys import AnalystPublicKey
    from journalist_interface.evidence import verify

    trusted = []
    for line in analyst_keys:
        try:
            trusted.append(AnalystPublicKey.from_line(line))
        except InvalidPublicKey as error:
            raise click.BadParameter(
                f"{error}; copy the whole line that `blagh keygen` printed",
                param_hint="--analyst-key",
            ) from None
    checked = verify(file, trusted)
    manifest = checked.manifest
    click.echo(
        f"{file}: the evidence export is intact: {checked.files} file(s) match the manifest."
    )
    click.echo(f"Report:      {manifest.get('report')}")
    click.echo(f"Exported:    {manifest.get('exported_at')} by {manifest.get('exported_by')}")
    click.echo(f"Signed by:   analyst key {checked.signer.fingerprint()}")
    if not trusted:
        click.echo("Compare this fingerprint with the analyst's by a separate channel, or pass")
        click.echo("--analyst-key LINE to require their key.")


# --- analysts' accounts, for an admin -----------------------------------------------------------


@workstation.group("analyst")
def analyst_group() -> None:
    """Analysts' accounts on this vault (an admin's commands; each goes in the audit log).

    
    blagh workstation analyst add --vault DIR --name NAME --key-file FILE
    blagh workstation analyst remove --vault DIR NAME
    blagh workstation analyst reset-totp --vault DIR NAME   (a lost phone)
    """


@analyst_group.command("add", short_help="Give a new analyst an account and access.")
@_vault_option
@_passphrase_option
@click.option("--name", required=True, metavar="NAME", help="The new analyst's account name.")
@click.option(
    "--key-file",
    "new_key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The new analyst's key file (`blagh keygen`, made on this workstation).",
)
@click.option(
    "--role", type=click.Choice(("analyst", "admin")), default="analyst", show_default=True
)
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The new analyst's passphrase, instead of asking them to type it.",
)
def analyst_add(
    vault: Path,
    passphrase_file: Path | None,
    name: str,
    new_key_file: Path,
    role: str,
    new_passphrase_file: Path | None,
) -> None:
    """Give the analyst NAME an account: the vault's key is sealed to their key file, which
    they unlock with their own passphrase (asked after yours: it proves the file is theirs)."""
    from journalist_interface import accounts

    data = new_key_file.read_bytes()
    if len(data) > 4096:
        raise BlaghError(f"{new_key_file} is not an analyst key file (too large)")
    with _admin_vault(vault, passphrase_file) as opened:
        if new_passphrase_file is not None:
            new_passphrase = _passphrase(new_passphrase_file)
        else:
            new_passphrase = click.prompt(
                f"Passphrase of {name}'s key file", hide_input=True, err=True
            )
        try:
            added = accounts.add_analyst(opened, name, role, data, new_passphrase)
        except accounts.AccountError as error:
            raise BlaghError(f"{error}; nothing was changed") from None
    click.echo(f"Added the {added.role} {added.name} (key fingerprint {added.fingerprint}).")
    click.echo("Also add their public key line to [recipients] analysts in the server's config")
    click.echo("(`blagh key show --key-file FILE` prints it), or they read no new report.")


@analyst_group.command("remove", short_help="Take an analyst's access away.")
@_vault_option
@_passphrase_option
@click.argument("name")
def analyst_remove(vault: Path, passphrase_file: Path | None, name: str) -> None:
    """Take NAME off the vault: their key opens it no more (the database gets a new key).
    Their name stays in the history; it is not reused."""
    from journalist_interface import accounts

    with _admin_vault(vault, passphrase_file) as opened:
        try:
            accounts.remove_analyst(opened, name)
        except accounts.AccountError as error:
            raise BlaghError(f"{error}; nothing was changed") from None
    click.echo(f"Removed {name}: their key no longer opens this vault.")
    click.echo("Remove their public key line from [recipients] analysts in the server's config")
    click.echo("too, or new reports stay readable with their key.")


@analyst_group.command("reset-totp", short_help="Turn off an analyst's login code (lost phone).")
@_vault_option
@_passphrase_option
@click.argument("name")
def analyst_reset_totp(vault: Path, passphrase_file: Path | None, name: str) -> None:
    """Turn off the TOTP code at login of NAME, who lost their phone: their key file and
    passphrase log them in again, and they set up a new code from their account page."""
    from journalist_interface import accounts

    with _admin_vault(vault, passphrase_file) as opened:
        try:
            accounts.totp_reset(opened, name)
        except accounts.AccountError as error:
            raise BlaghError(f"{error}; see the names in the app's Analysts page") from None
    click.echo(f"Turned off the login code of {name}. Ask them to set up a new one at once")
    click.echo("(Your account, in the app), with the authenticator app on their new phone.")


class _admin_vault:
    """The vault, opened by an analyst who must be an admin of it."""

    def __init__(self, path: Path, passphrase_file: Path | None) -> None:
        self._vault = _open_vault(path, passphrase_file)

    def __enter__(self) -> Vault:
        from journalist_interface import accounts

        found = accounts.account(self._vault, self._vault.analyst)
        if found is None or not found.admin:
            self._vault.close()
            raise BlaghError(
                f"{self._vault.analyst} is not an admin of this vault: only an admin adds or "
                "removes analysts or resets a login code; give an admin's --analyst"
            )
        return self._vault

    def __exit__(self, *exc: object) -> None:
        self._vault.close()


def _open_vault(path: Path, passphrase_file: Path | None) -> Vault:
    """The vault at ``path``, opened with the passphrase of ``--analyst`` (or of its maker)."""
    from journalist_interface.vault import Vault

    analyst = click.get_current_context().meta.get(_ANALYST, "")
    return Vault.open(path, _passphrase(passphrase_file), analyst)


def _passphrase(file: Path | None) -> str:
    if file is not None:
        return read_passphrase_file(file)
    passphrase: str = click.prompt("Passphrase", hide_input=True, err=True)
    return passphrase


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise BlaghError(
                    f"port {port} on {host} is already in use; stop the program using it, or "
                    "choose another --port"
                ) from None
            raise


class _ProgressBar:
    """A progress bar on stderr for an import, started once the total is known."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        if total > 0:
            self._bar = click.progressbar(
                length=total, label="Decrypting", file=sys.stderr, show_percent=True
            )
            self._bar.__enter__()

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)
