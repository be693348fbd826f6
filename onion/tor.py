"""The one place that talks to stem: start a tor or attach to one, add and remove onion services.

stem 1.8 is unmaintained upstream, so it is used narrowly, and everything it raises is turned
into an :class:`~onion.errors.OnionError` whose text went through :func:`redact`.  What shapes
the code:

- ``launch_tor_with_config`` waits for a full bootstrap unless told otherwise, and tor started
  with ``DisableNetwork 1`` never bootstraps: it is asked to return at 0 %, once the control
  socket is open.  Its timeout works only in the main thread (SIGALRM): elsewhere none is given.
- The tor we start is owned (``take_ownership``): it exits when our process, or our control
  connection, goes away, so a crash never leaves it running.  Its control interface is a unix
  socket in its data folder, with cookie authentication: nothing listens on a TCP port.
- Services are created detached: otherwise they die with the control connection that made
  them.  So they are removed explicitly on a clean shutdown, and a stale one left by a crash is
  replaced when the same key is published again.
- Proof-of-work and several ClientAuthV3 keys have no stem argument: ``ADD_ONION`` is sent raw.
- stem logs every control-port exchange at its TRACE level, keys and cookies included: its
  logger is kept at INFO and filtered.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import stem
import stem.connection
import stem.control
import stem.process
import stem.version

from onion.errors import (
    ControlError,
    PublishError,
    TorNotInstalled,
    TorStartError,
    redact,
)

log = logging.getLogger(__name__)
tor_log = logging.getLogger("onion.tor.daemon")

TOR_COMMAND = "tor"
POW_MIN_VERSION = "0.4.9.2-alpha"
"""The first tor whose ``ADD_ONION`` takes PoWDefensesEnabled (the defence itself is 0.4.8)."""

CONTROL_SOCKET = "control"
"""The control socket's name in the data folder of a tor we launch."""

UNIX_PATH_MAX = 107
LAUNCH_TIMEOUT = 90.0
INSTALL_ADVICE = (
    "tor is not installed (no `{command}` program found): install it, on Debian or Ubuntu with "
    "`sudo apt-get install tor` (`make run` does it when run as root), or set [tor] mode = "
    '"off" to serve without an onion service'
)


