"""What every ``blagh`` command module shares: one-line errors, the common options, the
data folder and passphrase readers, a progress bar.  Imports no role: the command modules do.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from blagh.config import Config, read_config_file
from blagh.datadir import DataDir
from blagh.errors import BlaghError
from crypto.errors import CryptoError
from onion.errors import OnionError


class Failure(click.ClickException):
    """A failure shown as one line, ``blagh: error: ...``, instead of click's usual block."""

    def show(self, file: Any = None) -> None:
        click.echo(f"blagh: error: {self.format_message()}", file=file, err=True)


class UsageFailure(Failure):
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


def describe_os_error(error: OSError) -> str:
    reason = (error.strerror or str(error)).lower()
    advice = _OS_ADVICE.get(error.errno or 0, "")
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every expected failure into a :class:`Failure`; let bugs surface as bugs."""
    try:
        yield
    except (Failure, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as error:
        message = error.format_message().rstrip(".")
        if error.ctx is not None:
            message += f"; see '{error.ctx.command_path} --help'"
        raise UsageFailure(message) from None
    except click.ClickException as error:
        raise Failure(error.format_message()) from None
    except click.Abort:
        raise Failure("cancelled") from None
    except (BlaghError, CryptoError, OnionError) as error:
        raise Failure(str(error)) from None
    except OSError as error:
        if error.errno == errno.EPIPE:
            raise
        raise Failure(describe_os_error(error)) from None


_F = TypeVar("_F", bound=Callable[..., Any])


def path_option(name: str, help_text: str, **kwargs: Any) -> Callable[[_F], _F]:
    return click.option(
        name, type=click.Path(path_type=Path, dir_okay=False), help=help_text, **kwargs
    )


FROM_FILE_HELP = "Read the passphrase from the first line of this file instead of asking for it."


DATA_DIR_OPTION = click.option(
    "--data-dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    metavar="DIR",
    help="The data directory made by `blagh init`; its config.toml is used.",
)


def load_data_dir(data_dir: Path) -> tuple[DataDir, Config]:
    """The data folder named by --data-dir, and its config.toml.

    One rule (config.template.toml, docs/monitoring.md): --data-dir names the folder, and the
    config in it must agree, its ``[instance] data_dir`` naming the same folder ("." does);
    a config that names another one is an error, never silently overridden.
    """
    directory = DataDir(data_dir)
    directory.check_private()
    config = read_config_file(directory.config_file)
    named = config.instance.data_dir
    if not _same_folder(named, directory.path):
        raise BlaghError(
            f'{directory.config_file} says [instance] data_dir = "{named}", but --data-dir '
            f'names {directory.path}: they must name the same folder. Set data_dir = "." '
            "in that config (the folder that holds it), or give the --data-dir it names"
        )
    return directory, replace(config, instance=replace(config.instance, data_dir=directory.path))


def _same_folder(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return one.absolute() == other.absolute()


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_passphrase_file(path: Path) -> str:
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


def progress(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
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
