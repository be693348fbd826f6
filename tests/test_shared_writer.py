"""The shared writer (source_interface/store/shared_writer.py) on a real SQCipher index: writes
and their exceptions travel as they are, the writes that arrive together share one batch,
nothing but a write of the index is accepted, and a writer killed in a flood loses no write it
acknowledged while the writes sent during its restart wait for the next one.

The gunicorn side (the arbiter that runs and restarts the writer) is in
tests/test_source_gunicorn.py."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlcipher3

from blagh.errors import SetupError
from blagh.offload import Busy
from blagh.sqlcipher import connect
from source_interface.diskspace import FreeSpace
from source_interface.health import health_app
from source_interface.store import Store, shared_writer
from source_interface.store.index import (
    DuplicateSubmission,
    Index,
    NewSource,
    Source,
    Submission,
    new_id,
)
from source_interface.store.shared_writer import (
    Refused,
    RemoteWrites,
    WriterService,
    WriterUnavailable,
    decode,
    encode,
    listen,
)

KEY = bytes(range(32))
ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import signal, socket, sys
from pathlib import Path
from source_interface.store.index import Index
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
index = Index(Path(sys.argv[1]), bytes.fromhex(sys.stdin.readline()))
listener = socket.socket(fileno=int(sys.argv[2]))
print("ready", flush=True)
index.serve_writes(listener, lambda: bool(stopping))
index.close()
"""


@contextlib.contextmanager
def service_thread(index: Index, listener: socket.socket) -> Iterator[WriterService]:
    service = index.write_service(listener)
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop.is_set, 0.05))
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(timeout=30)


def writer_process(db: Path, listener: socket.socket) -> subprocess.Popen[str]:
    """A writer in a process of its own, on ``listener`` (made here, as the arbiter makes it,
    so a writer started after it serves what waited in its backlog)."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(listener.fileno())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=[listener.fileno()],
        cwd=ROOT,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(KEY.hex() + "\n")
    process.stdin.close()
    assert process.stdout.readline() == "ready\n"
    return process


def count_sources(db: Path) -> int:
    check = connect(db, KEY)
    try:
        (count,) = check.execute("SELECT count(*) FROM sources").fetchone()
        return int(count)
    finally:
        check.close()


def test_writes_and_their_exceptions_travel_as_they_are(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    with contextlib.closing(listen(tmp_path / "w.sock")) as listener:
        server = Index(db, KEY)
        with service_thread(server, listener):
            client = Index(db, KEY, tmp_path / "w.sock")
            source = client.create_source(b"v" * 32, b"p" * 32)
            assert isinstance(source, Source)
            assert client.source(source.id) == source  # the worker's own connection reads it

            source_id = new_id()
            first = Submission(b"k" * 32, "received")
            new_source = NewSource(None, None)
            report = client.add_report(source_id, [], new_source=new_source, submission=first)
            assert client.reports_of(source_id) == [report]
            with pytest.raises(DuplicateSubmission) as duplicate:
                client.add_report(source_id, [], submission=Submission(b"k" * 32, "other"))
            assert duplicate.value.outcome == "received"
            with pytest.raises(sqlcipher3.IntegrityError):
                client.create_source(b"v" * 32, None)  # the verifier is unique
            assert client.reports_of(source_id) == [report]  # the failed writes left nothing
            client.close()
        server.close()


def test_requests_that_arrive_together_share_one_transaction(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    server = Index(db, KEY)
    with contextlib.closing(listen(tmp_path / "w.sock")) as listener:
        service = server.write_service(listener)
        clients = []
        for i in range(6):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(tmp_path / "w.sock"))
            client.sendall(encode(("create_source", (bytes([i]) * 32, None), {})))
            clients.append(client)
        # A Unix socket queues what was sent before the accept: the first turn accepts the six,
        # the second reads their requests, all there, and runs them as one batch.
        service.serve_once(0)
        service.serve_once(5)
        assert service.batches == 1
        for client in clients:
            client.settimeout(5)
            ok, value = decode(shared_writer._read_frame(client))
            assert ok and isinstance(value, Source)
            client.close()
        service.close()
    assert count_sources(db) == 6
    server.close()


def test_only_writes_of_the_index_are_accepted(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    server = Index(db, KEY)
    # A global that is not an allowed record or exception class is refused at unpickling.
    with pytest.raises(Refused):
        decode(pickle.dumps(os.system))
    with pytest.raises(Refused):
        decode(pickle.dumps(("create_source", (subprocess.Popen,), {})))
    listener = listen(tmp_path / "w.sock")
    with contextlib.closing(listener), service_thread(server, listener):
        for request in (
            encode(("close", (), {})),  # a method of the index that is not a write
            encode(("_scrub", (), {})),
            encode(["create_source", (None, None), {}]),  # not a request's shape
            len(pickle.dumps(os.system)).to_bytes(4, "big") + pickle.dumps(os.system),
            (2**31).to_bytes(4, "big"),  # larger than any frame may be
        ):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as intruder:
                intruder.settimeout(10)
                intruder.connect(str(tmp_path / "w.sock"))
                intruder.sendall(request)
                assert intruder.recv(1) == b""  # dropped, and nothing ran
        client = Index(db, KEY, tmp_path / "w.sock")
        assert client.create_source(None, b"still serving").public_key == b"still serving"
        client.close()
    assert count_sources(db) == 1
    server.close()


def test_a_writer_killed_in_a_flood_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    Index(db, KEY).close()  # made once, before the writers and the worker open it
    listener = listen(tmp_path / "w.sock")
    writer = writer_process(db, listener)
    client = Index(db, KEY, tmp_path / "w.sock")
    acknowledged: list[bytes] = []
    failed: list[BaseException] = []
    lock = threading.Lock()
    stop, enough = threading.Event(), threading.Event()
    wanted = [60]

    def flood() -> None:
        while not stop.is_set():
            verifier = secrets.token_bytes(32)
            try:
                client.create_source(verifier, None)
            except WriterUnavailable as error:
                with lock:
                    failed.append(error)
                continue
            with lock:
                acknowledged.append(verifier)
                if len(acknowledged) >= wanted[0]:
                    enough.set()

    threads = [threading.Thread(target=flood) for _ in range(8)]
    restarted = None
    try:
        for thread in threads:
            thread.start()
        assert enough.wait(60)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        # No writer now: a request sent now waits in the listener's backlog for the next one.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waiting:
            waiting.settimeout(60)
            waiting.connect(str(tmp_path / "w.sock"))
            waiting.sendall(encode(("create_source", (b"w" * 32, None), {})))
            with lock:
                wanted[0] = len(acknowledged) + 60
                enough.clear()
            restarted = writer_process(db, listener)
            ok, value = decode(shared_writer._read_frame(waiting))
            assert ok and isinstance(value, Source)
        assert enough.wait(60)  # the flood goes on with the new writer
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        for process in (writer, restarted):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        client.close()
        listener.close()

    # Only the writes in flight when it died failed: a kept connection to the dead writer
    # refuses a request whole, and the worker sends it on a new one.
    assert len(failed) <= len(threads)
    check = connect(db, KEY)
    stored = {row[0] for row in check.execute("SELECT verifier FROM sources")}
    assert set(acknowledged) | {b"w" * 32} <= stored
    assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    check.close()


def test_a_worker_finds_no_writer(tmp_path: Path) -> None:
    client = RemoteWrites(tmp_path / "nobody.sock")
    with pytest.raises(WriterUnavailable) as error:
        client.run(Index.create_source, None, None, None)
    assert isinstance(error.value, Busy)  # the busy page: "try again in a minute"
    assert "try again" in str(error.value)


def health(store: Store) -> tuple[str, dict[str, object]]:
    """``GET /health`` on the health listener's app: its status line and its JSON."""
    answer: list[str] = []
    app = health_app(store, FreeSpace(store.blobs.root, 0))
    body = b"".join(
        app({"PATH_INFO": "/health", "REQUEST_METHOD": "GET"}, lambda s, h: answer.append(s))
    )
    return answer[0], json.loads(body)


