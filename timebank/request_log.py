"""One log line per request: request id, method, path, status, duration."""
from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, g, request

log = logging.getLogger("timebank.request")


def register_request_logging(app: Flask) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    @app.before_request
    def _start():
        # A request starts with an empty g, even when an app context outlives it (tests, CLI).
        for name in list(g):
            g.pop(name, None)
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if incoming.isascii() and 0 < len(incoming) <= 64 and incoming.isprintable() \
            else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        duration_ms = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        # Path only, never the query string: it may carry personal data.
        log.info("request_id=%s method=%s path=%s status=%s duration_ms=%.1f", g.get("request_id", "-"),
                 request.method, request.path, response.status_code, duration_ms)
        return response
