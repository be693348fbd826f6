"""``blagh`` commands of the air-gapped loop, server side, and of the server's store.

On the server: ``serve-pickup`` (the pickup API under gunicorn), ``pickup-token`` (the
transfer stations' bearer tokens), ``export-bundle`` and ``import-replies`` (bundles on
removable media), ``purge`` (retention), ``store migrate``.  The transfer station's side,
``pickup`` and ``deliver``, is in transfer.py.  Registered on the top-level group by
blagh/cli/__init__.py, whose wrapper turns every :class:`BlaghError` into one line.
Docs: docs/pickup.md, docs/bundles.md.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from blagh.cli.common import (
    DATA_DIR_OPTION,
    load_data_dir,
    progress,
)
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from blagh.files import write_new_file

if TYPE_CHECKING:
    from source_interface.store.protocol import ServerStore


@contextmanager
def _store(directory: DataDir) -> Iterator[ServerStore]:
    from source_interface.app import open_store

    store = open_store(directory)
    try:
        yield store
    finally:
        store.close()


@click.command("serve-pickup", short_help="Serve the pickup API (gunicorn) for transfer stations.")
@DATA_DIR_OPTION
@click.option("--host", metavar="HOST", help="Address to listen on (default: the source's).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [pickup] listen_port).")
def serve_pickup(data_dir: Path, host: str | None, port: int | None) -> None:
    """Serve the pickup API under gunicorn, on loopback by default ([source_interface]
    listen_host, [pickup] listen_port), for `blagh serve` to publish as the client-authorised
    onion service.  Every request needs a transfer station's token (blagh pickup-token add).

    Stop with Ctrl-C.
    """
    from source_interface.pickup.server import serve_pickup as run

    _directory, config = load_data_dir(data_dir)
    if not config.pickup.enabled:
        raise BlaghError(
            "[pickup] enabled is false in the config: set it to true to serve the pickup API "
            "(or carry bundles by hand with export-bundle and import-replies)"
        )
    host = host or config.source_interface.listen_host
    port = port or config.pickup.listen_port
    _check_port_free(host, port)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    click.echo(f"Pickup API: http://{where}/  (Ctrl-C stops it)")
    sys.stdout.flush()
    run(config, host, port)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror:
            raise BlaghError(f"{host} is not an address; check --host") from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise BlaghError(
                    f"port {port} on {host} is already in use; stop the program using it, or "
                    "choose another port (--port, or [pickup] listen_port)"
                ) from None
            raise BlaghError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@click.group("pickup-token")
def pickup_token() -> None:
    """Transfer stations' tokens for the pickup API (only their hashes are kept)."""


@pickup_token.command("add")
@DATA_DIR_OPTION
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the token to this new file (mode 0600) instead of printing it.",
)
def pickup_token_add(data_dir: Path, name: str, out: Path | None) -> None:
    """Make a token for the transfer station NAME (e.g. station-1), shown only once."""
    from blagh.pickup_tokens import check_name, new_token, token_hash

    check_name(name)
    directory, _config = load_data_dir(data_dir)
    if out is not None and os.path.lexists(out):
        raise BlaghError(f"{out} already exists; choose another --out")
    token = new_token()
    with _store(directory) as store:
        if not store.add_pickup_token(name, token_hash(token)):
            raise BlaghError(
                f"a token named {name} exists already; remove it first "
                f"(blagh pickup-token remove) or choose another name"
            )
        if out is not None:
            try:
                write_new_file(out, (token + "\n").encode("ascii"))
            except BaseException:
                store.remove_pickup_token(name)
                raise
    if out is not None:
        click.echo(f"Made the token {name}; it is in {out} (mode 0600).")
    else:
        click.echo(f"Made the token {name}. Shown only this once:")
        click.echo()
        click.echo(token)
        click.echo()
    click.echo("On the transfer station, keep it in a file only its user can read (chmod 600)")
    click.echo("and give that file to `blagh pickup --token` and `blagh deliver --token`.")


@pickup_token.command("remove")
@DATA_DIR_OPTION
@click.argument("name")
def pickup_token_remove(data_dir: Path, name: str) -> None:
    """Revoke the token of the transfer station NAME, at once."""
    directory, _config = load_data_dir(data_dir)
    with _store(directory) as store:
        if not store.remove_pickup_token(name):
            raise BlaghError(f"there is no token named {name}; see blagh pickup-token list")
    click.echo(f"Removed the token {name}.")


