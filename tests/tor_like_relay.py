"""A relay between a browser and the server that buffers the way a Tor circuit does.

A plain module, standard library only.  Over Tor a browser hands its upload to the local tor
client at once, long before the server has it; when the browser then drops the request (a
second click on Send starts another), what tor had already taken still reaches the server,
which stores the first report too (issue 14: 9 reports became 11).  Loopback alone never shows
it: the browser's connection reset reaches the server at once.  This relay takes everything the
browser sends as fast as it comes, passes it on at ``rate`` bytes a second, and when the browser
hangs up it still delivers what it took before closing its side toward the server.

It counts the requests the browser has handed over whole (:meth:`wait_for_requests`), so a test
can click again exactly when the first upload has left the browser.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque

CHUNK = 64 * 1024


class _RequestCounter:
    """Finds where each HTTP request ends in the bytes a browser sends (Content-Length)."""

    def __init__(self) -> None:
        self.head = b""
        self.body_left = 0
        self.finished: list[str] = []

    def feed(self, data: bytes) -> None:
        while data:
            if self.body_left:
                used = min(self.body_left, len(data))
                self.body_left -= used
                data = data[used:]
                if not self.body_left:
                    self.finished.append(self._line)
                continue
            self.head += data
            data = b""
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                continue
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            lines = head.decode("latin-1").split("\r\n")
            self._line = lines[0]
            length = 0
            for line in lines[1:]:
                name, _colon, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            self.body_left = length
            if not length:
                self.finished.append(self._line)


class BufferingRelay:
    """Listens on a free loopback port and relays to ``target`` as described above."""

    def __init__(self, target_port: int, rate: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.rate = rate
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._changed = threading.Condition()
        self._finished: list[str] = []
        self._answers = 0
        self._undelivered = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                browser, _address = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._relay, args=(browser, server), daemon=True).start()

    def _relay(self, browser: socket.socket, server: socket.socket) -> None:
        taken: deque[bytes] = deque()
        ended = threading.Event()
        have = threading.Condition()
        counter = _RequestCounter()

        def take() -> None:
            """Everything the browser sends, at once, whatever the server's pace."""
            while True:
                try:
                    data = browser.recv(CHUNK)
                except OSError:
                    data = b""
                with self._changed:
                    self._undelivered += len(data)
                with have:
                    if data:
                        taken.append(data)
                    else:
                        ended.set()
                    have.notify()
                if not data:
                    return
                counter.feed(data)
                with self._changed:
                    self._finished.extend(counter.finished)
                    counter.finished.clear()
                    self._changed.notify_all()

        def back() -> None:
            """The server's answers, to the browser if it is still there."""
            while True:
                try:
                    data = server.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                if data.startswith(b"HTTP/1."):  # (an answer's first bytes come in one piece)
                    with self._changed:
                        self._answers += 1
                        self._changed.notify_all()
                with contextlib.suppress(OSError):
                    browser.sendall(data)
            with contextlib.suppress(OSError):
                browser.shutdown(socket.SHUT_WR)

        threading.Thread(target=take, daemon=True).start()
        answers = threading.Thread(target=back, daemon=True)
        answers.start()
        try:
            while True:
                with have:
                    while not taken and not ended.is_set():
                        have.wait()
                    if not taken:
                        break
                    data = taken.popleft()
                for at in range(0, len(data), 16 * 1024):
                    piece = data[at : at + 16 * 1024]
                    server.sendall(piece)
                    with self._changed:
                        self._undelivered -= len(piece)
                        self._changed.notify_all()
                    time.sleep(len(piece) / self.rate)  # the circuit's bandwidth
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)  # all delivered: now the browser's hang-up
            answers.join(timeout=120)
        except OSError:
            pass
        finally:
            for sock in (browser, server):
                with contextlib.suppress(OSError):
                    sock.close()

    def wait_for_requests(self, prefix: str, count: int, timeout: float = 60.0) -> None:
        """Until the browser has handed over ``count`` whole requests whose request line starts
        with ``prefix`` (``"POST /report"``)."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: sum(line.startswith(prefix) for line in self._finished) >= count, timeout
            )
        assert done, f"the browser did not send {count} whole {prefix!r} in {timeout} s"

    def wait_until_settled(self, timeout: float = 120.0) -> None:
        """Until everything the browser sent has reached the server and every whole request
        has had its answer (to the browser, or to nobody if it had hung up)."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: self._undelivered == 0 and self._answers >= len(self._finished), timeout
            )
        assert done, "the relay still has requests on their way or unanswered"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
