"""Running parsers of untrusted files (mat2, exiftool, ffmpeg) inside bubblewrap.

Submitted files are hostile (DESIGN.md): a crafted JPEG or MP4 may exploit the decoder that
reads it.  So no parser reads one in this process.  Each runs in a throwaway sandbox::

    bwrap --unshare-all --unshare-user --uid 65534 --gid 65534   no network (only an empty
                                                                 loopback), own PIDs, IPC, UTS,
                                                                 cgroup; "nobody" inside
          --cap-drop ALL --new-session --die-with-parent
          --ro-bind /usr /usr (+ the /bin, /lib… links, ld.so.cache, /etc/alternatives)
          --proc /proc --dev /dev --tmpfs /tmp
          --bind WORKDIR /work --chdir /work --clearenv           the one file, nothing else

under ``prlimit`` (memory, CPU time, file size, open files) and a wall-clock timeout.  WORKDIR
is a fresh private folder (on /dev/shm when there is one: the decrypted file stays in memory,
never on a disk) holding only the file to read, named ``file.EXT``; it is wiped afterwards.
Nothing of the vault, the key, the home folder or the rest of ``/etc`` is visible inside.

Works as root and, where the kernel allows unprivileged user namespaces (Debian 12 does by
default), as an ordinary user.  Where bubblewrap is missing or cannot make its namespaces,
:class:`SandboxUnavailable` says so and nothing is parsed: there is no unsandboxed fallback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from journalist_interface.errors import WorkstationError

INSIDE = "/work"
"""Where the work folder appears inside the sandbox."""

MAX_FILE = 1024 * 1024 * 1024
"""Larger attachments are not handed to a parser at all (1 GiB)."""

MEMORY_LIMIT = 4 * 1024 * 1024 * 1024
"""The address space a parser may use unless its caller gives a lower cap (``run(memory=…)``)."""
CPU_SECONDS = 120
WRITE_LIMIT = 2 * 1024 * 1024 * 1024
TIMEOUT = 180.0
MAX_OUTPUT = 64 * 1024 * 1024

_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/alternatives")
_NOBODY = "65534"
_SANDBOX_TMP = "/tmp"  # noqa: S108 (a fresh tmpfs inside the sandbox, not the host's /tmp)
_SHM = "/dev/shm"  # noqa: S108 (memory-backed; the folder made in it is private, 0700)


class SandboxError(WorkstationError):
    """A sandboxed parser failed: the file is damaged, hostile, or of a kind it cannot read."""


class SandboxUnavailable(SandboxError):
    """bubblewrap is missing, or cannot create its namespaces here: nothing was parsed."""


@dataclass(frozen=True)
class Finished:
    """What a sandboxed command left: its exit status, standard output and error (capped)."""

    status: int
    stdout: bytes
    stderr: bytes


def bwrap_arguments(workdir: Path) -> list[str]:
    """The bubblewrap command line up to ``--``, showing ``workdir`` (read-write) at /work."""
    args = [
        _tool("bwrap"),
        "--unshare-all",
        "--unshare-user",
        "--uid",
        _NOBODY,
        "--gid",
        _NOBODY,
        "--cap-drop",
        "ALL",
        "--new-session",
        "--die-with-parent",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for path in _SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", _SANDBOX_TMP]
    args += ["--bind", str(workdir), INSIDE, "--chdir", INSIDE]
    args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", _SANDBOX_TMP]
    args += ["--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", _SANDBOX_TMP, "--"]
    return args


def _limits(memory: int) -> list[str]:
    return [
        _tool("prlimit"),
        f"--as={memory}",
        f"--cpu={CPU_SECONDS}",
        f"--fsize={WRITE_LIMIT}",
        "--nofile=256",
        "--core=0",
        "--",
    ]


def _tool(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        package = "bubblewrap" if name == "bwrap" else "util-linux"
        raise SandboxUnavailable(
            f"{name} is not installed: files cannot be inspected safely. Install the Debian "
            f"package {package} (make install does)"
        )
    return found


@contextlib.contextmanager
def workspace(chunks: Iterable[bytes], suffix: str) -> Iterator[Path]:
    """A fresh private folder holding only ``file{suffix}``, written from ``chunks``; removed
    on leaving, whatever happens.  Refuses files over :data:`MAX_FILE`."""
    if suffix and (not suffix.startswith(".") or not suffix[1:].isalnum() or len(suffix) > 10):
        raise ValueError("a file suffix is a dot and a few letters or digits")
    folder = Path(tempfile.mkdtemp(prefix="blagh-sandbox-", dir=memory_folder()))
    try:
        # Readable and writable by "nobody" inside: the folder is mapped to it by the user
        # namespace when we are root, and owned by us otherwise.
        os.chmod(folder, 0o700)
        path = folder / f"file{suffix}"
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                for chunk in chunks:
                    written += len(chunk)
                    if written > MAX_FILE:
                        raise SandboxError(
                            f"the file is larger than {MAX_FILE // (1024 * 1024)} MiB: it is not "
                            "inspected on this workstation"
                        )
                    file.write(chunk)
        except OSError as error:
            raise SandboxError(
                f"the file could not be copied for inspection ({error.strerror or error}): free "
                "some memory (/dev/shm) and try again"
            ) from None
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def memory_folder() -> str | None:
    """Where decrypted files and what parsers say about them are written for a moment:
    /dev/shm (memory) when it can be written to, else the system's temporary folder."""
    shm = Path(_SHM)
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def run(
    command: Sequence[str],
    workdir: Path,
    *,
    timeout: float = TIMEOUT,
    max_output: int = MAX_OUTPUT,
    memory: int = MEMORY_LIMIT,
) -> Finished:
    """Run ``command`` in a sandbox that sees ``workdir`` at /work and nothing else of ours,
    with at most ``memory`` bytes of address space (``RLIMIT_AS``: an allocation past it fails).

    Raises :class:`SandboxUnavailable` if bubblewrap cannot start, and :class:`SandboxError`
    on a timeout or an output larger than ``max_output``.  The command's own failure is not
    raised: read :attr:`Finished.status`.
    """
    check_available()
    argv = [*_limits(memory), *bwrap_arguments(workdir), *command]
    folder = memory_folder()
    with tempfile.TemporaryFile(dir=folder) as out, tempfile.TemporaryFile(dir=folder) as err:
        try:
            process = subprocess.run(  # noqa: S603 (fixed argv, no shell)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(
                f"the file took longer than {int(timeout)} s to read: it was stopped"
            ) from None
        if out.tell() > max_output:
            raise SandboxError("the file gave an output too large to use")
        out.seek(0)
        err.seek(0)
        return Finished(process.returncode, out.read(), err.read(64 * 1024))


_available: bool = False


def check_available() -> None:
    """Check once per process that bubblewrap can make its sandbox here; raise
    :class:`SandboxUnavailable` with bubblewrap's own words if not."""
    global _available
    if _available:
        return
    with tempfile.TemporaryDirectory(prefix="blagh-sandbox-check-") as folder:
        os.chmod(folder, 0o700)
        argv = [*bwrap_arguments(Path(folder)), "/usr/bin/true"]
        try:
            done = subprocess.run(  # noqa: S603 (fixed argv, no shell)
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SandboxUnavailable(
                f"bubblewrap could not start ({error.__class__.__name__}): files cannot be "
                "inspected safely here"
            ) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SandboxUnavailable(
            "bubblewrap cannot create its sandbox here"
            + (f" ({reason[-1][:200]})" if reason else "")
            + ": files cannot be inspected safely. As an ordinary user it needs unprivileged "
            "user namespaces (sysctl kernel.unprivileged_userns_clone=1 on Debian); in a "
            "container, allow namespaces or run as root"
        )
    _available = True
