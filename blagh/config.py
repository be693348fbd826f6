"""Blagh's settings: one TOML file, loaded once into frozen dataclasses.

App factories take a :class:`Config` and never look at the file, so tests build one in memory and
nothing depends on a global or on the working directory.  Every setting has its default here,
except the analysts' keys, so a file need only hold ``[recipients]`` and what differs.

The loader reads the dataclasses' type hints to know what each key accepts: a field's type says
which TOML value is allowed and ``Annotated`` markers add bounds, so a new setting is a new field
(and its comment in ``config.template.toml``), not new validation code.  Rules that tie two
settings together live in the dataclasses' ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Annotated, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from blagh.errors import ConfigError
from crypto.errors import CryptoError
from crypto.keys import AnalystPublicKey

_TEMPLATE = Path(__file__).with_name("config.template.toml")
"""The commented config file, shipped as package data (not read at import time)."""

MAX_RECIPIENTS = 32
"""Most analyst keys a submission is sealed to: each adds a sealed file key to every envelope."""


@dataclass(frozen=True)
class Bounds:
    """Marker: the allowed values of an integer, or the allowed length of a string or array."""

    low: int
    high: int


@dataclass(frozen=True)
class Distinct:
    """Marker: the items of an array must not repeat (a repeat is always a copy-paste slip)."""


@dataclass(frozen=True)
class ParsedBy:
    """Marker: a string the loader turns into a richer value; ``what`` names it in errors."""

    parse: Callable[[str], object]
    what: str


def _hint(text: str) -> dict[str, str]:
    """Field metadata: advice appended to any error about that field."""
    return {"hint": text}


Port = Annotated[int, Bounds(1, 65535)]
Language = Literal["ar", "fr", "en", "es"]
TorMode = Literal["launch", "attach", "offline", "off"]
StoreBackend = Literal["sqlcipher", "postgresql"]
AnalystLine = Annotated[
    AnalystPublicKey, ParsedBy(AnalystPublicKey.from_line, "an analyst public key line")
]

LANGUAGES: tuple[Language, ...] = get_args(Language)

_KEYGEN_HINT = "paste the public key line that `blagh keygen` printed on the analyst's workstation"

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_LOOPBACK_HINT = (
    "the reporters' app takes plaintext forms (a no-JS report is sealed on arrival): it listens "
    "on this machine only, and tor or an HTTPS proxy on the same machine reaches it"
)
_ONION = re.compile(r"[a-z2-7]{56}\.onion")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: an address only this machine can reach."""
    if host in LOOPBACK_HOSTS:
        return True
    parts = host.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(p.isdigit() and int(p) < 256 and str(int(p)) == p for p in parts)
    )


@dataclass(frozen=True, kw_only=True)
class InstanceConfig:
    """``[instance]``: what this deployment is called and where it keeps its state."""

    name: Annotated[str, Bounds(1, 80)] = "Blagh"
    data_dir: Path = Path("data")


