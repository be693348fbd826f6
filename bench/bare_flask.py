"""A bare Flask app under Blagh's own gunicorn settings: the floor for a no-JS report.

Bench only (``bench/availability_bench.py`` runs it as ``python bench/bare_flask.py DATA_DIR
HOST PORT``).  ``POST /report`` does what any durable form handler must, and nothing more: parse
the multipart form, write the description to a file (temporary name, fsync, rename, fsync of the
folder), insert one row into a plain SQLite database (WAL, synchronous=FULL, as Blagh's store
is opened, but not encrypted), answer 303.  No sealing, no token check, no SQLCipher, no
templates.  Blagh at ≥ 0.9 × this says its own work (envelopes, SQLCipher, the writer, sessions)
costs little beside the disk and HTTP work every server pays.

It runs through :class:`source_interface.server.GunicornServer`, the class ``blagh serve``
uses, so the worker class, threads and every other gunicorn setting are the same whatever
``blagh serve`` is switched to.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import threading
from pathlib import Path

from flask import Flask, redirect, request
from flask.typing import ResponseReturnValue

from blagh.config import read_config_file
from blagh.datadir import DataDir
from source_interface.server import GunicornServer


def create_bare_app(folder: Path) -> Flask:
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    database = folder / "bare.db"
    local = threading.local()

    def db() -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(local, "db", None)
        if connection is None:
            connection = sqlite3.connect(database, isolation_level=None, timeout=30)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("CREATE TABLE IF NOT EXISTS reports (id TEXT, size INTEGER)")
            local.db = connection
        return connection

    app = Flask(__name__)

    @app.get("/")
    def landing() -> ResponseReturnValue:
        return "<!doctype html><title>bare</title><p>bare"

    @app.post("/report")
    def report() -> ResponseReturnValue:
        description = request.form.get("description", "").encode("utf-8")
        name = secrets.token_hex(16)
        temp = files / f"{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, description)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, files / name)
        folder_fd = os.open(files, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
        db().execute("INSERT INTO reports (id, size) VALUES (?, ?)", (name, len(description)))
        return redirect("/report/received", 303)

    return app


class BareServer(GunicornServer):  # type: ignore[misc]
    def __init__(self, data_dir: DataDir, host: str, port: int) -> None:
        config = read_config_file(data_dir.config_file)
        self._folder = data_dir.path / "bare"
        super().__init__(
            config,
            bind=f"{host}:{port}",
            workers=config.source_interface.workers,
            proc_name="blagh-bare-bench",
            on_starting=lambda _arbiter: None,
        )

    def load(self) -> Flask:
        return create_bare_app(self._folder)


if __name__ == "__main__":
    data, host, port = sys.argv[1:]
    BareServer(DataDir(Path(data)), host, int(port)).run()
