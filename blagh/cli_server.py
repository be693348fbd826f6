"""``blagh`` commands of the air-gapped loop, server and transfer-station side.

On the server: ``serve-pickup`` (the pickup API under gunicorn), ``pickup-token`` (the
transfer stations' bearer tokens), ``export-bundle`` and ``import-replies`` (bundles on
removable media), ``purge`` (retention).  On the transfer station, which holds no key:
``pickup`` and ``deliver``.  Registered on the top-level group by blagh/cli.py, whose wrapper
turns every :class:`BlaghError` into one line.  Docs: docs/pickup.md, docs/bundles.md.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from blagh.config import Config
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from blagh.files import write_new_file
from crypto.errors import InvalidPublicKey
from crypto.keys import ServerVerifyKey

if TYPE_CHECKING:
    from source_interface.store.protocol import ServerStore

_DATA_DIR = click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The data directory made by `blagh init`; its config.toml is used.",
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


def _load(data_dir: Path) -> tuple[DataDir, Config]:
    # blagh.cli imports this module, so its helper is imported when called, not at import.
    from blagh.cli import _load_data_dir

    return _load_data_dir(data_dir)


@contextmanager
def _store(directory: DataDir) -> Iterator[ServerStore]:
    from source_interface.app import open_store

    store = open_store(directory)
    try:
        yield store
    finally:
        store.close()


# --- server ------------------------------------------------------------------------------------


@click.command("serve-pickup", short_help="Serve the pickup API (gunicorn) for transfer stations.")
@_DATA_DIR
@click.option("--host", metavar="HOST", help="Address to listen on (default: the source's).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [pickup] listen_port).")
def serve_pickup(data_dir: Path, host: str | None, port: int | None) -> None:
    """Serve the pickup API under gunicorn, on loopback by default ([source_interface]
    listen_host, [pickup] listen_port), for `blagh serve` to publish as the client-authorised
    onion service.  Every request needs a transfer station's token (blagh pickup-token add).

    Stop with Ctrl-C.
    """
    from source_interface.pickup.server import serve_pickup as run

    _directory, config = _load(data_dir)
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
@_DATA_DIR
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the token to this new file (mode 0600) instead of printing it.",
)
def pickup_token_add(data_dir: Path, name: str, out: Path | None) -> None:
    """Make a token for the transfer station NAME (e.g. station-1), shown only once."""
    from source_interface.pickup.tokens import check_name, new_token, token_hash

    check_name(name)
    directory, _config = _load(data_dir)
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
@_DATA_DIR
@click.argument("name")
def pickup_token_remove(data_dir: Path, name: str) -> None:
    """Revoke the token of the transfer station NAME, at once."""
    directory, _config = _load(data_dir)
    with _store(directory) as store:
        if not store.remove_pickup_token(name):
            raise BlaghError(f"there is no token named {name}; see blagh pickup-token list")
    click.echo(f"Removed the token {name}.")


@pickup_token.command("list")
@_DATA_DIR
def pickup_token_list(data_dir: Path) -> None:
    """List the tokens by name, with the day each was made."""
    directory, _config = _load(data_dir)
    with _store(directory) as store:
        tokens = store.pickup_tokens()
    if not tokens:
        click.echo("No token: add one with `blagh pickup-token add NAME`.")
    for name, day in tokens:
        click.echo(f"{name}  made {day}")


@click.command("export-bundle", short_help="Write the pickup bundle to a file (removable media).")
@_DATA_DIR
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

    directory, config = _load(data_dir)
    _check_new_file(out)
    with _store(directory) as store:
        store.purge(config.retention.delivered_days)
        bundles = PickupBundles(
            store, config.recipients.analysts, directory.read_server_signing_key()
        )
        bundle = bundles.open_current()
        with bundle.file:
            total = os.fstat(bundle.file.fileno()).st_size
            update, end = _progress("Writing the bundle")
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
@_DATA_DIR
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_replies(data_dir: Path, file: Path) -> None:
    """Verify the reply bundle FILE whole (an analyst's signature from the config, every
    hash), then store its replies, mark what it acknowledges as delivered and delete the
    reports it asks to.  A bundle that fails any check changes nothing; one applied before is
    refused."""
    from source_interface.pickup.bundles import import_reply_bundle

    directory, config = _load(data_dir)
    update, end = _progress("Checking the bundle")
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
@_DATA_DIR
def purge(data_dir: Path) -> None:
    """Delete the ciphertext the workstation acknowledged [retention] delivered_days ago or
    more, and what is left with nothing.  Imports and the pickup API do it too; run it daily
    (a systemd timer) when bundles travel rarely."""
    directory, config = _load(data_dir)
    with _store(directory) as store:
        purged = store.purge(config.retention.delivered_days)
    click.echo(
        f"Removed {purged.items} delivered item(s), {purged.reports} report(s) and "
        f"{purged.sources} source(s) with nothing left."
    )


# --- transfer station ------------------------------------------------------------------------


def _progress(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A progress bar on stderr (shown on a terminal only), and a function that ends it."""
    bar: Any = None
    shown = 0

    def update(done: int, total: int) -> None:
        nonlocal bar, shown
        if bar is None:
            bar = click.progressbar(
                length=max(total, 1), label=label, file=sys.stderr, show_pos=False
            )
            bar.__enter__()
            shown = 0
            bar.update(done)
            shown = done
        if done > shown:
            bar.update(done - shown)
            shown = done

    def end() -> None:
        if bar is not None:
            bar.__exit__(None, None, None)

    return update, end


def _token(path: Path) -> str:
    from source_interface.pickup.client import read_secret_file
    from source_interface.pickup.tokens import parse_token

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
    from source_interface.pickup.client import check_client_key, download_bundle, endpoint

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
    update, end = _progress("Downloading")
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
    from source_interface.pickup.client import check_client_key, deliver_bundle, endpoint

    where = endpoint(url, socks)
    if client_key is not None:
        check_client_key(client_key, where)
    token = _token(token_file)
    update, end = _progress("Uploading")
    try:
        summary = deliver_bundle(where, token, file, progress=update)
    finally:
        end()
    click.echo(f"Delivered {file}: {summary.get('summary', 'applied')}.")


@click.group()
def store() -> None:
    """The server store's backends (docs/scale.md)."""


@store.command("migrate")
@_DATA_DIR
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

    directory, _config = _load(data_dir)
    done = migrate(directory.path / "store", bytes.fromhex(directory.read_db_key()), dsn)
    rows = ", ".join(f"{count} {table}" for table, count in done.rows.items())
    click.echo(f"Copied {rows}; {done.envelopes} envelopes ({done.bytes} bytes), each checked.")
    click.echo('Now set [store] backend = "postgresql" and dsn in config.toml, then start Blagh.')