@dataclass(frozen=True, kw_only=True)
class SourceInterfaceConfig:
    """``[source_interface]``: the reporters' web app and the limits it enforces."""

    listen_host: Annotated[str, Bounds(1, 253)] = "127.0.0.1"
    listen_port: Port = 8080
    health_port: Port | None = None
    workers: Annotated[int, Bounds(1, 64)] = 2
    max_upload_mb: Annotated[int, Bounds(1, 10240)] = 500
    max_files_per_report: Annotated[int, Bounds(1, 100)] = 20
    session_idle_minutes: Annotated[int, Bounds(1, 1440)] = 30
    languages: Annotated[tuple[Language, ...], Bounds(1, len(LANGUAGES)), Distinct()] = LANGUAGES
    default_language: Language = "ar"

    def __post_init__(self) -> None:
        if not is_loopback(self.listen_host):
            raise ConfigError(
                f"[source_interface] listen_host {_show(self.listen_host)} must be a loopback "
                f"address (127.0.0.1, ::1 or localhost): {_LOOPBACK_HINT}; for an HTTPS "
                "address see [clearnet] (docs/clearnet.md)"
            )
        if self.default_language not in self.languages:
            raise ConfigError(
                f"[source_interface] default_language {_show(self.default_language)} must be "
                f"one of languages ({', '.join(_show(lang) for lang in self.languages)})"
            )


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    """``[limits]``: what one client, and all clients together, may hold of the server.

    Attackers are part of the user base: every resource a request can pin (a connection, a
    partial upload, a draft, disk space, a codename derivation) is bounded per client and in
    total, and a client past a bound gets a clear page at once instead of waiting.
    """

    max_connections_per_worker: Annotated[int, Bounds(16, 20000)] = 2000
    header_timeout_seconds: Annotated[int, Bounds(2, 600)] = 30
    min_body_rate_bytes: Annotated[int, Bounds(1, 1024 * 1024)] = 1024
    body_rate_window_seconds: Annotated[int, Bounds(1, 3600)] = 60
    free_space_floor_mb: Annotated[int, Bounds(0, 1024 * 1024)] = 2048
    max_partial_uploads: Annotated[int, Bounds(1, 100000)] = 1000
    max_partial_uploads_per_form: Annotated[int, Bounds(1, 1000)] = 20
    max_partial_upload_total_mb: Annotated[int, Bounds(1, 10 * 1024 * 1024)] = 20480
    max_draft_total_mb: Annotated[int, Bounds(1, 10 * 1024 * 1024)] = 4096
    derivations_per_worker: Annotated[int, Bounds(1, 64)] = 2
    derivation_queue_per_worker: Annotated[int, Bounds(0, 10000)] = 16


@dataclass(frozen=True, kw_only=True)
class EmergencyLabels:
    """``labels = { ar = "…", fr = "…" }``: an emergency number's label in each page language.

    The operator's own label cannot go through the catalogs (it is not in the code), yet a
    frightened reporter must read whom they are calling in their own language; one field per
    ``Language`` (a test keeps them in step), and a language left empty shows ``label``.
    """

    ar: Annotated[str, Bounds(0, 80)] = ""
    fr: Annotated[str, Bounds(0, 80)] = ""
    en: Annotated[str, Bounds(0, 80)] = ""
    es: Annotated[str, Bounds(0, 80)] = ""

    def get(self, language: str) -> str:
        """The label written for ``language``, or "" (then ``label`` is shown)."""
        return str(getattr(self, language)) if language in LANGUAGES else ""


@dataclass(frozen=True, kw_only=True)
class EmergencyNumber:
    """One entry of ``[emergency] numbers``: whom to call, and the number to dial."""

    label: Annotated[str, Bounds(1, 80)]
    number: Annotated[str, Bounds(1, 32)] = field(
        metadata=_hint('write the number as a string, e.g. number = "112"')
    )
    labels: EmergencyLabels = field(default_factory=EmergencyLabels)


@dataclass(frozen=True, kw_only=True)
class EmergencyConfig:
    """``[emergency]``: the warning on the landing page that a report is not an emergency call."""

    text: Annotated[str, Bounds(0, 500)] = (
        "If someone is in immediate danger, call the emergency services now: "
        "reports sent here are not read around the clock."
    )
    numbers: Annotated[tuple[EmergencyNumber, ...], Bounds(0, 10)] = (
        EmergencyNumber(label="Emergency services", number="112"),
    )


@dataclass(frozen=True, kw_only=True)
class RecipientsConfig:
    """``[recipients]``: the analysts every submission is sealed to (no default: the one must)."""

    analysts: Annotated[tuple[AnalystLine, ...], Bounds(1, MAX_RECIPIENTS), Distinct()] = field(
        metadata=_hint(_KEYGEN_HINT)
    )


