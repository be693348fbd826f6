"""Publishing Blagh's onion services for ``blagh serve``, and reporting on them.

Two services, each with a key of its own in the data folder (so each keeps its address):

- the source interface, for reporters, with tor's proof-of-work defence when tor supports it;
- the pickup API, for the transfer station only (Tor client authorisation), when
  ``[pickup] enabled`` is true and at least one client was added.

What was published is written to a status file in the data folder (no secret in it), which
``blagh status`` and ``blagh onion client`` read to find the running server and its tor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from blagh.config import TorConfig
from blagh.datadir import DataDir
from onion.clients import read_clients
from onion.errors import ControlError, OnionError, OnionKeyError, PublishError
from onion.keys import (
    OnionKey,
    load_or_create_key,
    make_private_directory,
    read_private_file,
    write_private_file,
)
from onion.tor import PowSettings, StreamLimit, Tor, stop_on_unexpected_exit

log = logging.getLogger(__name__)

VIRTUAL_PORT = 80
"""Both services answer on the onion address's port 80: http://<address>.onion/."""

SOURCE = "source"
PICKUP = "pickup"


@dataclass(frozen=True)
class PowState:
    """Whether the proof-of-work defence is on for the source interface, and if not, why."""

    enabled: bool
    queue_rate: int = 0
    queue_burst: int = 0
    reason: str = ""

    def describe(self) -> str:
        if self.enabled:
            return f"on (queue rate {self.queue_rate}/s, burst {self.queue_burst})"
        return f"off: {self.reason}"


@dataclass(frozen=True)
class Service:
    """A published service: its role, address (without .onion) and where tor forwards it."""

    role: str
    address: str
    target: str
    clients: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.address}.onion/"


@dataclass(frozen=True)
class Status:
    """What a running ``blagh serve`` published: the content of the status file."""

    pid: int
    mode: str
    tor: str
    tor_version: str
    network: bool
    control_socket: str | None
    control_port: int | None
    pow: PowState
    services: list[Service] = field(default_factory=list)

    def service(self, role: str) -> Service | None:
        return next((s for s in self.services if s.role == role), None)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: str) -> Status:
        raw = json.loads(data)
        raw["pow"] = PowState(**raw["pow"])
        raw["services"] = [Service(**s) for s in raw["services"]]
        return cls(**raw)


def read_status(data_dir: DataDir) -> Status | None:
    """The status of the ``blagh serve`` running on ``data_dir``, or None if none is running
    (no status file, or one left by a process that is gone)."""
    try:
        text = read_private_file(data_dir.onion_status_file)
    except FileNotFoundError:
        return None
    try:
        status = Status.from_json(text)
    except (ValueError, TypeError, KeyError):
        raise OnionKeyError(
            f"{data_dir.onion_status_file} is damaged; remove it (blagh serve writes it again)"
        ) from None
    return status if _alive(status.pid) else None