def test_the_health_check_writes_through_the_shared_writer(tmp_path: Path) -> None:
    """The reads of the health check never reach the writer; its write does, so a worker whose
    writer is gone says so (503), and says it no more once a writer answers again."""
    socket_path = tmp_path / "w.sock"
    worker = Store(tmp_path / "store", KEY, socket_path)
    server = Index(tmp_path / "store" / "index.db", KEY)
    try:
        listener = listen(socket_path)
        with contextlib.closing(listener), service_thread(server, listener) as service:
            status, report = health(worker)
            assert (status, report["ok"], report["writes_ok"]) == ("200 OK", True, True)
            assert service.batches == 1  # the check's write, run by the writer
        socket_path.unlink()  # as when the server stopped: nothing listens
        status, report = health(worker)
        assert status == "503 Service Unavailable"
        assert (report["ok"], report["writes_ok"], report["disk_ok"]) == (False, False, True)
        assert report["pending_items"] == 0  # the reads still answer
        listener = listen(socket_path)
        with contextlib.closing(listener), service_thread(server, listener):
            assert health(worker)[0] == "200 OK"
    finally:
        worker.close()
        server.close()


def test_a_socket_path_too_long_is_a_clear_setup_error(tmp_path: Path) -> None:
    long = tmp_path / ("x" * shared_writer.SOCKET_PATH_MAX) / "w.sock"
    with pytest.raises(SetupError, match="too long for a Unix socket"):
        listen(long)


def test_a_reply_in_pieces_is_read_whole() -> None:
    """A reply larger than one read (a purge's list of blobs), arriving in pieces."""
    body = secrets.token_bytes(300_000)
    frame = encode(body)
    left, right = socket.socketpair()
    with left, right:
        sender = threading.Thread(
            target=lambda: (
                [right.sendall(frame[i : i + 3]) for i in range(0, 9, 3)]
                + [right.sendall(frame[9:])]
            )
        )
        sender.start()
        assert decode(shared_writer._read_frame(left)) == body
        sender.join()
        right.close()
        with pytest.raises(ConnectionResetError):
            shared_writer._read_frame(left)