@dataclass(frozen=True, kw_only=True)
class TorConfig:
    """``[tor]``: how the source interface is published as an onion service."""

    mode: TorMode = "launch"
    control_socket: Path | None = None
    control_port: Port | None = None
    control_password_file: Path | None = None
    pow_defense: bool = True
    pow_queue_rate: Annotated[int, Bounds(0, 2**31 - 1)] = 250
    pow_queue_burst: Annotated[int, Bounds(1, 2**31 - 1)] = 2500
    max_streams_per_circuit: Annotated[int, Bounds(0, 65535)] = 20
    max_streams_close_circuit: bool = True

    def __post_init__(self) -> None:
        has_socket = self.control_socket is not None
        has_port = self.control_port is not None
        if has_socket and has_port:
            raise ConfigError("[tor] set control_socket or control_port, not both")
        if self.mode == "attach" and not (has_socket or has_port):
            raise ConfigError(
                '[tor] mode = "attach" needs control_socket or control_port: '
                "where the running tor's control interface is"
            )
        if self.mode != "attach" and (has_socket or has_port):
            key = "control_socket" if has_socket else "control_port"
            raise ConfigError(
                f'[tor] {key} is only used with mode = "attach" (mode is {_show(self.mode)}): '
                'remove it, or set mode = "attach"'
            )
        if self.mode != "attach" and self.control_password_file is not None:
            raise ConfigError(
                '[tor] control_password_file is only used with mode = "attach" (mode is '
                f'{_show(self.mode)}): remove it, or set mode = "attach"'
            )
        if self.pow_queue_rate and self.pow_queue_burst < self.pow_queue_rate:
            raise ConfigError(
                f"[tor] pow_queue_burst ({self.pow_queue_burst}) must not be below "
                f"pow_queue_rate ({self.pow_queue_rate}): tor refuses such a queue"
            )


@dataclass(frozen=True, kw_only=True)
class PickupConfig:
    """``[pickup]``: the analysts' pickup API, an onion service for the transfer station."""

    enabled: bool = False
    listen_port: Port = 8081


@dataclass(frozen=True, kw_only=True)
class ClearnetConfig:
    """``[clearnet]``: an HTTPS address beside the onion one, behind a reverse proxy on the
    same machine (docs/clearnet.md).

    It gets a listener of its own so the app always knows which way a request came: forwarded
    headers are honoured there only (tor's connections come from 127.0.0.1 too, and a Tor client
    can send any header), and only there do responses carry ``Strict-Transport-Security``,
    ``Onion-Location`` and ``Secure`` cookies.
    """

    enabled: bool = False
    listen: Annotated[str, Bounds(1, 300)] = "127.0.0.1:8082"
    public_url: Annotated[str, Bounds(0, 300)] = ""
    onion_address: Annotated[str, Bounds(0, 62)] = ""
    hsts_max_age: Annotated[int, Bounds(0, 2 * 365 * 24 * 3600)] = 365 * 24 * 3600

    def __post_init__(self) -> None:
        if self.listen.startswith("unix:"):
            if not self.listen[5:].startswith("/"):
                raise ConfigError(
                    f"[clearnet] listen {_show(self.listen)}: a unix socket needs an absolute "
                    'path, such as "unix:/run/blagh/clearnet.sock"'
                )
        else:
            host, _, port = self.listen.rpartition(":")
            host = host.removeprefix("[").removesuffix("]")
            if not (port.isdigit() and 1 <= int(port) <= 65535) or not is_loopback(host):
                raise ConfigError(
                    f"[clearnet] listen {_show(self.listen)} must be a loopback address and "
                    'port, such as "127.0.0.1:8082", or "unix:/path/to.sock": the proxy runs '
                    "on this machine, so no plaintext form ever crosses a network"
                )
        if self.enabled and not re.fullmatch(r"https://[^/\s?#]+/?", self.public_url):
            raise ConfigError(
                f"[clearnet] public_url {_show(self.public_url)} must be the site's https:// "
                'address, such as "https://report.example.org"'
            )
        if self.onion_address and not _ONION.fullmatch(self.onion_address):
            raise ConfigError(
                f"[clearnet] onion_address {_show(self.onion_address)} is not an onion "
                "address (56 letters and digits, then .onion); leave it empty and `blagh "
                "serve` finds it in the data folder"
            )

    @property
    def unix_socket(self) -> str | None:
        return self.listen[5:] if self.listen.startswith("unix:") else None

    @property
    def port(self) -> int | None:
        return None if self.unix_socket else int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, kw_only=True)