class OnionServices:
    """Start or attach to tor and publish the services; undo it all on :meth:`stop`.

    Used by ``blagh serve`` around gunicorn.  gunicorn forks its workers from the process that
    holds this object, and their exit unwinds the same stack: :meth:`stop` does nothing
    outside the process that called :meth:`start`.
    """

    def __init__(
        self,
        tor_config: TorConfig,
        data_dir: DataDir,
        *,
        mode: str,
        source_target: str,
        pickup_target: str | None = None,
        stop_server_if_tor_dies: bool = True,
    ) -> None:
        self.tor_config = tor_config
        self.data_dir = data_dir
        self.mode = mode
        self.source_target = source_target
        self.pickup_target = pickup_target
        self.stop_server_if_tor_dies = stop_server_if_tor_dies
        self.tor: Tor | None = None
        self.status: Status | None = None
        self._owner = os.getpid()

    def start(self) -> Status:
        running = read_status(self.data_dir)
        if running is not None and running.pid != os.getpid():
            raise OnionError(
                f"blagh serve is already running on {self.data_dir.path} (process "
                f"{running.pid}); stop it first"
            )
        make_private_directory(self.data_dir.onion_dir)
        source_key, _ = load_or_create_key(self.data_dir.source_onion_key_file)
        pickup = self._pickup_to_publish()
        tor = open_tor(self.tor_config, self.data_dir, self.mode)
        self.tor = tor
        try:
            status = self._publish(tor, source_key, pickup)
        except BaseException:
            self.stop()
            raise
        if self.stop_server_if_tor_dies:
            tor.on_unexpected_exit = stop_on_unexpected_exit()
        return status

    def _pickup_to_publish(self) -> tuple[OnionKey, list[str]] | None:
        if self.pickup_target is None:
            return None
        clients = read_clients(self.data_dir.pickup_clients_file)
        if not clients:
            log.warning(
                "the pickup service is enabled but has no authorised client: it is not "
                "published; add one with `blagh onion client add NAME`"
            )
            return None
        key, _ = load_or_create_key(self.data_dir.pickup_onion_key_file)
        return key, [c.tor_argument() for c in clients]

    def _publish(
        self, tor: Tor, source_key: OnionKey, pickup: tuple[OnionKey, list[str]] | None
    ) -> Status:
        version = tor.version
        network = tor.network_enabled()
        pow_state = self._publish_source(tor, source_key)
        services = [Service(SOURCE, source_key.address, self.source_target)]
        self.status = self._status(tor, version, network, pow_state, services)
        if pickup is not None and self.pickup_target is not None:
            key, client_keys = pickup
            added = tor.add_onion(
                key.add_onion_argument(),
                [(VIRTUAL_PORT, self.pickup_target)],
                expected=key.address,
                client_keys=client_keys,
            )
            services.append(Service(PICKUP, key.address, self.pickup_target, added.client_keys))
            log.info(
                "pickup onion service %s.onion -> %s, %d authorised client(s)",
                key.address,
                self.pickup_target,
                added.client_keys,
            )
        self.status = self._status(tor, version, network, pow_state, services)
        write_private_file(self.data_dir.onion_status_file, self.status.to_json(), replace=True)
        if not network:
            log.info("tor's network is disabled: the onion services are created, not published")
        return self.status

    def _publish_source(self, tor: Tor, key: OnionKey) -> PowState:
        config = self.tor_config
        settings = PowSettings(config.pow_queue_rate, config.pow_queue_burst)
        pow_state = PowState(True, settings.queue_rate, settings.queue_burst)
        if not config.pow_defense:
            pow_state = PowState(False, reason="turned off in the config ([tor] pow_defense)")
        elif not tor.supports_pow():
            pow_state = PowState(
                False,
                reason=f"tor {tor.version} is too old: the defence needs tor 0.4.9.2 or later; "
                "upgrade tor",
            )
        ports = [(VIRTUAL_PORT, self.source_target)]

        def add(state: PowState) -> None:
            tor.add_onion(
                key.add_onion_argument(),
                ports,
                expected=key.address,
                pow_settings=settings if state.enabled else None,
                streams=StreamLimit(
                    config.max_streams_per_circuit, config.max_streams_close_circuit
                ),
            )

        try:
            add(pow_state)
        except PublishError as error:
            if not pow_state.enabled or "pow" not in str(error).lower():
                raise
            # A tor built without the defence (tor's --disable-module-pow) refuses the options.
            pow_state = PowState(False, reason=f"this tor refuses it ({error})")
            add(pow_state)
        level = logging.INFO if pow_state.enabled or not config.pow_defense else logging.WARNING
        log.info("onion service http://%s.onion/ -> %s", key.address, self.source_target)
        log.log(level, "proof-of-work defence %s", pow_state.describe())
        log.info("streams per circuit: %s", describe_streams(config))
        return pow_state

    def _status(
        self, tor: Tor, version: str, network: bool, pow_state: PowState, services: list[Service]
    ) -> Status:
        socket, port = control_endpoint(self.tor_config, self.data_dir, self.mode)
        return Status(
            pid=os.getpid(),
            mode=self.mode,
            tor=tor.description,
            tor_version=version,
            network=network,
            control_socket=str(socket) if socket else None,
            control_port=port,
            pow=pow_state,
            services=services,
        )

    def stop(self) -> None:
        """Remove the services, the status file, and stop a tor we started.  Never raises:
        it runs while the server stops, when tor may already be gone."""
        if os.getpid() != self._owner:
            return
        tor, self.tor = self.tor, None
        if tor is None:
            return
        tor.on_unexpected_exit = None
        for service in self.status.services if self.status else []:
            try:
                tor.remove_onion(service.address)
            except OnionError as error:
                log.debug("could not remove %s.onion: %s", service.address, error)
        with contextlib.suppress(FileNotFoundError):
            self.data_dir.onion_status_file.unlink()
        tor.close()
        log.info("onion services removed")


def describe_streams(tor_config: TorConfig) -> str:
    """``[tor] max_streams_per_circuit`` and ``max_streams_close_circuit`` in a few words."""
    if not tor_config.max_streams_per_circuit:
        return "no limit"
    beyond = "closed" if tor_config.max_streams_close_circuit else "ignored"
    return f"at most {tor_config.max_streams_per_circuit}, a circuit asking for more {beyond}"


