"""The server operator's commands: ``blagh init``, ``serve``, ``onion client``, ``config check``.

Each failure is one line (blagh.cli.common); ``blagh status`` and the data commands have modules
of their own (status.py, server_data.py)."""

from __future__ import annotations

import errno
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click

from blagh.cli.balance import balance
from blagh.cli.common import (
    DATA_DIR_OPTION,
    host_port,
    load_data_dir,
    path_option,
)
from blagh.cli.status import serving
from blagh.config import MAX_RECIPIENTS, Config, is_loopback, read_config_file
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from blagh.files import write_new_file
from crypto.errors import InvalidPublicKey
from crypto.keys import (
    AnalystPublicKey,
)


class _AnalystLine(click.ParamType[AnalystPublicKey, str]):
    """An analyst's public key line, parsed as soon as the command line is read."""

    name = "line"

    def convert(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> AnalystPublicKey:
        try:
            return AnalystPublicKey.from_line(value)
        except InvalidPublicKey as error:
            self.fail(f"{error}; copy the whole line that `blagh keygen` printed", param, ctx)


@click.command(short_help="Create a server's data directory: keys and config.")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Directory to create for the server's keys, database and config.",
)
@click.option(
    "--analyst-key-line",
    "analysts",
    type=_AnalystLine(),
    multiple=True,
    metavar="LINE",
    help="An analyst's public key line, as `blagh keygen` printed it. "
    "Repeat for each analyst; lines can also be added to the config later.",
)
def init(data_dir: Path, analysts: Sequence[AnalystPublicKey]) -> None:
    """Create a server's data directory, with fresh keys and a config to review.

    \b
    DIR gets mode 0700, and each file in it mode 0600:
      db.key              the database (SQLCipher) key
      instance.salt       the salt codenames are derived with
      login-hash.key      the key of the codename login verifiers
      server-signing.key  signs the bundles analysts pick up
      config.toml         the configuration, to review

    An existing DIR must be empty: init never overwrites keys.
    """
    if len(analysts) > MAX_RECIPIENTS:
        raise BlaghError(
            f"{len(analysts)} --analyst-key-line options given; reports can be sealed to at "
            f"most {MAX_RECIPIENTS} analysts"
        )
    for number, key in enumerate(analysts):
        if analysts.index(key) != number:
            raise BlaghError(
                f"the same --analyst-key-line is given twice (fingerprint {key.fingerprint()})"
            )
    directory = DataDir(data_dir)
    server_key = directory.create(analysts)
    config_path = shlex.quote(str(directory.config_file))
    echo = click.echo
    echo(f"Created {directory.path} (mode 0700).")
    echo()
    echo("Server public key line, for the analysts' workstations:")
    echo(server_key.to_line())
    echo(f"Fingerprint: {server_key.fingerprint()}")
    echo()
    echo("Next steps:")
    step = 1
    if not analysts:
        echo(f"  {step}. On each analyst's workstation run `blagh keygen --out FILE`, and add the")
        echo(f"     public key line it prints to [recipients] analysts in {config_path}.")
        step += 1
    echo(f"  {step}. Review {config_path}, then run `blagh config check {config_path}`.")
    echo(f"  {step + 1}. Give the server public key line to each analyst, and compare its")
    echo("     fingerprint with them by a separate channel (in person, by phone).")


_TOR_MODES = ("launch", "attach", "offline", "off")


@click.command(short_help="Serve the reporters' web app (gunicorn) and publish it over tor.")
@DATA_DIR_OPTION
@click.option("--host", metavar="HOST", help="Address to listen on (default: from the config).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: from the config).")
@click.option(
    "--tor",
    "tor_mode",
    type=click.Choice(_TOR_MODES),
    help="How to publish the onion service, instead of [tor] mode: offline starts tor with its "
    "network disabled (the address is made, nothing is published); off serves without tor.",
)
def serve(data_dir: Path, host: str | None, port: int | None, tor_mode: str | None) -> None:
    """Serve the source interface under gunicorn, on loopback by default, and publish it as an
    onion service as [tor] mode says (docs/onion.md).

    The onion address and the local address are printed once the service is created.  Stop
    with Ctrl-C: the onion services are removed and a tor that blagh started stops too.
    """
    from source_interface.app import open_store

    directory, config = load_data_dir(data_dir)
    site = config.source_interface
    host = host or site.listen_host
    port = port or site.listen_port
    mode = tor_mode or config.tor.mode
    with serving(directory, config, mode, host, port):  # one server per data folder
        # An index this version cannot open, or a database out of reach: one line, before tor.
        open_store(directory, config.store).close()
        _serve(directory, config, mode, host, port)