class RetentionConfig:
    """``[retention]``: how long the server keeps ciphertext it no longer needs."""

    delivered_days: Annotated[int, Bounds(0, 365)] = 7


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """``[store]``: where the server keeps its index and envelopes (docs/scale.md)."""

    backend: StoreBackend = "sqlcipher"
    dsn: str = field(default="", repr=False)
    """A libpq connection string; it may carry a password, so it is never shown (repr, logs,
    errors)."""

    def __post_init__(self) -> None:
        if self.backend == "postgresql" and not self.dsn.strip():
            raise ConfigError(
                '[store] backend = "postgresql" needs dsn = "host=... dbname=... user=..."'
            )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration: one attribute per TOML section, in the file's order."""

    instance: InstanceConfig = field(default_factory=InstanceConfig)
    source_interface: SourceInterfaceConfig = field(default_factory=SourceInterfaceConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    emergency: EmergencyConfig = field(default_factory=EmergencyConfig)
    recipients: RecipientsConfig = field(
        metadata=_hint(f"add a [recipients] section with analysts = [...]; {_KEYGEN_HINT}")
    )
    tor: TorConfig = field(default_factory=TorConfig)
    pickup: PickupConfig = field(default_factory=PickupConfig)
    clearnet: ClearnetConfig = field(default_factory=ClearnetConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        clearnet = self.clearnet
        if clearnet.enabled and clearnet.port in (
            self.source_interface.listen_port,
            self.pickup.listen_port,
        ):
            # The listener is told apart by its port (source_interface/listeners.py).
            raise ConfigError(
                f"[clearnet] listen {_show(clearnet.listen)} has the port of the onion "
                "service (or of the pickup API): give the clearnet listener a port of its own"
            )
        health = self.source_interface.health_port
        if health is not None and health in (
            self.source_interface.listen_port,
            self.pickup.listen_port,
            clearnet.port if clearnet.enabled else None,
        ):
            # The health listener is told apart by its port, like the clearnet one.
            raise ConfigError(
                f"[source_interface] health_port {health} is also the port of another "
                "listener (the onion service, the pickup API or [clearnet]): give it its own"
            )
        if self.pickup.enabled and self.pickup.listen_port == self.source_interface.listen_port:
            raise ConfigError(
                f"[pickup] listen_port {self.pickup.listen_port} is also "
                "[source_interface] listen_port: give the pickup API a port of its own"
            )


def load_config(
    mapping: Mapping[str, object], source: str = "<config>", *, base_dir: Path | None = None
) -> Config:
    """Turn a parsed TOML document into a :class:`Config`, or raise :class:`ConfigError`.

    Pure: ``source`` only names the file in error messages, and relative paths in the settings
    (defaults included) are joined to ``base_dir`` when given, so the server finds its data
    wherever it is started from, and left as they are otherwise.  Unknown sections and keys
    are errors rather than ignored: a misspelt setting silently left at its default is worse.
    """
    return _Loader(source, base_dir).table(Config, mapping, ())


def read_config_file(path: Path) -> Config:
    """Read, parse and validate the TOML file at ``path``; every failure is a ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; create one with `blagh init --data-dir DIR`, "
            "or start from config.example.toml"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the path of the config file") from None
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read it ({(error.strerror or str(error)).lower()}); "
            "check its owner and permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text; save the file as UTF-8") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {_describe_toml_error(error)}") from None
    return load_config(mapping, str(path), base_dir=path.absolute().parent)


def render_config_file(*, data_dir: Path, analysts: Sequence[AnalystPublicKey] = ()) -> str:
    """Return the commented config file (``config.template.toml``) for a new data directory.

    Without analysts, the ``[recipients]`` list holds only a commented example: the file then
    fails validation with a message saying to add a line, rather than loading with nobody able
    to read what is submitted.
    """
    if analysts:
        lines = "\n".join(f"    {_toml_string(key.to_line())}," for key in analysts)
    else:
        lines = '    # "blagh-analyst-v1:...",  <- the line that `blagh keygen` printed'
    template = _TEMPLATE.read_text("utf-8")
    return Template(template).substitute(data_dir=_toml_string(str(data_dir)), analysts=lines)


# --- the loader ------------------------------------------------------------------------------

_T = TypeVar("_T")
_KeyPath = tuple[str | int, ...]
_SCALARS: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    str: "a string",
    Path: "a path (a string)",
}


class _Loader:
    """One load: remembers the file name and base directory that every message and path needs."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def error(self, path: _KeyPath, problem: str, hint: str | None = None) -> ConfigError:
        advice = f"; {hint}" if hint else ""
        return ConfigError(f"{self.source}: {_show_path(path)} {problem}{advice}")

    def table(self, cls: type[_T], raw: object, path: _KeyPath, hint: str | None = None) -> _T:
        if not isinstance(raw, Mapping):
            raise self.error(path, f"must be a table, got {_show(raw)}", hint)
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in raw:
            if key not in fields:
                raise self.unknown(path, str(key), raw[key], list(fields))
        values: dict[str, object] = {}
        for name, spec in fields.items():
            field_hint = spec.metadata.get("hint")
            if name in raw:
                values[name] = self.value(raw[name], hints[name], (*path, name), field_hint)
            elif isinstance(spec.default, Path):
                values[name] = self.relative_to_base(spec.default)
            elif spec.default_factory is hints[name]:
                # A section left out: build it from an empty table, so its paths are resolved.
                values[name] = self.table(hints[name], {}, (*path, name))
            elif (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            ):
                raise self.error((*path, name), "is missing", field_hint)
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{self.source}: {error}") from None

    def unknown(self, path: _KeyPath, key: str, raw: object, known: list[str]) -> ConfigError:
        close = difflib.get_close_matches(key, known, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        if path:
            what = f"key {_show_path((*path, key))}"
        elif isinstance(raw, Mapping):
            what = f"section [{key}]"
        else:
            what = f"key {key} outside any section"
        return ConfigError(f"{self.source}: unknown {what} ({guess}known: {', '.join(known)})")

    def value(self, raw: object, annotation: object, path: _KeyPath, hint: str | None) -> object:
        kind, marks = _unwrap(annotation)
        origin = get_origin(kind)
        parser = next((m for m in marks if isinstance(m, ParsedBy)), None)
        result: object
        if origin is Literal:
            choices = get_args(kind)
            if not isinstance(raw, str) or raw not in choices:
                shown = ", ".join(_show(c) for c in choices)
                raise self.error(path, f"must be one of {shown}, got {_show(raw)}", hint)
            result = raw
        elif origin is tuple:
            if not isinstance(raw, list):
                raise self.error(path, f"must be an array, got {_show(raw)}", hint)
            item_type = get_args(kind)[0]
            result = tuple(
                self.value(item, item_type, (*path, i), hint) for i, item in enumerate(raw)
            )
        elif parser is not None:
            result = self.parse(raw, parser, path, hint)
        elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
            result = self.table(kind, raw, path, hint)
        elif isinstance(kind, type) and kind in _SCALARS:
            result = self.scalar(raw, kind, path, hint)
        else:
            raise TypeError(f"{_show_path(path)}: the config loader cannot handle {kind!r}")
        self.check_marks(result, marks, path, hint)
        return result

    def scalar(self, raw: object, kind: type, path: _KeyPath, hint: str | None) -> object:
        # bool is a subclass of int, and TOML's true must not pass for 1.
        expected = str if kind is Path else kind
        if type(raw) is not expected:
            raise self.error(path, f"must be {_SCALARS[kind]}, got {_show(raw)}", hint)
        if kind is not Path:
            return raw
        assert isinstance(raw, str)
        if not raw:
            raise self.error(path, "must not be empty", hint)
        if raw.startswith("~"):
            raise self.error(path, f"must be a full path: ~ is not expanded, got {_show(raw)}")
        return self.relative_to_base(Path(raw))

    def relative_to_base(self, path: Path) -> Path:
        """Join a relative path, written in the file or a default, to the file's directory."""
        return path if self.base_dir is None else self.base_dir / path

    def parse(self, raw: object, parser: ParsedBy, path: _KeyPath, hint: str | None) -> object:
        if not isinstance(raw, str):
            raise self.error(path, f"must be {parser.what} (a string), got {_show(raw)}", hint)
        try:
            return parser.parse(raw)
        except (CryptoError, ValueError) as error:
            raise self.error(path, f"is not {parser.what} ({error})", hint) from None

    def check_marks(
        self, value: object, marks: Sequence[object], path: _KeyPath, hint: str | None
    ) -> None:
        for mark in marks:
            if isinstance(mark, Bounds):
                self.check_bounds(value, mark, path, hint)
            elif isinstance(mark, Distinct):
                assert isinstance(value, tuple)
                for i, item in enumerate(value):
                    first = value.index(item)
                    if first != i:
                        raise self.error((*path, i), f"repeats {path[-1]}[{first}]", hint)

    def check_bounds(self, value: object, bounds: Bounds, path: _KeyPath, hint: str | None) -> None:
        low, high = bounds.low, bounds.high
        if isinstance(value, int):
            if not low <= value <= high:
                raise self.error(path, f"must be between {low} and {high}, got {value}", hint)
        elif isinstance(value, str):
            if len(value) < low:
                problem = "must not be empty" if not value else f"needs {low} characters or more"
                raise self.error(path, problem, hint)
            if len(value) > high:
                raise self.error(path, f"must be at most {high} characters long", hint)
        elif isinstance(value, tuple):
            if len(value) < low:
                problem = "is empty" if not value else f"holds {len(value)} items"
                raise self.error(path, f"{problem}: it needs at least {_items(low)}", hint)
            if len(value) > high:
                raise self.error(path, f"holds {len(value)} items, at most {high} allowed", hint)


def _unwrap(annotation: object) -> tuple[object, list[object]]:
    """Strip ``Annotated`` and ``| None`` off a type hint: return the bare type and its markers.

    ``None`` cannot be written in TOML: an optional setting is simply left out of the file, so
    a value that is present is checked against the non-None part.
    """
    marks: list[object] = []
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            marks.extend(extra)
        elif get_origin(annotation) in (Union, types.UnionType):
            (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        else:
            return annotation, marks


def _show_path(path: _KeyPath) -> str:
    """``("emergency", "numbers", 1, "label")`` -> ``[emergency] numbers[1].label``."""
    if not path:
        return "the file"
    shown = f"[{path[0]}]"
    for depth, part in enumerate(path[1:]):
        if isinstance(part, int):
            shown += f"[{part}]"
        else:
            shown += f" {part}" if depth == 0 else f".{part}"
    return shown


def _show(value: object) -> str:
    """A TOML value as the user wrote it, short enough for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return str(value)


def _items(count: int) -> str:
    return "one item" if count == 1 else f"{count} items"


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string; TOML forbids raw control characters in one."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif (char < " " and char != "\t") or char == "\x7f":
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_TOML_POSITION = re.compile(r"(?P<problem>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)")


def _describe_toml_error(error: tomllib.TOMLDecodeError) -> str:
    """``Bad thing (at line 3, column 7)`` -> ``line 3, column 7: not valid TOML: bad thing``."""
    message = str(error)
    match = _TOML_POSITION.fullmatch(message)
    if match is None:
        return f"not valid TOML: {message[:1].lower()}{message[1:]}"
    problem = match["problem"]
    return (
        f"line {match['line']}, column {match['column']}: "
        f"not valid TOML: {problem[:1].lower()}{problem[1:]}"
    )
