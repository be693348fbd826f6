"""Logs of the online server that say nothing of who came, nor exactly when.

gunicorn's error log stamps every line with the time to the second and, for every malformed
request, writes "Invalid request from ip=…" with the client's address and what it sent; Flask
logs an exception with the request's path and the time.  On a seized server those lines would
be a record of visits.  So here:

* no line carries a time: the operator's journal (systemd) adds its own, which is why no line
  is written per request either, except a failure of the server itself;
* the line about an invalid request is not written at all: it is the client's doing, a flood
  of them would fill the log, and its address and request are exactly what must not be kept;
* a request that failed inside the app is logged with its traceback, without its path or method.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask
from flask.logging import default_handler
from gunicorn import glogging

LINE_FORMAT = "[%(process)d] [%(levelname)s] %(message)s"
"""Every line of the server's logs: process, level and message; never a time."""

_INVALID_REQUEST = "Invalid request from ip="
_FAILED_REQUEST = "Error handling request"


class QuietLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger (``logger_class``) without times, addresses or requests."""

    error_fmt = LINE_FORMAT
    datefmt = None

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(_INVALID_REQUEST):
            return
        super().warning(msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(_FAILED_REQUEST):
            msg, args = _FAILED_REQUEST, ()
        super().exception(msg, *args, **kwargs)


class QuietFlask(Flask):
    """A Flask app whose unhandled exceptions are logged without the request's path or method,
    by a handler that writes no time (Flask's default writes both)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger.removeHandler(default_handler)
        if not any(getattr(h, "blagh_quiet", False) for h in self.logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(LINE_FORMAT))
            handler.blagh_quiet = True  # type: ignore[attr-defined]
            self.logger.addHandler(handler)

    def log_exception(self, exc_info: Any) -> None:
        self.logger.error("Exception while handling a request", exc_info=exc_info)