def open_tor(tor_config: TorConfig, data_dir: DataDir, mode: str) -> Tor:
    """Start our own tor (``launch``, ``offline``) or attach to a running one (``attach``)."""
    if mode in ("launch", "offline"):
        return Tor.launch(data_dir.tor_dir, network=mode == "launch")
    if mode == "attach":
        socket, port = control_endpoint(tor_config, data_dir, mode)
        return Tor.attach(socket=socket, port=port, password=control_password(tor_config))
    raise OnionError(f'[tor] mode is "{mode}": there is no tor to use')


def control_endpoint(
    tor_config: TorConfig, data_dir: DataDir, mode: str
) -> tuple[Path | None, int | None]:
    """Where the tor of ``mode`` listens for controllers: a socket path or a port."""
    if mode == "attach":
        return tor_config.control_socket, tor_config.control_port
    return data_dir.tor_dir.absolute() / "control", None


def control_password(tor_config: TorConfig) -> str | None:
    """The first line of ``[tor] control_password_file``, if set."""
    path = tor_config.control_password_file
    if path is None:
        return None
    try:
        text = read_private_file(path)
    except FileNotFoundError:
        raise ControlError(
            f"{path} does not exist: create it with tor's control password on its first line "
            "(mode 0600), or remove [tor] control_password_file"
        ) from None
    password = text.split("\n", 1)[0].removesuffix("\r")
    if not password:
        raise ControlError(f"{path}: the first line is empty; write the control password on it")
    return password


def connect_to_running(tor_config: TorConfig, data_dir: DataDir, status: Status) -> Tor:
    """A control connection to the tor a running ``blagh serve`` uses."""
    if status.control_socket is not None:
        socket: Path | None = Path(status.control_socket)
        port = None
    else:
        socket, port = None, status.control_port
    password = control_password(tor_config) if status.mode == "attach" else None
    return Tor.attach(socket=socket, port=port, password=password)


def republish_pickup(tor_config: TorConfig, data_dir: DataDir) -> str:
    """After the client list changed: publish the pickup service again with the new list, if
    a server is running; say what happened, in one sentence."""
    status = read_status(data_dir)
    if status is None:
        return "It takes effect when blagh serve next starts."
    service = status.service(PICKUP)
    clients = read_clients(data_dir.pickup_clients_file)
    if service is None and not clients:
        return "The running server publishes no pickup service."
    if service is None:
        return "Restart blagh serve to publish the pickup service with it."
    tor = connect_to_running(tor_config, data_dir, status)
    try:
        tor.remove_onion(service.address)
        services = [s for s in status.services if s.role != PICKUP]
        if clients:
            key, _ = load_or_create_key(data_dir.pickup_onion_key_file)
            added = tor.add_onion(
                key.add_onion_argument(),
                [(VIRTUAL_PORT, service.target)],
                expected=key.address,
                client_keys=[c.tor_argument() for c in clients],
            )
            services.append(Service(PICKUP, key.address, service.target, added.client_keys))
            message = f"The running server now authorises {added.client_keys} client(s)."
        else:
            message = "The running server withdrew the pickup service: it has no client left."
    finally:
        tor.close()
    updated = Status(**{**status.__dict__, "services": services})
    write_private_file(data_dir.onion_status_file, updated.to_json(), replace=True)
    return message


def describe(
    tor_config: TorConfig, data_dir: DataDir, status: Status | None
) -> list[tuple[str, str]]:
    """``blagh status``'s lines about tor and the onion services, as (label, text) pairs."""
    if status is None:
        return [("onion services", "none: blagh serve is not running")]
    lines = [("tor", f"{status.tor}, version {status.tor_version}")]
    published: set[str] = set()
    try:
        tor = connect_to_running(tor_config, data_dir, status)
    except OnionError as error:
        lines.append(("tor state", f"not reachable: {error}"))
    else:
        try:
            progress, summary = tor.bootstrap()
            lines.append(("tor state", f"bootstrapped {progress}% ({summary})"))
            published = set(tor.detached_onions())
        except OnionError as error:
            lines.append(("tor state", f"not answering: {error}"))
        finally:
            tor.close()
    for service in status.services:
        if service.address not in published:
            state = "missing from tor"
        elif not status.network:
            state = "created; not published: tor's network is disabled"
        else:
            state = "published"
        label = "source onion" if service.role == SOURCE else "pickup onion"
        text = f"{service.url} -> {service.target}, {state}"
        if service.role == PICKUP:
            text += f", {service.clients} authorised client(s)"
        lines.append((label, text))
    lines.append(("proof-of-work", status.pow.describe()))
    if status.service(PICKUP) is None:
        lines.append(("pickup onion", "not published"))
    return lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
