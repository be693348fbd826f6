"""The ``blagh`` command: set up a server, make and inspect analyst keys, check a config.

Every failure ends in one line on stderr, ``blagh: error: <what is wrong; what to do>``, and a
non-zero exit status.  Operators read it in a terminal or a systemd journal, where a traceback
would bury the one sentence that matters.  Usage errors follow the same rule (status 2).
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from blagh.config import MAX_RECIPIENTS, Config, read_config_file
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from blagh.files import write_new_file
from crypto.errors import CryptoError, InvalidPublicKey, KeyFileError
from crypto.keys import AnalystPublicKey, generate_analyst_key, open_key_file, seal_key_file


class _Failure(click.ClickException):
    """A failure shown as one line, ``blagh: error: ...``, instead of click's usual block."""

    def show(self, file: Any = None) -> None:
        click.echo(f"blagh: error: {self.format_message()}", file=file, err=True)


class _UsageFailure(_Failure):
    """A command line click could not parse: one line too, with the usual status 2."""

    exit_code = 2


_OS_ADVICE = {
    errno.EACCES: "check its owner and permissions, or run blagh as the user that owns it",
    errno.EPERM: "check its owner and permissions, or run blagh as the user that owns it",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path",
    errno.ELOOP: "it is a symbolic link, which blagh will not follow here; give the real path",
    errno.ENOSPC: "free some disk space and try again",
    errno.EDQUOT: "free some disk space and try again",
    errno.EROFS: "choose a place on a writable file system",
}


def _describe_os_error(error: OSError) -> str:
    reason = (error.strerror or str(error)).lower()
    advice = _OS_ADVICE.get(error.errno or 0, "")
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn every expected failure into a :class:`_Failure`; let bugs surface as bugs."""
    try:
        yield
    except (_Failure, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as error:
        message = error.format_message().rstrip(".")
        if error.ctx is not None:
            message += f"; see '{error.ctx.command_path} --help'"
        raise _UsageFailure(message) from None
    except click.ClickException as error:
        raise _Failure(error.format_message()) from None
    except click.Abort:
        raise _Failure("cancelled") from None
    except (BlaghError, CryptoError) as error:
        raise _Failure(str(error)) from None
    except OSError as error:
        if error.errno == errno.EPIPE:
            raise
        raise _Failure(_describe_os_error(error)) from None


class _BlaghGroup(click.Group):
    """The top-level group: failures while parsing or running any subcommand become one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


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


_F = TypeVar("_F", bound=Callable[..., Any])


def _path_option(name: str, help_text: str, **kwargs: Any) -> Callable[[_F], _F]:
    return click.option(
        name, type=click.Path(path_type=Path, dir_okay=False), help=help_text, **kwargs
    )


_FROM_FILE_HELP = "Read the passphrase from the first line of this file instead of asking for it."


@click.group(
    cls=_BlaghGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="blagh", message="%(prog)s %(version)s")
def cli() -> None:
    """Blagh: anonymous reporting of online crime.

    Reporters send text, links, photos and videos to a Tor onion service, anonymously if they
    wish, and come back with a codename to read the answer.  The server facing the internet
    holds only ciphertext: every report is encrypted to the analysts' public keys.  Analysts
    read and answer reports on an isolated workstation that holds the private keys.

    \b
    Who runs what:
      operator, on the server:      blagh init, blagh config check, blagh serve
      analyst, on the workstation:  blagh keygen, blagh key show
    """


def main() -> None:
    """The console script (``blagh``)."""
    cli(prog_name="blagh")


@cli.command(short_help="Create a server's data directory: keys and config.")
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


@cli.command(short_help="Serve the reporters' web app (gunicorn).")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The data directory made by `blagh init`; its config.toml is used.",
)
@click.option("--host", metavar="HOST", help="Address to listen on (default: from the config).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: from the config).")
def serve(data_dir: Path, host: str | None, port: int | None) -> None:
    """Serve the source interface under gunicorn, on loopback by default.

    tor publishes it as an onion service (see `make run`). Stop with Ctrl-C.
    """
    from source_interface.server import serve as run_server

    directory = DataDir(data_dir)
    config = read_config_file(directory.config_file)
    config = replace(config, instance=replace(config.instance, data_dir=directory.path))
    run_server(config, host, port)


@cli.command()
@_path_option("--out", "Key file to create, with mode 0600; never overwritten.", required=True)
@_path_option("--passphrase-file", _FROM_FILE_HELP)
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
        passphrase = _read_passphrase_file(passphrase_file)
    else:
        passphrase = click.prompt(
            "Passphrase for the new key file",
            hide_input=True,
            confirmation_prompt="Repeat the passphrase",
            err=True,
        )
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


@cli.group()
def key() -> None:
    """Inspect analyst key files."""


@key.command("show")
@_path_option("--key-file", "The analyst key file that `blagh keygen` wrote.", required=True)
@_path_option("--passphrase-file", _FROM_FILE_HELP)
def key_show(key_file: Path, passphrase_file: Path | None) -> None:
    """Print the public key line and fingerprint of an analyst key file."""
    data = key_file.read_bytes()
    if passphrase_file is not None:
        passphrase = _read_passphrase_file(passphrase_file)
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


@cli.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check", short_help="Validate a config file and summarise it.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def config_check(file: Path) -> None:
    """Validate the config FILE and summarise it, or print its first problem."""
    config = read_config_file(file)
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


def _read_passphrase_file(path: Path) -> str:
    """The first line of ``path``, without its line ending: what ``echo pass > file`` wrote."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BlaghError(f"{path}: the passphrase is not UTF-8 text") from None
    passphrase = text.split("\n", 1)[0].removesuffix("\r")
    if not passphrase:
        raise BlaghError(f"{path}: the first line is empty; write the passphrase on it")
    return passphrase
