"""The pickup API and the transfer station: tokens, bundles served whole or by range,
resumed downloads, SOCKS5, and one run through a real gunicorn on loopback."""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from pickup_helpers import (
    Reply,
    Server,
    add_report,
    all_item_ids,
    make_server,
    reply_bundle,
    serve_pickup,
)
from werkzeug.serving import make_server as make_wsgi_server

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.payloads import decode_document
from blagh.pickup_tokens import new_token, token_hash
from crypto.envelope import open_envelope
from source_interface.pickup.app import create_pickup_app
from transfer.client import (
    PARTIAL,
    TransferError,
    download_bundle,
    endpoint,
)

HOST = "127.0.0.1"


@pytest.fixture(params=["sqlcipher", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """On each store backend (PostgreSQL: a database of its own in the session's cluster)."""
    store = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        store = {"backend": "postgresql", "dsn": postgres.new_database(f"p{secrets.token_hex(6)}")}
    server = make_server(tmp_path, store=store)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def token(server: Server) -> str:
    token = new_token()
    assert server.store.index.add_pickup_token("station-1", token_hash(token))
    return token


@pytest.fixture
def app(server: Server) -> Iterator[Flask]:
    app = create_pickup_app(server.config)
    yield app
    app.extensions["blagh-pickup"].store.close()


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def get_bundle(client: FlaskClient, token: str, **headers: str) -> Any:
    response = client.get("/v1/bundle", headers=auth(token, **headers))
    response.get_data()  # read whole, so the bundle file is closed
    response.close()
    return response


def verified(server: Server, data: bytes, path: Path) -> dict[str, Any]:
    path.write_bytes(data)
    with BundleReader(path, [server.signing_key.public().verify], "blagh-pickup") as reader:
        return reader.manifest


# --- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + new_token()},
        {"Authorization": "Basic c3RhdGlvbjpwYXNz"},
        {"Authorization": "bearer blagh-pickup-v1-" + "0" * 64},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/bundle"), ("POST", "/v1/replies"), ("GET", "/"), ("GET", "/nothing-here")],
)
def test_without_a_valid_token_everything_is_a_bare_401(
    app: Flask, token: str, headers: dict[str, str], method: str, path: str
) -> None:
    response = app.test_client().open(path, method=method, headers=headers, data=b"x" * 10)
    assert response.status_code == 401
    assert response.data == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "X-Blagh-Bundle" not in response.headers


def test_with_a_token_unknown_paths_are_404(app: Flask, token: str) -> None:
    response = app.test_client().get("/v2/anything", headers=auth(token))
    assert response.status_code == 404
    assert response.headers["Cache-Control"] == "no-store"


def test_token_commands_keep_only_a_hash(server: Server, app: Flask, tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = str(server.data_dir.path)
    out = tmp_path / "station-2.token"
    made = runner.invoke(
        cli, ["pickup-token", "add", "--data-dir", data_dir, "station-2", "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    assert out.stat().st_mode & 0o777 == 0o600
    secret = out.read_text().strip()
    assert secret.startswith("blagh-pickup-v1-")
    printed = runner.invoke(cli, ["pickup-token", "add", "--data-dir", data_dir, "station-3"])
    assert printed.exit_code == 0
    (shown,) = [line for line in printed.stdout.splitlines() if line.startswith("blagh-pickup")]

    listed = runner.invoke(cli, ["pickup-token", "list", "--data-dir", data_dir])
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["station-2", "station-3"]
    stored = server.rows("SELECT name, token_hash FROM pickup_tokens")
    assert secret.encode() not in repr(stored).encode() and shown not in repr(stored)
    assert dict(stored)["station-2"] == token_hash(secret)

    client = app.test_client()
    assert get_bundle(client, secret).status_code == 200
    twice = runner.invoke(cli, ["pickup-token", "add", "--data-dir", data_dir, "station-2"])
    assert twice.exit_code == 1 and "exists already" in twice.stderr
    removed = runner.invoke(cli, ["pickup-token", "remove", "--data-dir", data_dir, "station-2"])
    assert removed.exit_code == 0
    assert get_bundle(client, secret).status_code == 401, "revoked at once"
    assert get_bundle(client, shown).status_code == 200
    bad = runner.invoke(cli, ["pickup-token", "add", "--data-dir", data_dir, "../x"])
    assert bad.exit_code == 1 and "not a usable token name" in bad.stderr


# --- pickup bundles ----------------------------------------------------------------------------


def test_the_bundle_holds_every_undelivered_item_signed_by_the_server(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    with_codename = add_report(server, "first", files=2)
    anonymous = add_report(server, "second", codename=False)
    add_report(server, "a follow-up", files=0, reporter=with_codename)
    response = get_bundle(app.test_client(), token)
    assert response.status_code == 200
    assert response.headers["Accept-Ranges"] == "bytes"
    manifest = verified(server, response.data, tmp_path / "b")

    assert manifest["format"] == "blagh-pickup" and manifest["version"] == 1
    assert manifest["bundle"] == response.headers["X-Blagh-Bundle"]
    assert response.headers["X-Blagh-Items"] == "6"
    assert manifest["analysts"] == [k.to_line() for k in server.config.recipients.analysts]
    sources = {s["id"]: s["public_key"] for s in manifest["sources"]}
    assert sources == {
        with_codename.source_id: (with_codename.public_key or b"").hex(),
        anonymous.source_id: None,
    }
    # Reports by day, then by id: not in the order they came (docs/threat-model.md).
    assert sorted(r["source"] for r in manifest["reports"]) == sorted(
        [with_codename.source_id, anonymous.source_id, with_codename.source_id]
    )
    assert [(r["day"], r["id"]) for r in manifest["reports"]] == sorted(
        (r["day"], r["id"]) for r in manifest["reports"]
    )
    kinds = [(i["report"], i["kind"], i["seq"]) for i in manifest["items"]]
    first, third = (r.id for r in with_codename.reports)
    second = anonymous.reports[0].id
    assert sorted(kinds) == sorted(
        [
            (first, "fields", 1),
            (first, "file", 2),
            (first, "file", 3),
            (second, "fields", 1),
            (second, "file", 2),
            (third, "fields", 1),
        ]
    )
    with BundleReader(tmp_path / "b", [server.signing_key.public().verify], "blagh-pickup") as r:
        item = next(i for i in manifest["items"] if i["report"] == first and i["kind"] == "fields")
        plain = open_envelope(r.read_item(item["id"]), [server.analyst.encryption_secret])
    assert decode_document(plain, "report")["description"] == "first"


def test_the_same_items_give_the_same_bytes_and_ranges_resume(
    server: Server, app: Flask, token: str
) -> None:
    add_report(server, files=3)
    client = app.test_client()
    whole = get_bundle(client, token)
    again = get_bundle(client, token)
    assert again.data == whole.data and again.headers["ETag"] == whole.headers["ETag"]

    etag = whole.headers["ETag"]
    part = get_bundle(client, token, Range="bytes=1000-", **{"If-Range": etag})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-{len(whole.data) - 1}/{len(whole.data)}"
    assert part.data == whole.data[1000:]
    stale = get_bundle(client, token, Range="bytes=1000-", **{"If-Range": '"old"'})
    assert stale.status_code == 200 and stale.data == whole.data, "changed: sent whole"
    beyond = get_bundle(client, token, Range=f"bytes={len(whole.data)}-", **{"If-Range": etag})
    assert beyond.status_code == 416


def test_new_items_make_a_new_bundle_and_the_old_copy_goes(
    server: Server, app: Flask, token: str
) -> None:
    add_report(server)
    client = app.test_client()
    first = get_bundle(client, token)
    cached = sorted(p.name for p in server.store.pickup_dir.iterdir())
    assert len(cached) == 1
    add_report(server)
    second = get_bundle(client, token)
    assert second.headers["X-Blagh-Bundle"] != first.headers["X-Blagh-Bundle"]
    assert second.headers["X-Blagh-Items"] == "4"
    assert sorted(p.name for p in server.store.pickup_dir.iterdir()) != cached
    assert len(list(server.store.pickup_dir.iterdir())) == 1


def test_no_copy_of_a_deleted_report_outlives_it(server: Server, app: Flask, token: str) -> None:
    """A reporter deleting everything also deletes the pickup bundle that copied it."""
    reporter = add_report(server, "delete me")
    response = get_bundle(app.test_client(), token)
    envelopes = [server.store.read_blob(item.blob) for item in reporter.reports[0].items]
    assert all(e in response.data for e in envelopes)
    server.store.delete_source(reporter.source_id)
    for path in server.store.pickup_dir.iterdir():
        assert not any(e in path.read_bytes() for e in envelopes)
    assert get_bundle(app.test_client(), token).headers["X-Blagh-Items"] == "0"


def test_a_bundle_with_nothing_new_is_valid_and_empty(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    response = get_bundle(app.test_client(), token)
    assert response.status_code == 200
    assert verified(server, response.data, tmp_path / "b")["items"] == []


def test_acknowledged_items_leave_the_bundle(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    first = add_report(server)
    client = app.test_client()
    bundle = get_bundle(client, token)
    acked = [i["id"] for i in verified(server, bundle.data, tmp_path / "b")["items"]]
    add_report(server)
    path = reply_bundle(
        tmp_path / "r",
        server.analyst,
        [Reply(first.reports[0].id, first.public_key or b"")],
        acknowledged=acked,
    )
    answer = client.post("/v1/replies", data=path.read_bytes(), headers=auth(token))
    assert answer.status_code == 200, answer.json
    assert answer.json is not None
    assert answer.json["summary"] == "1 reply stored, 2 items acknowledged, 0 reports deleted"
    after = verified(server, get_bundle(client, token).data, tmp_path / "b2")
    assert len(after["items"]) == 2 and not {i["id"] for i in after["items"]} & set(acked)
    assert all(i["kind"] != "reply" for i in after["items"])


def test_a_refused_upload_says_which_check_failed_and_leaves_nothing(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    reporter = add_report(server)
    path = reply_bundle(
        tmp_path / "r",
        server.analyst,
        [Reply(reporter.reports[0].id, reporter.public_key or b"")],
        acknowledged=all_item_ids(server),
    )
    data = bytearray(path.read_bytes())
    data[1100] ^= 1  # inside the first item
    before = server.counts()
    client = app.test_client()
    answer = client.post("/v1/replies", data=bytes(data), headers=auth(token))
    assert answer.status_code == 400
    assert answer.json is not None
    error = answer.json["error"]
    assert error.startswith("the uploaded bundle") and str(server.store.pickup_dir) not in error
    assert server.counts() == before
    assert list(server.store.pickup_dir.iterdir()) == []
    empty = client.post("/v1/replies", data=b"", headers=auth(token))
    assert empty.status_code == 400


def test_export_bundle_writes_the_bundle_the_api_serves(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    add_report(server, files=2)
    served = get_bundle(app.test_client(), token).data
    out = tmp_path / "usb" / "pickup.bundle"
    out.parent.mkdir()
    result = CliRunner().invoke(
        cli, ["export-bundle", "--data-dir", str(server.data_dir.path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Wrote {out}: 3 items, {len(served)} bytes (bundle ")
    assert out.read_bytes() == served
    assert out.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["pickup.bundle"]
    again = CliRunner().invoke(
        cli, ["export-bundle", "--data-dir", str(server.data_dir.path), "--out", str(out)]
    )
    assert again.exit_code == 1 and "already exists" in again.stderr


# --- the transfer station ----------------------------------------------------------------------


class Cutter:
    """WSGI middleware: records each request's range headers, and cuts the next response
    after ``cut_after`` bytes by failing mid-body (the server then drops the connection)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cut_after: int | None = None
        self.seen: list[tuple[str | None, str | None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.seen.append((environ.get("HTTP_RANGE"), environ.get("HTTP_IF_RANGE")))
        body: Iterable[bytes] = self.app(environ, start_response)
        limit, self.cut_after = self.cut_after, None
        if limit is None:
            return body
        return self._cut(body, limit)

    @staticmethod
    def _cut(body: Iterable[bytes], limit: int) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in body:
                if sent + len(chunk) >= limit:
                    yield chunk[: limit - sent]
                    raise ConnectionAbortedError("cut on purpose")
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close:
                close()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    wsgi = make_wsgi_server(HOST, 0, app, threaded=True)
    thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
    thread.start()
    try:
        yield wsgi.server_port
    finally:
        wsgi.shutdown()
        thread.join()


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "station.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def test_an_interrupted_download_resumes_where_it_stopped(
    server: Server, app: Flask, token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_report(server, files=4)
    whole = get_bundle(app.test_client(), token).data
    cutter = Cutter(app.wsgi_app)
    app.wsgi_app = cutter  # type: ignore[method-assign]
    out = tmp_path / "usb"
    out.mkdir()
    with serving(app) as port:
        where = endpoint(f"http://{HOST}:{port}/", None)
        cutter.cut_after = len(whole) // 2
        with pytest.raises(TransferError, match=r"interrupted after .* run the same command"):
            download_bundle(where, token, out)
        assert (out / PARTIAL).stat().st_size == len(whole) // 2
        assert not list(out.glob("pickup-*.bundle")), "nothing half-done under the final name"

        seen: list[tuple[int, int]] = []
        result = download_bundle(
            where,
            token,
            out,
            server_key=server.signing_key.public().verify,
            progress=lambda done, total: seen.append((done, total)),
        )
        assert cutter.seen[-1][0] == f"bytes={len(whole) // 2}-"
        assert cutter.seen[-1][1] is not None
        assert result.resumed_from == len(whole) // 2 and result.items == 5
        assert result.path.read_bytes() == whole
        assert result.path.name == f"pickup-{result.bundle_id}.bundle"
        assert seen[0] == (len(whole) // 2, len(whole)) and seen[-1] == (len(whole), len(whole))
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".pickup.lock")) == [
            result.path.name
        ]

        again = download_bundle(where, token, out)
        assert again.already_there and again.path == result.path


def test_a_partial_download_of_a_bundle_that_changed_starts_again(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    add_report(server, files=4)
    cutter = Cutter(app.wsgi_app)
    app.wsgi_app = cutter  # type: ignore[method-assign]
    out = tmp_path / "usb"
    out.mkdir()
    with serving(app) as port:
        where = endpoint(f"http://{HOST}:{port}/", None)
        cutter.cut_after = 3000
        with pytest.raises(TransferError):
            download_bundle(where, token, out)
        add_report(server)
        result = download_bundle(where, token, out)
    assert result.resumed_from == 0 and result.items == 7
    assert result.path.read_bytes() == get_bundle(app.test_client(), token).data


def test_a_download_that_does_not_verify_is_thrown_away(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    add_report(server)
    out = tmp_path / "usb"
    out.mkdir()
    with serving(app) as port:
        where = endpoint(f"http://{HOST}:{port}/", None)
        with pytest.raises(TransferError, match=r"signature does not verify.*download it anew"):
            download_bundle(where, token, out, server_key=bytes(32))
    assert list(out.glob("pickup-*")) == [] and not (out / PARTIAL).exists()


def test_pickup_through_a_socks5_proxy(
    server: Server, app: Flask, token: str, tmp_path: Path
) -> None:
    """The onion name goes to the proxy as a name (tor resolves it), never to a resolver."""
    add_report(server)
    onion = "a" * 56 + ".onion"
    out = tmp_path / "usb"
    out.mkdir()
    with serving(app) as port, socks_proxy({(onion, 80): (HOST, port)}) as (proxy, asked):
        where = endpoint(f"http://{onion}/", f"{HOST}:{proxy}")
        result = download_bundle(where, token, out)
        assert asked == [(onion, 80)]
        assert result.items == 2
        wrong = endpoint("http://" + "b" * 56 + ".onion/", f"{HOST}:{proxy}")
        with pytest.raises(TransferError, match=r"tor could not connect to .*: host unreachable"):
            download_bundle(wrong, token, out)


@contextlib.contextmanager
def socks_proxy(
    routes: dict[tuple[str, int], tuple[str, int]],
) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """A minimal SOCKS5 proxy (no auth, CONNECT by domain name) that maps names to addresses."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.1)  # closing a socket does not wake a thread blocked in accept()
    asked: list[tuple[str, int]] = []
    stop = threading.Event()

    def handle(client: socket.socket) -> None:
        with client:
            client.recv(3)
            client.sendall(b"\x05\x00")
            head = client.recv(5)
            name = client.recv(head[4]).decode()
            (port,) = struct.unpack(">H", client.recv(2))
            asked.append((name, port))
            target = routes.get((name, port))
            if target is None:
                client.sendall(b"\x05\x04\x00\x01" + bytes(6))
                return
            with socket.create_connection(target) as upstream:
                client.sendall(b"\x05\x00\x00\x01" + bytes(6))
                relay(client, upstream)

    def relay(a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], asked
    finally:
        stop.set()
        listener.close()
        thread.join()


def test_the_token_never_goes_in_the_clear_to_another_machine() -> None:
    with pytest.raises(TransferError, match="in the clear"):
        endpoint("http://pickup.example.org/", None)
    with pytest.raises(TransferError, match="no https"):
        endpoint("https://" + "a" * 56 + ".onion/", None)
    assert endpoint("http://" + "a" * 56 + ".onion/", None).socks == ("127.0.0.1", 9050)
    assert endpoint("http://[::1]:8081/", None).socks is None


def test_client_key_and_token_files_are_checked(server: Server, tmp_path: Path) -> None:
    onion = "a" * 56
    key = tmp_path / "station.auth_private"
    key.write_text(f"{'b' * 56}:descriptor:x25519:{'A' * 52}\n")
    key.chmod(0o600)
    token = token_file(tmp_path, new_token())
    runner = CliRunner()
    args = [
        "pickup",
        "--url",
        f"http://{onion}.onion/",
        "--token",
        str(token),
        "--out",
        str(tmp_path),
        "--client-key",
        str(key),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert f"is the client key of {'b' * 56}.onion, not of {onion}.onion" in result.stderr
    key.chmod(0o644)
    result = runner.invoke(cli, args)
    assert "can be read by other users" in result.stderr
    key.write_text("nonsense\n")
    key.chmod(0o600)
    assert "is not an onion client key" in runner.invoke(cli, args).stderr
    token.write_text("not a token\n")
    args = ["pickup", "--url", "http://127.0.0.1:9/", "--token", str(token), "--out", str(tmp_path)]
    assert "holds no pickup token" in runner.invoke(cli, args).stderr


# --- a real gunicorn ---------------------------------------------------------------------------


def test_pickup_and_deliver_through_gunicorn(server: Server, token: str, tmp_path: Path) -> None:
    reporter = add_report(server, "over gunicorn", files=3)
    station = token_file(tmp_path, token)
    out = tmp_path / "usb"
    out.mkdir()
    runner = CliRunner()
    with serve_pickup(server.data_dir, tmp_path) as port:
        url = f"http://{HOST}:{port}/"
        import http.client

        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.request("GET", "/v1/bundle")
        response = connection.getresponse()
        assert (response.status, response.read()) == (401, b"")
        assert response.getheader("Server") is None
        connection.close()

        server_line = server.signing_key.public().to_line()
        picked = runner.invoke(
            cli,
            [
                "pickup",
                "--url",
                url,
                "--token",
                str(station),
                "--out",
                str(out),
                "--server-key",
                server_line,
            ],
        )
        assert picked.exit_code == 0, picked.output
        (bundle,) = out.glob("pickup-*.bundle")
        assert bundle.stat().st_mode & 0o777 == 0o600  # was 0755: open()'s default mode
        assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
        assert (
            picked.stdout
            == f"Downloaded {bundle}: 4 items, {bundle.stat().st_size} bytes; verified.\n"
        )
        with BundleReader(bundle, [server.signing_key.public().verify], "blagh-pickup") as reader:
            acked = [item["id"] for item in reader.manifest["items"]]

        reply = Reply(reporter.reports[0].id, reporter.public_key or b"", "Received, thanks.")
        replies = reply_bundle(
            tmp_path / "replies.bundle", server.analyst, [reply], acknowledged=acked
        )
        delivered = runner.invoke(
            cli, ["deliver", str(replies), "--url", url, "--token", str(station)]
        )
        assert delivered.exit_code == 0, delivered.output
        assert delivered.stdout == (
            f"Delivered {replies}: 1 reply stored, 4 items acknowledged, 0 reports deleted.\n"
        )
        again = runner.invoke(cli, ["deliver", str(replies), "--url", url, "--token", str(station)])
        assert again.exit_code == 1
        assert "HTTP 400" in again.stderr and "was imported before" in again.stderr

        empty = runner.invoke(
            cli, ["pickup", "--url", url, "--token", str(station), "--out", str(out)]
        )
        assert empty.exit_code == 0 and ": 0 items," in empty.stdout
        wrong = token_file(tmp_path / "usb", new_token())
        refused = runner.invoke(
            cli, ["pickup", "--url", url, "--token", str(wrong), "--out", str(out)]
        )
        assert refused.exit_code == 1
        assert "refused the token (HTTP 401)" in refused.stderr
    (row,) = server.rows("SELECT blob FROM items WHERE kind = 'reply'")
    assert reporter.secret_key is not None
    opened = open_envelope(server.store.read_blob(row[0]), [reporter.secret_key])
    assert decode_document(opened, "reply")["text"] == "Received, thanks."


def test_serve_pickup_refuses_when_pickup_is_off(server: Server) -> None:
    result = CliRunner().invoke(cli, ["serve-pickup", "--data-dir", str(server.data_dir.path)])
    assert result.exit_code == 1
    assert "[pickup] enabled is false" in result.stderr
