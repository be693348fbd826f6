"""The workstation app's settings: a frozen dataclass built by the CLI (or a test), never a file.

The app listens on the loopback address only: the workstation is isolated, and the review app
shows decrypted reports to whoever can reach it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8090
LANGUAGES = ("en", "fr", "ar")
MAX_PREVIEW_MEGAPIXELS = 250


@dataclass(frozen=True)
class Unit:
    """Who sends takedown notices (the unit, never a reporter), and the legal references a
    notice cites for each report category (takedown.py, docs/casework.md)."""

    name: str = ""
    contact: str = ""
    legal_basis: dict[str, str] = field(default_factory=dict)
    """Report category -> the legal references, e.g. articles of the penal code."""


def load_unit(path: Path) -> Unit:
    """Read a unit file: ``[unit] name, contact`` and ``[legal_basis] category = "..."``.

    Raises ``ValueError`` saying what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path} cannot be read as TOML: {error}") from None
    unit = data.get("unit", {})
    legal = data.get("legal_basis", {})
    if not isinstance(unit, dict) or not isinstance(legal, dict):
        raise ValueError(f"{path}: [unit] and [legal_basis] are tables")
    name, contact = unit.get("name", ""), unit.get("contact", "")
    if not isinstance(name, str) or not isinstance(contact, str):
        raise ValueError(f"{path}: [unit] name and contact are strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in legal.items()):
        raise ValueError(f'{path}: each [legal_basis] entry is category = "text"')
    unknown = set(data) - {"unit", "legal_basis"}
    if unknown:
        raise ValueError(f"{path}: unknown sections: {', '.join(sorted(unknown))}")
    return Unit(name.strip(), contact.strip(), dict(legal))


@dataclass(frozen=True, kw_only=True)
class WorkstationConfig:
    """Where the vault is, where the app listens, and the limits it keeps."""

    vault: Path
    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    default_language: str = "en"
    idle_minutes: int = 30
    """A session unused this long ends; when the last one ends the vault is locked again."""
    max_import_mb: int = 16 * 1024
    """The largest pickup bundle the import form accepts."""
    preview_megapixels: int = 40
    """Images announcing more pixels than this (16 bits per channel count twice) are not
    decoded for a preview: "too large to preview" (safeview.py).  The decoder's memory cap
    grows with it; ffmpeg refuses images past about 268 megapixels whatever is set here."""
    match_pdq_distance: int = 31
    match_pdq_quality: int = 50
    """Known-content matching (matching.py): a PDQ hash within ``match_pdq_distance`` bits of a
    listed one matches, when its quality is at least ``match_pdq_quality``."""
    purge_closed_after_days: int | None = None
    """Closed cases are purged this many days after closing, once a day while someone is logged
    in (retention.py); None: never by the app (``blagh workstation purge`` still can)."""
    unit: Unit = field(default_factory=Unit)
    """The notifier and legal references of takedown notices (``--unit-config``)."""

    def __post_init__(self) -> None:
        if self.host != LOOPBACK:
            raise ValueError(f"the workstation app listens on {LOOPBACK} only")
        if not 1 <= self.port <= 65535:
            raise ValueError("the port must be between 1 and 65535")
        if self.default_language not in LANGUAGES:
            raise ValueError(f"the language must be one of {', '.join(LANGUAGES)}")
        if self.purge_closed_after_days is not None and self.purge_closed_after_days < 0:
            raise ValueError("purge_closed_after_days must be 0 or more")
        if self.idle_minutes < 1 or self.max_import_mb < 1:
            raise ValueError("idle_minutes and max_import_mb must be positive")
        if not 0 <= self.match_pdq_distance <= 128 or not 0 <= self.match_pdq_quality <= 100:
            raise ValueError("match_pdq_distance is 0 to 128 and match_pdq_quality 0 to 100")
        if not 1 <= self.preview_megapixels <= MAX_PREVIEW_MEGAPIXELS:
            raise ValueError(f"preview_megapixels must be between 1 and {MAX_PREVIEW_MEGAPIXELS}")
