"""A small cookie-keeping HTTP client that posts forms the way a browser without JavaScript does.

A plain module, not a conftest: test_source_gunicorn.py (over loopback) and onion_helpers.py (over
tor's SOCKS port) subclass :class:`FormBrowser` with their own connection.
"""

from __future__ import annotations

import http.client
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CODENAME = re.compile(r'<p class="codename"[^>]*>([^<]+)</p>')
MESSAGE_FORM = re.compile(r'action="/followup/([0-9a-f]+)/message"')


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Upload:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def multipart(fields: Sequence[tuple[str, str]], files: Sequence[Upload]) -> tuple[str, bytes]:
    """``(content type, body)`` of a form as a browser sends it (files under ``files``)."""
    boundary = "----blagh" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for upload in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{upload.filename}"\r\nContent-Type: {upload.content_type}\r\n\r\n'.encode()
            + upload.content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


class FormBrowser:
    """One visitor: keeps cookies, sends one request per connection (made by
    :meth:`connection`), follows nothing."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.cookies: dict[str, str] = {}
        self.extra_headers = headers or {}

    def connection(self) -> http.client.HTTPConnection:
        raise NotImplementedError

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Reply:
        headers = dict(self.extra_headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if content_type:
            headers["Content-Type"] = content_type
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for line in reply.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(
        self, path: str, fields: Sequence[tuple[str, str]], files: Sequence[Upload] = ()
    ) -> Reply:
        content_type, body = multipart(fields, files)
        return self.request("POST", path, body, content_type)

    def token(self, path: str) -> str:
        """GET a page with a form and return its anti-forgery token (setting its cookie)."""
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status)
        found = FORM_TOKEN.search(reply.text)
        assert found, path
        return found.group(1)
