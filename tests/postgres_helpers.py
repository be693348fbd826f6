"""A throw-away PostgreSQL cluster for the tests: Debian's server, made with ``initdb`` in a
temporary folder as an unprivileged user (``initdb`` refuses root), listening on 127.0.0.1 on a
free port and on a unix socket in that folder, trust authentication for local connections only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"))
USER = "postgres"
"""The Debian package's system user: owns the cluster's files and runs the server."""


def _tool(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql (make test does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass(frozen=True)
class Cluster:
    folder: Path
    port: int

    def dsn(self, database: str = "postgres") -> str:
        """Over the unix socket in the cluster's folder."""
        return f"host={self.folder} port={self.port} user={USER} dbname={database}"

    def tcp_dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def new_database(self, name: str) -> str:
        """A new empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


@contextmanager
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="blagh-pg-"))
    try:
        shutil.chown(folder, USER)
        data = folder / "data"
        subprocess.run(
            _as_user(
                [
                    _tool("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        # trust for local connections only: the socket in the folder and 127.0.0.1.
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
            " -c fsync=on -c log_min_messages=warning -c max_connections=200"
        )
        subprocess.run(
            _as_user(
                [
                    _tool("pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-w",
                    "-l",
                    str(folder / "log"),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield Cluster(folder, port)
        finally:
            subprocess.run(
                _as_user([_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
