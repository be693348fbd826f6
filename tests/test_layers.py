"""The layer rule (scripts/lint_layers.py, docs/architecture.md) catches what it should and
passes the real tree."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lint_layers", ROOT / "scripts" / "lint_layers.py")
assert _spec is not None and _spec.loader is not None
lint_layers = importlib.util.module_from_spec(_spec)
sys.modules["lint_layers"] = lint_layers  # its dataclass looks its module up there
_spec.loader.exec_module(lint_layers)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _layered(root: Path) -> dict[str, str]:
    """A small tree that keeps the rule: every layer, each importing only below itself."""
    return {
        "crypto/__init__.py": "",
        "crypto/keys.py": "import os\n",
        "blagh/__init__.py": "",
        "blagh/config.py": "from crypto import keys\n",
        "blagh/web/__init__.py": "",
        "blagh/web/headers.py": "from blagh.config import *\n",
        "source_interface/__init__.py": "",
        "source_interface/app.py": "from blagh.web import headers\nfrom . import views\n",
        "source_interface/views.py": "from .. import blagh\nimport flask\n",
        "journalist_interface/__init__.py": "",
        "journalist_interface/vault.py": "from blagh.config import Config\n",
        "onion/__init__.py": "",
        "transfer/__init__.py": "",
        "transfer/client.py": "import blagh.config\n",
        "blagh/cli/__init__.py": "from blagh.cli import server, workstation\n",
        "blagh/cli/common.py": "from blagh import config\n",
        "blagh/cli/server.py": "from blagh.cli.common import x\nimport source_interface.app\n",
        "blagh/cli/workstation.py": (
            "from blagh.cli import common\ndef run():\n    from journalist_interface import vault\n"
        ),
    }


def test_a_layered_tree_passes(tmp_path: Path) -> None:
    assert lint_layers.check(_tree(tmp_path, _layered(tmp_path))) == []


def test_imports_up_or_sideways_fail_lazy_and_typing_ones_too(tmp_path: Path) -> None:
    files = _layered(tmp_path)
    files["crypto/keys.py"] = "import blagh.config\n"
    files["blagh/config.py"] = "def load():\n    from onion import service\n"
    files["onion/service.py"] = ""
    files["blagh/web/headers.py"] = "from blagh.cli import workstation\n"
    files["journalist_interface/vault.py"] = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from source_interface.views import thing\n"
    )
    files["transfer/client.py"] = "from onion import *\n"
    problems = lint_layers.check(_tree(tmp_path, files))
    assert problems == [
        "crypto/keys.py:1: crypto.keys imports blagh.config (up a layer: crypto → kernel)",
        "blagh/config.py:2: blagh.config imports onion.service (up a layer: kernel → onion)",
        "blagh/web/headers.py:1: blagh.web.headers imports blagh.cli.workstation "
        "(up a layer: kernel → cli)",
        "journalist_interface/vault.py:3: journalist_interface.vault imports "
        "source_interface.views (sideways, role to role: journalist_interface → source_interface)",
        "transfer/client.py:1: transfer.client imports onion "
        "(sideways, role to role: transfer → onion)",
    ]


def test_cycles_fail_even_through_a_lazy_import(tmp_path: Path) -> None:
    files = _layered(tmp_path)
    files["journalist_interface/audit.py"] = "from journalist_interface.vault import Vault\n"
    files["journalist_interface/vault.py"] = (
        "def audit():\n    from journalist_interface import audit\n"
    )
    files["blagh/cli/common.py"] = "from . import server\n"
    problems = lint_layers.check(_tree(tmp_path, files))
    assert problems == [
        "import cycle: blagh.cli.common ↔ blagh.cli.server",
        "import cycle: journalist_interface.audit ↔ journalist_interface.vault",
    ]


def test_a_cycle_through_typing_only_imports_is_no_cycle(tmp_path: Path) -> None:
    files = _layered(tmp_path)
    files["journalist_interface/audit.py"] = "from journalist_interface import vault\n"
    files["journalist_interface/vault.py"] = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from journalist_interface.audit import Entry\n"
    )
    assert lint_layers.check(_tree(tmp_path, files)) == []


def test_the_repository_keeps_its_layers() -> None:
    assert lint_layers.check(ROOT) == []
    units = {lint_layers.unit_of(module) for module in lint_layers.modules(ROOT)}
    assert units == {"crypto", "kernel", "cli", *lint_layers.ROLES}