def _serve(directory: DataDir, config: Config, mode: str, host: str, port: int) -> None:
    from onion.service import OnionServices
    from source_interface.server import serve as run_server

    tor = config.tor
    if mode == "attach" and tor.control_socket is None and tor.control_port is None:
        raise BlaghError(
            "--tor attach needs [tor] control_socket or control_port in the config: where the "
            "running tor's control interface is"
        )
    if not is_loopback(host):
        raise BlaghError(
            f"--host {host} is not a loopback address: the source interface listens on this "
            "machine only (127.0.0.1, ::1 or localhost); for an HTTPS address see [clearnet] "
            "in docs/clearnet.md"
        )
    _check_port_free(host, port)
    clearnet = config.clearnet
    if clearnet.enabled and clearnet.port is not None:
        _check_port_free(clearnet.listen.rpartition(":")[0].strip("[]"), clearnet.port)
    local = f"http://{host_port(host, port)}/"
    if mode == "off":
        click.echo(f"Source interface: {local}  (no onion service: tor mode off)")
        _say_clearnet(config)
        run_server(config, host, port)
        return
    _log_to_stderr()
    # Until gunicorn installs its own handlers, a stop request unwinds through the finally
    # below, so the onion services are removed and tor stopped even then.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_cleanly)
    pickup = host_port(host, config.pickup.listen_port) if config.pickup.enabled else None
    services = OnionServices(
        tor, directory, mode=mode, source_target=host_port(host, port), pickup_target=pickup
    )
    try:
        status = services.start()
        for service in status.services:
            name = "Onion service" if service.role == "source" else "Pickup onion service"
            if not status.network:
                state = "tor's network is disabled: created, not published"
            elif service.role == "source":
                state = f"proof-of-work defence {'on' if status.pow.enabled else 'off'}"
            else:
                state = f"{service.clients} authorised client(s)"
            click.echo(f"{name}: {service.url}  ({state})")
            if service.role == "source" and clearnet.enabled and not clearnet.onion_address:
                # Onion-Location on the clearnet site points to this address.
                address = f"{service.address}.onion"
                config = replace(config, clearnet=replace(clearnet, onion_address=address))
        click.echo(f"Source interface: {local}  (Ctrl-C stops it)", nl=True)
        _say_clearnet(config)
        sys.stdout.flush()
        run_server(config, host, port)
    finally:
        services.stop()


@click.group("onion")
def onion_group() -> None:
    """Onion services: who may reach the pickup service; several servers behind one address."""


onion_group.add_command(balance)


@onion_group.group("client")
def onion_client() -> None:
    """Transfer stations authorised on the pickup onion service (Tor client authorisation)."""


@onion_client.command("add")
@DATA_DIR_OPTION
@click.argument("name")
@path_option(
    "--out", "Write the client's key line to this new file (mode 0600) instead of printing it."
)
def onion_client_add(data_dir: Path, name: str, out: Path | None) -> None:
    """Authorise a new client NAME (e.g. station-1) on the pickup service, and give its key.

    The key line is shown once (or written to --out): the server keeps only its public half.
    A running server publishes the service again at once with the new client.
    """
    from onion.clients import add_client
    from onion.keys import load_or_create_key, make_private_directory
    from onion.service import republish_pickup

    directory, config = load_data_dir(data_dir)
    if out is not None and os.path.lexists(out):
        raise BlaghError(f"{out} already exists; choose another --out")
    make_private_directory(directory.onion_dir)
    key, _ = load_or_create_key(directory.pickup_onion_key_file)
    made = add_client(directory.pickup_clients_file, name)
    line = made.auth_private_line(key.address)
    file_name = f"{made.client.name}.auth_private"
    if out is not None:
        write_new_file(out, (line + "\n").encode("ascii"))
        click.echo(f"Added the client {made.client.name}; its key line is in {out} (mode 0600).")
    else:
        click.echo(f"Added the client {made.client.name}. Its key line, shown only this once:")
        click.echo()
        click.echo(line)
        click.echo()
    click.echo(f"On the transfer station, save it as {file_name} in the directory that tor's")
    click.echo("ClientOnionAuthDir names (mode 0600), and reload tor. Keep it secret: it opens")
    click.echo(f"the pickup service, http://{key.hostname}/")
    click.echo(republish_pickup(config.tor, directory))
    if not config.pickup.enabled:
        click.echo("Note: [pickup] enabled is false in the config: the service is not published.")


