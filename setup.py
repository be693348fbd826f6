"""The build step that pyproject.toml cannot declare: compile the translation catalogs.

The .po files are committed and the .mo files are not (a compiled catalog in git drifts from its
source).  ``python -m build`` therefore compiles them here, into the build folder, so the wheel
carries every catalog the apps load at run time: an installed Blagh never needs ``make catalogs``.

It also refuses to build a wheel without the libsodium.js files the reporters' page loads from
``source_interface/static/vendor`` (copied from node_modules by ``make install``, never committed):
a wheel without them would serve a page whose script is missing, which the tests of a checkout
would never notice.  docs/admin/install.md says how to build.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOG_PACKAGES = ("source_interface", "journalist_interface")
VENDOR_FILES = ("libsodium-sumo.mjs", "libsodium-wrappers.mjs")


class BuildWithCatalogs(build_py):
    """``build_py`` that also writes ``<lang>/LC_MESSAGES/messages.mo`` beside each .po."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # a checkout compiles its catalogs with `make catalogs`
        _check_vendor(Path("source_interface/static/vendor"))
        for package in CATALOG_PACKAGES:
            _compile_catalogs(Path(package) / "translations", Path(self.build_lib) / package)


def _check_vendor(folder: Path) -> None:
    missing = [name for name in VENDOR_FILES if not (folder / name).is_file()]
    if missing:
        raise SystemExit(
            f"{folder}: {', '.join(missing)} missing; run `make install` (it copies libsodium.js "
            "from node_modules) before `python -m build`"
        )


def _compile_catalogs(translations: Path, target_package: Path) -> None:
    # Imported here: babel is a build requirement (pyproject.toml), not needed to read this file.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    sources = sorted(translations.glob("*/LC_MESSAGES/messages.po"))
    if not sources:
        raise SystemExit(f"{translations}: no catalogs found to compile")
    for source in sources:
        with source.open("rb") as po:
            catalog = read_po(po, locale=source.parent.parent.name)
        target = target_package / source.relative_to(translations.parent).with_suffix(".mo")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as mo:
            write_mo(mo, catalog)


setup(cmdclass={"build_py": BuildWithCatalogs})
