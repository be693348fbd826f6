"""The transfer station's commands: ``blagh pickup`` and ``blagh deliver``, over tor, carrying
signed bundles only (docs/pickup.md)."""

from __future__ import annotations

from pathlib import Path

import click

from blagh.cli.common import (
    progress,
)
from blagh.errors import BlaghError
from crypto.errors import InvalidPublicKey
from crypto.keys import (
    ServerVerifyKey,
)

_URL = click.option(
    "--url",
    required=True,
    metavar="URL",
    help="The pickup API: http://<address>.onion/ (or http://127.0.0.1:PORT/ on the server).",
)


_TOKEN = click.option(
    "--token",
    "token_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="File (mode 0600) holding this station's token, from `blagh pickup-token add`.",
)


_SOCKS = click.option(
    "--socks",
    metavar="HOST:PORT",
    help="tor's SOCKS port (default for onion addresses: 127.0.0.1:9050).",
)


_CLIENT_KEY = click.option(
    "--client-key",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The onion client key line from `blagh onion client add`: checked to belong to "
    "--url; tor itself reads it from its ClientOnionAuthDir.",
)


def _token(path: Path) -> str:
    from blagh.pickup_tokens import parse_token
    from transfer.client import read_secret_file

    return parse_token(read_secret_file(path, "the token"), str(path))


@click.command("pickup", short_help="Transfer station: download the pickup bundle over tor.")
@_URL
@_CLIENT_KEY
@_TOKEN
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Directory for the bundle (e.g. removable media).",
)
@_SOCKS
@click.option(
    "--server-key",
    metavar="LINE",
    help="The server's public key line (blagh init printed it): check the bundle's signature "
    "against it, not only its integrity.",
)
def pickup(
    url: str,
    client_key: Path | None,
    token_file: Path,
    out: Path,
    socks: str | None,
    server_key: str | None,
) -> None:
    """Download the pickup bundle into DIR through tor, resuming an interrupted download.

    The bundle appears as DIR/pickup-<id>.bundle only once complete and verified (signature
    and every hash); until then the bytes received stay in DIR/.pickup.partial and the same
    command resumes.  Carry the bundle to the workstation: `blagh workstation import`.
    """
    from transfer.client import check_client_key, download_bundle, endpoint

    where = endpoint(url, socks)
    if client_key is not None:
        check_client_key(client_key, where)
    pinned = None
    if server_key is not None:
        try:
            pinned = ServerVerifyKey.from_line(server_key).verify
        except InvalidPublicKey as error:
            raise BlaghError(f"--server-key: {error}") from None
    token = _token(token_file)
    update, end = progress("Downloading")
    try:
        result = download_bundle(where, token, out, server_key=pinned, progress=update)
    finally:
        end()
    items = "1 item" if result.items == 1 else f"{result.items} items"
    if result.already_there:
        click.echo(f"Already downloaded: {result.path} ({items}); nothing new since.")
        return
    resumed = f", resumed at byte {result.resumed_from}" if result.resumed_from else ""
    click.echo(f"Downloaded {result.path}: {items}, {result.size} bytes{resumed}; verified.")


@click.command("deliver", short_help="Transfer station: upload a reply bundle over tor.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_URL
@_CLIENT_KEY
@_TOKEN
@_SOCKS
def deliver(
    file: Path, url: str, client_key: Path | None, token_file: Path, socks: str | None
) -> None:
    """Upload the reply bundle FILE (made on the workstation) to the pickup API, which
    verifies and applies it, and print what the server did."""
    from transfer.client import check_client_key, deliver_bundle, endpoint

    where = endpoint(url, socks)
    if client_key is not None:
        check_client_key(client_key, where)
    token = _token(token_file)
    update, end = progress("Uploading")
    try:
        summary = deliver_bundle(where, token, file, progress=update)
    finally:
        end()
    click.echo(f"Delivered {file}: {summary.get('summary', 'applied')}.")