@onion_client.command("remove")
@DATA_DIR_OPTION
@click.argument("name")
def onion_client_remove(data_dir: Path, name: str) -> None:
    """Revoke the client NAME: its key no longer opens the pickup service."""
    from onion.clients import remove_client
    from onion.service import republish_pickup

    directory, config = load_data_dir(data_dir)
    removed = remove_client(directory.pickup_clients_file, name)
    click.echo(f"Removed the client {removed.name}.")
    click.echo(republish_pickup(config.tor, directory))


@onion_client.command("list")
@DATA_DIR_OPTION
def onion_client_list(data_dir: Path) -> None:
    """List the authorised clients, with their public keys."""
    from onion.clients import read_clients

    directory, _config = load_data_dir(data_dir)
    clients = read_clients(directory.pickup_clients_file)
    if not clients:
        click.echo("No client: add one with `blagh onion client add NAME`.")
    for client in clients:
        click.echo(f"{client.name}  descriptor:x25519:{client.public_key}")


def _say_clearnet(config: Config) -> None:
    clearnet = config.clearnet
    if clearnet.enabled:
        onion = clearnet.onion_address or "none: no onion address known"
        click.echo(
            f"Clearnet listener: {clearnet.listen} for {clearnet.public_url}  "
            f"(Onion-Location: {onion})"
        )


def _check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when gunicorn could not listen (it would retry, then log)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # gunicorn sets SO_REUSEADDR too: a port in TIME_WAIT is free for it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror:
            raise BlaghError(
                f"{host} is not an address; check [source_interface] listen_host or --host"
            ) from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise BlaghError(
                    f"port {port} on {host} is already in use, maybe by another blagh serve; "
                    "stop the program using it, or choose another port (--port, or "
                    "[source_interface] listen_port)"
                ) from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise BlaghError(
                    f"cannot listen on {host}: it is not an address of this machine; check "
                    "[source_interface] listen_host or --host"
                ) from None
            if error.errno == errno.EACCES:
                raise BlaghError(
                    f"not allowed to listen on port {port}: ports below 1024 need privileges; "
                    "use a higher port and let tor map the onion's port 80 to it"
                ) from None
            raise


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _log_to_stderr() -> None:
    """Show what the onion package logs (INFO and up) on stderr, as gunicorn shows its own:
    without a time (source_interface/quietlog.py; the journal adds its own)."""
    from source_interface.quietlog import LINE_FORMAT

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    logger = logging.getLogger("onion")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@click.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check", short_help="Validate a config file and summarise it.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def config_check(file: Path) -> None:
    """Validate the config FILE and summarise it, or print its first problem.  The data
    folder its [instance] data_dir names must exist, with mode 0700."""
    config = read_config_file(file)
    DataDir(config.instance.data_dir).check_private()
    click.echo(f"ok: {file}")
    for line in _summary(config):
        click.echo(f"  {line}")


def _summary(config: Config) -> list[str]:
    site = config.source_interface
    tor = config.tor
    pow_state = "on" if tor.pow_defense else "off"
    lines = [
        f"instance:   {config.instance.name}, data in {config.instance.data_dir}",
        f"listening:  {site.listen_host}:{site.listen_port}, {site.workers} workers",
        f"languages:  {', '.join(site.languages)} (first visit: {site.default_language})",
        f"tor:        {tor.mode}, proof-of-work defence {pow_state}",
        "pickup API: "
        + (f"on, port {config.pickup.listen_port}" if config.pickup.enabled else "off"),
        f"recipients: {len(config.recipients.analysts)} analyst key(s), fingerprints:",
    ]
    lines += [f"  {analyst.fingerprint()}" for analyst in config.recipients.analysts]
    return lines