class _StemFilter(logging.Filter):
    """Keep stem's records free of secrets, whatever level the application logs at."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def _harden_stem_logging() -> None:
    stem_logger = logging.getLogger("stem")
    # TRACE and DEBUG quote whole control exchanges; INFO repeats itself while a connection
    # closes.  Warnings and errors are kept.
    stem_logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _StemFilter) for f in stem_logger.filters):
        stem_logger.addFilter(_StemFilter())


_harden_stem_logging()


@dataclass(frozen=True)
class PowSettings:
    """The onion-service proof-of-work defence: introduction requests per second and burst."""

    queue_rate: int
    queue_burst: int


@dataclass(frozen=True)
class StreamLimit:
    """Streams one rendezvous circuit may hold open at once (0: no limit), and whether tor
    closes a circuit that asks for more (else it ignores the extra requests)."""

    per_circuit: int
    close_circuit: bool


@dataclass(frozen=True)
class AddedOnion:
    """What tor said when it added a service: its address and how many client keys it took."""

    address: str
    client_keys: int


class Tor:
    """A control connection to tor, and the tor process itself when we started it."""

    def __init__(
        self,
        controller: Any,
        description: str,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._controller = controller
        self.description = description
        self._process = process
        self._stopping = threading.Event()
        self._owner_pid = os.getpid()
        self.on_unexpected_exit: Callable[[], None] | None = None
        if process is not None and process.stdout is not None:
            threading.Thread(
                target=self._forward_output,
                args=(process.stdout,),
                name="tor-log",
                daemon=True,
            ).start()

    # --- starting and attaching ---------------------------------------------------------

    @classmethod
    def launch(
        cls,
        data_directory: Path,
        *,
        network: bool,
        tor_command: str = TOR_COMMAND,
    ) -> Tor:
        """Start a tor of our own, its state in ``data_directory`` (made 0700).

        Without ``network`` it runs with ``DisableNetwork 1``: services can be created and their
        addresses known, but nothing is published and tor contacts nobody.
        """
        if network and "PYTEST_CURRENT_TEST" in os.environ:
            # Tests and development machines must never reach the public Tor network.
            raise TorStartError(
                "refusing to start tor with its network on inside a test run: tests must never "
                "reach the public Tor network; use --tor off or --tor offline ([tor] mode), or "
                "attach to the private test network (tests/tornet.py)"
            )
        executable = shutil.which(tor_command)
        if executable is None:
            raise TorNotInstalled(INSTALL_ADVICE.format(command=tor_command))
        directory = data_directory.absolute()
        socket_path = directory / CONTROL_SOCKET
        _check_torrc_path(directory)
        if len(os.fsencode(socket_path)) > UNIX_PATH_MAX:
            raise TorStartError(
                f"the path of tor's control socket, {socket_path}, is too long for a unix "
                f"socket ({UNIX_PATH_MAX} bytes at most): use a data folder with a shorter path"
            )
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as error:
            raise TorStartError(
                f"cannot create tor's data folder {directory}: {_reason(error)}"
            ) from None
        config: dict[str, str | list[str]] = {
            "DataDirectory": str(directory),
            "ControlSocket": str(socket_path),
            "CookieAuthentication": "1",
            "SocksPort": "0",
            "DisableNetwork": "0" if network else "1",
            "Log": "NOTICE stdout",
            "AvoidDiskWrites": "1",
        }
        lines: list[str] = []

        def startup_line(line: str) -> None:
            lines.append(line)
            Tor._log_line(line)

        in_main_thread = threading.current_thread() is threading.main_thread()
        # Ctrl-C in a terminal signals the whole process group, tor included, and tor would exit
        # at once, before blagh serve has removed its services.  tor keeps the signal mask it
        # is started with and never unblocks SIGINT: it stops when we close our connection.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process = stem.process.launch_tor_with_config(
                config,
                tor_cmd=executable,
                completion_percent=0,
                init_msg_handler=startup_line,
                timeout=LAUNCH_TIMEOUT if in_main_thread else None,
                take_ownership=True,
                close_output=False,
            )
        except OSError as error:
            raise TorStartError(_launch_failure(str(error), lines)) from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        description = "tor (started by blagh" + ("" if network else ", network disabled") + ")"
        try:
            controller = _connect(socket_path, None, None)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return cls(controller, description, process)

    @classmethod
    def attach(
        cls, *, socket: Path | None = None, port: int | None = None, password: str | None = None
    ) -> Tor:
        """Connect to a running tor's control socket or control port on 127.0.0.1."""
        if socket is None and port is None:
            raise ControlError(
                "no control socket or control port to reach tor: set [tor] control_socket or "
                "control_port"
            )
        controller = _connect(socket, port, password)
        where = f"control socket {socket}" if socket else f"control port 127.0.0.1:{port}"
        return cls(controller, f"tor at {where}")

    # --- queries ------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return str(self._call(lambda c: c.get_version(), "asking for its version"))

    def supports_pow(self) -> bool:
        """Whether this tor takes the proof-of-work options in ``ADD_ONION``."""
        version = self._call(lambda c: c.get_version(), "asking for its version")
        return bool(version >= stem.version.Version(POW_MIN_VERSION))

    def bootstrap(self) -> tuple[int, str]:
        """tor's bootstrap progress (percent) and its summary."""
        phase = self._getinfo("status/bootstrap-phase")
        fields = dict(_fields(phase))
        try:
            progress = int(fields.get("PROGRESS", "0"))
        except ValueError:
            progress = 0
        return progress, fields.get("SUMMARY", "").strip('"')

    def network_enabled(self) -> bool:
        value = self._call(lambda c: c.get_conf("DisableNetwork", "0"), "reading DisableNetwork")
        return str(value) != "1"

    def detached_onions(self) -> list[str]:
        """Addresses (without .onion) of the detached services tor holds."""
        try:
            text = self._getinfo("onions/detached")
        except ControlError:
            return []  # tor answers 551 when there is none
        return [line.strip() for line in text.splitlines() if line.strip()]

    # --- onion services -----------------------------------------------------------------

    def add_onion(
        self,
        key_argument: str,
        ports: Sequence[tuple[int, str]],
        *,
        expected: str,
        pow_settings: PowSettings | None = None,
        client_keys: Sequence[str] = (),
        streams: StreamLimit | None = None,
    ) -> AddedOnion:
        """``ADD_ONION`` with our key, detached; replace a stale service with the same key.

        ``key_argument`` is secret, ``expected`` is the address it gives (without .onion), and
        ``ports`` are ``(virtual port, target)`` pairs.  The command and the reply are never
        logged; a reply whose address is not ``expected`` means a damaged key file.
        ``streams`` caps the streams of one rendezvous circuit (``MaxStreams``, tor's
        HiddenServiceMaxStreams; the flag ``MaxStreamsCloseCircuit`` closes a circuit that
        asks for more, instead of ignoring the extra requests).
        """
        flags = ["Detach", "DiscardPK"] + (["V3Auth"] if client_keys else [])
        if streams is not None and streams.per_circuit and streams.close_circuit:
            flags.append("MaxStreamsCloseCircuit")
        parts = ["ADD_ONION", key_argument, "Flags=" + ",".join(flags)]
        if streams is not None and streams.per_circuit:
            parts.append(f"MaxStreams={streams.per_circuit}")
        if pow_settings is not None:
            parts += [
                "PoWDefensesEnabled=1",
                f"PoWQueueRate={pow_settings.queue_rate}",
                f"PoWQueueBurst={pow_settings.queue_burst}",
            ]
        parts += [f"Port={virtual},{target}" for virtual, target in ports]
        parts += [f"ClientAuthV3={key}" for key in client_keys]
        command = " ".join(parts)
        try:
            content = self._command(command, "adding an onion service")
        except PublishError as error:
            if "collision" not in str(error).lower() or expected not in self.detached_onions():
                raise
            # Left by a run that did not stop cleanly (detached services outlive their
            # controller): same key, so same address.  Replace it.
            log.info("replacing the onion service %s.onion left by an earlier run", expected)
            self.remove_onion(expected)
            content = self._command(command, "adding an onion service")
        address = ""
        accepted = 0
        for _code, _divider, line in content:
            name, _, value = line.partition("=")
            if name == "ServiceID":
                address = value.strip()
            elif name == "ClientAuthV3":
                accepted += 1
        if address != expected:
            if address:
                self.remove_onion(address)
            raise PublishError(
                f"tor gave the onion service the address {address or '(none)'}.onion, not "
                f"{expected}.onion as its key file says: the key file is damaged; restore it "
                "from backup"
            )
        return AddedOnion(address=address, client_keys=accepted)

    def remove_onion(self, address: str) -> None:
        self._command(f"DEL_ONION {address.removesuffix('.onion')}", "removing an onion service")

    # --- closing ------------------------------------------------------------------------

    @property
    def launched(self) -> bool:
        return self._process is not None

    @property
    def process_id(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        """Close the control connection; a tor we started then exits (it is owned), and is
        waited for.  Does nothing in a forked child (gunicorn's workers inherit this object)."""
        if os.getpid() != self._owner_pid:
            return
        self._stopping.set()
        close_controller(self._controller)
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("tor did not stop within 30 s of losing its controller: killing it")
                self._process.kill()
                self._process.wait()

    # --- internals ----------------------------------------------------------------------

    def _call(self, function: Callable[[Any], Any], what: str) -> Any:
        try:
            return function(self._controller)
        except stem.SocketClosed:
            raise ControlError(
                f"the connection to {self.description} closed while {what}: did tor stop? "
                "see its log"
            ) from None
        except (stem.ControllerError, ValueError) as error:
            raise ControlError(
                f"{self.description} gave an error while {what}: {redact(str(error))}"
            ) from None

    def _getinfo(self, key: str) -> str:
        return str(self._call(lambda c: c.get_info(key), f"asking for {key}"))

    def _command(self, line: str, what: str) -> list[tuple[str, str, str]]:
        reply = self._call(lambda c: c.msg(line), what)
        content: list[tuple[str, str, str]] = reply.content()
        if not reply.is_ok():
            code, _, message = content[0] if content else ("?", "", "no reply")
            raise PublishError(f"tor refused {what}: {redact(message)} (code {code})")
        return content

    def _forward_output(self, stream: IO[bytes]) -> None:
        """Pass tor's log lines on to our log until tor exits."""
        try:
            for raw in iter(stream.readline, b""):
                self._log_line(raw.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass
        if not self._stopping.is_set():
            tor_log.error("tor exited unexpectedly: the onion service is down")
            if self.on_unexpected_exit is not None:
                self.on_unexpected_exit()

    @staticmethod
    def _log_line(line: str) -> None:
        text = redact(line.strip())
        if not text:
            return
        # "Nov 22 06:17:59.000 [notice] Bootstrapped 0% ..." -> level and message
        _, bracket, rest = text.partition(" [")
        level_name, _, message = rest.partition("] ")
        if not bracket or not message:
            tor_log.info("tor: %s", text)
            return
        level = {"err": logging.ERROR, "warn": logging.WARNING, "notice": logging.INFO}.get(
            level_name, logging.DEBUG
        )
        if "running Tor as root" in message:
            level = logging.DEBUG
        tor_log.log(level, "tor: %s", message)


CLOSE_SECONDS = 10.0


def close_controller(controller: Any) -> None:
    """Close a stem Controller, giving up after CLOSE_SECONDS.

    stem's close() joins its reader thread, and that thread can stay blocked in recv() on the
    socket stem has just shut down: a close that never returns would keep ``blagh serve`` from
    exiting on Ctrl-C.  The close runs in a daemon thread instead; tor sees the connection go
    either way once this process exits.
    """

    def close() -> None:
        try:
            controller.close()
        except Exception as error:  # stem may raise anything while closing a dead socket
            log.debug("closing the control connection: %s", redact(str(error)))

    closer = threading.Thread(target=close, name="tor-control-close", daemon=True)
    closer.start()
    closer.join(CLOSE_SECONDS)
    if closer.is_alive():
        log.debug("stem did not close the control connection within %.0f s", CLOSE_SECONDS)


def stop_on_unexpected_exit() -> Callable[[], None]:
    """A callback that stops this process (SIGTERM) when the tor it relies on dies: an onion
    service host without tor serves nobody, and its supervisor restarts it whole."""
    pid = os.getpid()

    def stop() -> None:
        if os.getpid() == pid:
            os.kill(pid, signal.SIGTERM)

    return stop


def _connect(socket: Path | None, port: int | None, password: str | None) -> Any:
    """An authenticated stem Controller, or a ControlError saying what to do."""
    with warnings.catch_warnings():  # stem 1.8 calls Thread.setDaemon, deprecated since 3.10
        warnings.simplefilter("ignore", DeprecationWarning)
        return _connect_and_authenticate(socket, port, password)


def _connect_and_authenticate(socket: Path | None, port: int | None, password: str | None) -> Any:
    if socket is not None:
        where = f"tor's control socket {socket}"
        setting = f"ControlSocket {socket}"
    else:
        where = f"tor's control port 127.0.0.1:{port}"
        setting = f"ControlPort {port}"
    try:
        if socket is not None:
            controller = stem.control.Controller.from_socket_file(str(socket))
        else:
            controller = stem.control.Controller.from_port("127.0.0.1", port)
    except stem.SocketError as error:
        text = str(error).lower()
        if "refused" in text:
            reason = "connection refused"
        elif "no such file" in text or "not found" in text:
            reason = "no such socket"
        elif "permission" in text:
            reason = "permission denied; run blagh as a user allowed to use it"
        else:
            reason = redact(str(error))
        raise ControlError(
            f"cannot connect to {where} ({reason}): is tor running, with {setting} in its torrc?"
        ) from None
    try:
        controller.authenticate(password=password)
    except stem.connection.MissingPassword:
        close_controller(controller)
        raise ControlError(
            f"{where} asks for a password: put it in a file (mode 0600) and set [tor] "
            "control_password_file to its path"
        ) from None
    except stem.connection.PasswordAuthFailed:
        close_controller(controller)
        raise ControlError(
            f"{where} refused the control password: check that [tor] control_password_file "
            "holds the password whose hash is tor's HashedControlPassword"
        ) from None
    except stem.connection.UnreadableCookieFile as error:
        controller.close()
        cookie = getattr(error, "cookie_path", "its cookie file")
        raise ControlError(
            f"cannot read {cookie}, the cookie that authenticates to {where}: run blagh as a "
            "user in tor's group (on Debian: sudo adduser USER debian-tor, then log in again)"
        ) from None
    except stem.connection.AuthenticationFailure as error:
        controller.close()
        kind = type(error).__name__
        raise ControlError(
            f"{where} refused to authenticate us ({kind}): check its CookieAuthentication or "
            "HashedControlPassword settings, and [tor] control_password_file"
        ) from None
    except stem.SocketError:
        close_controller(controller)
        raise ControlError(
            f"{where} closed the connection while authenticating: is it really tor's control "
            "interface?"
        ) from None
    return controller


def _check_torrc_path(path: Path) -> None:
    text = str(path)
    if any(char.isspace() or char in "\"'\\#" for char in text):
        raise TorStartError(
            f"tor cannot use a data folder whose path holds spaces, quotes, '#' or '\\' "
            f"({text}): move the data folder to a plainer path"
        )


def _launch_failure(stem_message: str, lines: Sequence[str]) -> str:
    problems = [
        redact(line.split("] ", 1)[1].strip())
        for line in lines
        if ("[err]" in line or "[warn]" in line) and "] " in line
        if "running Tor as root" not in line
    ]
    joined = " ".join(problems[-3:]).lower()
    if "address already in use" in joined or "could not bind" in joined:
        advice = "a port it needs is taken by another program; stop that program"
    elif "permission" in joined or "ownership" in joined or "owned by" in joined:
        advice = "check the owner and permissions of the data folder (blagh's user, mode 0700)"
    elif "timeout" in stem_message.lower():
        advice = "it did not open its control socket in time; see its messages above"
    else:
        advice = "see tor's messages"
    detail = "; ".join(problems[-3:]) or redact(stem_message)
    return f"tor did not start: {detail} ({advice})"


def _fields(text: str) -> list[tuple[str, str]]:
    """``KEY=value KEY="quoted value"`` pairs of a status line."""
    out: list[tuple[str, str]] = []
    rest = text
    while rest:
        rest = rest.lstrip()
        name, equals, rest = rest.partition("=")
        if not equals:
            break
        name = name.split()[-1] if name.split() else name
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(" ")
        out.append((name, value))
    return out


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()
