"""The test runner's network namespace has loopback and nothing else."""

import os
import subprocess
import sys
from pathlib import Path

OFFLINE = Path(__file__).resolve().parent.parent / "scripts" / "offline.sh"
LIST_INTERFACES = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"


def test_offline_wrapper_leaves_only_loopback():
    result = subprocess.run(
        [str(OFFLINE), sys.executable, "-c", LIST_INTERFACES],
        capture_output=True,
        text=True,
        check=True,
    )
    if os.geteuid() == 0:
        assert result.stdout.strip() == "['lo']"
    else:
        assert "network namespaces unavailable" in result.stderr


def test_loopback_is_up_inside_the_namespace():
    """Servers in later tests bind 127.0.0.1: loopback must be usable, not just present."""
    script = (
        "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
        "c = socket.create_connection(s.getsockname()); print('connected')"
    )
    result = subprocess.run(
        [str(OFFLINE), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "connected"