@pickup_token.command("list")
@DATA_DIR_OPTION
def pickup_token_list(data_dir: Path) -> None:
    """List the tokens by name, with the day each was made."""
    directory, _config = load_data_dir(data_dir)
    with _store(directory) as store:
        tokens = store.pickup_tokens()
    if not tokens:
        click.echo("No token: add one with `blagh pickup-token add NAME`.")
    for name, day in tokens:
        click.echo(f"{name}  made {day}")


@click.command("export-bundle", short_help="Write the pickup bundle to a file (removable media).")
@DATA_DIR_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The bundle file to create; never overwritten.",
)
def export_bundle(data_dir: Path, out: Path) -> None:
    """Write the pickup bundle of every item the workstation has not acknowledged yet: the
    same file the pickup API serves.  Items stay in every bundle until a reply bundle
    acknowledges them, so exporting again is harmless."""
    from source_interface.pickup.bundles import PickupBundles, copy_to_new_file

    directory, config = load_data_dir(data_dir)
    _check_new_file(out)
    with _store(directory) as store:
        store.purge(config.retention.delivered_days)
        bundles = PickupBundles(
            store, config.recipients.analysts, directory.read_server_signing_key()
        )
        bundle = bundles.open_current()
        with bundle.file:
            total = os.fstat(bundle.file.fileno()).st_size
            update, end = progress("Writing the bundle")
            try:
                size = copy_to_new_file(bundle.file, out, total, update)
            except FileExistsError:
                raise BlaghError(f"{out} already exists; choose another --out") from None
            finally:
                end()
    items = "1 item" if bundle.items == 1 else f"{bundle.items} items"
    click.echo(f"Wrote {out}: {items}, {size} bytes (bundle {bundle.bundle_id}).")


def _check_new_file(out: Path) -> None:
    """Refuse, in words, an --out that cannot become a new file: before any work is done."""
    if os.path.lexists(out):
        raise BlaghError(f"{out} already exists; choose another --out")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise BlaghError(f"{parent} is not a directory; create it or choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BlaghError(
            f"cannot write in {parent}: permission denied; choose another --out, or check the "
            "folder's owner and permissions"
        )


@click.command("import-replies", short_help="Apply a reply bundle from the workstation.")
@DATA_DIR_OPTION
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_replies(data_dir: Path, file: Path) -> None:
    """Verify the reply bundle FILE whole (an analyst's signature from the config, every
    hash), then store its replies, mark what it acknowledges as delivered and delete the
    reports it asks to.  A bundle that fails any check changes nothing; one applied before is
    refused."""
    from source_interface.pickup.bundles import import_reply_bundle

    directory, config = load_data_dir(data_dir)
    update, end = progress("Checking the bundle")
    try:
        with _store(directory) as store:
            result = import_reply_bundle(
                store,
                config.recipients.analysts,
                file,
                delivered_days=config.retention.delivered_days,
                progress=update,
            )
    finally:
        end()
    click.echo(result.summary() + ".")


@click.command("purge", short_help="Delete delivered ciphertext past [retention].")
@DATA_DIR_OPTION
def purge(data_dir: Path) -> None:
    """Delete the ciphertext the workstation acknowledged [retention] delivered_days ago or
    more, and what is left with nothing.  Imports and the pickup API do it too; run it daily
    (a systemd timer) when bundles travel rarely."""
    directory, config = load_data_dir(data_dir)
    with _store(directory) as store:
        purged = store.purge(config.retention.delivered_days)
    click.echo(
        f"Removed {purged.items} delivered item(s), {purged.reports} report(s) and "
        f"{purged.sources} source(s) with nothing left."
    )


@click.group()
def store() -> None:
    """The server store's backends (docs/scale.md)."""


@store.command("migrate")
@DATA_DIR_OPTION
@click.option(
    "--dsn",
    required=True,
    envvar="BLAGH_STORE_DSN",
    metavar="DSN",
    help="The empty PostgreSQL database, a libpq connection string (or BLAGH_STORE_DSN, "
    "which keeps a password out of the process list).",
)
def store_migrate(data_dir: Path, dsn: str) -> None:
    """Copy this data folder's SQLCipher store into an empty PostgreSQL database and check
    every envelope; then set [store] backend = "postgresql".  Stop Blagh first."""
    from source_interface.store.migrate import migrate

    directory, _config = load_data_dir(data_dir)
    done = migrate(directory.path / "store", bytes.fromhex(directory.read_db_key()), dsn)
    rows = ", ".join(f"{count} {table}" for table, count in done.rows.items())
    click.echo(f"Copied {rows}; {done.envelopes} envelopes ({done.bytes} bytes), each checked.")
    click.echo('Now set [store] backend = "postgresql" and dsn in config.toml, then start Blagh.')
