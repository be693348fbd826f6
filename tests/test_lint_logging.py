"""The no-request-data-in-logs lint rule catches what it should and passes the real tree."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lint_logging", ROOT / "scripts" / "lint_logging.py")
assert _spec is not None and _spec.loader is not None
lint_logging = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lint_logging)


def test_rule_flags_request_data_in_log_calls(tmp_path):
    package = tmp_path / "source_interface"
    package.mkdir()
    (package / "bad.py").write_text(
        "from flask import request\n"
        "import logging\n"
        "log = logging.getLogger(__name__)\n"
        "def view():\n"
        "    log.info('got %s', request.form['description'])\n"
        "    print(request.remote_addr)\n"
        "    log.info('fine: %d files', 3)\n"
    )
    problems = lint_logging.check(tmp_path)
    assert problems == [
        "source_interface/bad.py:5: request data in a log call",
        "source_interface/bad.py:6: request data in a log call",
    ]


def test_the_project_passes_the_rule():
    assert lint_logging.check(ROOT) == []
