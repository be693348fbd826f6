"""``blagh keygen`` and ``blagh key show``: an analyst's key file, made on the workstation."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import click

from blagh.cli.common import (
    FROM_FILE_HELP,
    path_option,
    read_passphrase_file,
)
from blagh.errors import BlaghError
from blagh.files import write_new_file
from crypto.errors import KeyFileError
from crypto.keys import (
    generate_analyst_key,
    key_file_public,
    open_key_file,
    seal_key_file,
)


@click.command()
@path_option("--out", "Key file to create, with mode 0600; never overwritten.", required=True)
@path_option("--passphrase-file", FROM_FILE_HELP)
def keygen(out: Path, passphrase_file: Path | None) -> None:
    """Make an analyst's keys, in a key file protected by a passphrase.

    Run it on the analyst's workstation.  It prints the public key line for the server's config
    ([recipients] analysts) and its fingerprint, to compare with the operator.
    """
    exists = f"{out} already exists; keygen will not overwrite a key file. Choose another --out."
    if os.path.lexists(out):
        raise BlaghError(exists)
    if not out.absolute().parent.is_dir():
        raise BlaghError(f"{out.parent} is not a directory; create it or choose another --out")
    if passphrase_file is not None:
        passphrase = read_passphrase_file(passphrase_file)
        if not _strong_enough(passphrase):
            raise BlaghError(f"{passphrase_file}: {_WEAK_PASSPHRASE}")
    else:
        while True:
            passphrase = click.prompt(
                "Passphrase for the new key file",
                hide_input=True,
                confirmation_prompt="Repeat the passphrase",
                err=True,
            )
            if _strong_enough(passphrase):
                break
            click.echo(f"Error: {_WEAK_PASSPHRASE}", err=True)
    key = generate_analyst_key()
    try:
        write_new_file(out, seal_key_file(key, passphrase))
    except FileExistsError:
        raise BlaghError(exists) from None
    public = key.public()
    click.echo(f"Wrote the analyst key file {out} (mode 0600).")
    click.echo()
    click.echo("Public key line:")
    click.echo(public.to_line())
    click.echo(f"Fingerprint: {public.fingerprint()}")
    click.echo()
    click.echo("Give the public key line to the server's operator, to add to [recipients]")
    click.echo("analysts in the server config; compare the fingerprint with them by a separate")
    click.echo("channel.  Keep the key file and its passphrase on this workstation only.")


MIN_PASSPHRASE_CHARACTERS = 12
"""The shortest analyst key passphrase ``keygen`` accepts.  The key file is attacked offline
(docs/keys.md): a short password falls to a search, a few random words do not."""


_WEAK_PASSPHRASE = (
    f"the passphrase is too short: use at least {MIN_PASSPHRASE_CHARACTERS} characters, "
    "best a few random words (e.g. five or six diceware words)"
)


def _strong_enough(passphrase: str) -> bool:
    return len(unicodedata.normalize("NFC", passphrase).strip()) >= MIN_PASSPHRASE_CHARACTERS


@click.group()
def key() -> None:
    """Inspect analyst key files."""


@key.command("show")
@path_option("--key-file", "The analyst key file that `blagh keygen` wrote.", required=True)
@path_option("--passphrase-file", FROM_FILE_HELP)
def key_show(key_file: Path, passphrase_file: Path | None) -> None:
    """Print the public key line and fingerprint of an analyst key file.

    No passphrase is needed: the file carries its public keys in clear.  With
    --passphrase-file the file is opened too, which proves the public part belongs to its
    secret keys (and that the passphrase is right).  A key file made before that (version 1)
    has no public part: then the passphrase is asked for.
    """
    data = key_file.read_bytes()
    try:
        public = key_file_public(data)
    except KeyFileError as error:
        raise BlaghError(f"{key_file}: {error}; check the path (--key-file)") from None
    if public is None or passphrase_file is not None:
        if passphrase_file is not None:
            passphrase = read_passphrase_file(passphrase_file)
        else:
            passphrase = click.prompt("Passphrase", hide_input=True, err=True)
        try:
            public = open_key_file(data, passphrase).public()
        except KeyFileError:
            raise BlaghError(
                f"could not open {key_file}: wrong passphrase or damaged key file"
            ) from None
    click.echo(public.to_line())
    click.echo(f"Fingerprint: {public.fingerprint()}")
