"""A small asyncio HTTP/1.1 client for the load driver: one connection per request, as gunicorn's sync workers
close every connection after its response anyway.

Why not httpx: the driver shares the two cores with the service it measures, and httpx spent 2-3 ms of CPU per
request (its connection pool, header models and state machine); this client writes the request bytes and reads
until the server closes, a fraction of that, so the cores serve the service instead. Only what the driver needs:
GET and POST with a JSON body, a status code, a body and .json(); errors are raised as TransportError with a name.
"""
from __future__ import annotations

import asyncio
import json as jsonlib
from urllib.parse import urlsplit


class TransportError(Exception):
    """The exchange failed below HTTP (refused, reset, timed out, cut short); str() names what happened."""


class Response:
    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    def json(self):
        return jsonlib.loads(self.content)


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def parse_response(data: bytes) -> Response:
    """A whole HTTP/1.1 response (read until the server closed) as a Response."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise TransportError("IncompleteResponse")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise TransportError("MalformedResponse")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers and len(body) < int(headers[b"content-length"]):
        raise TransportError("IncompleteResponse")
    return Response(int(parts[1]), body)


class RawClient:
    def __init__(self, base_url: str, timeout: float = 30.0):
        url = urlsplit(base_url)
        self.host, self.port, self.timeout = url.hostname, url.port or 80, timeout
        self._host_header = f"Host: {url.netloc}\r\n"

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_exc):
        return None

    async def request(self, method: str, path: str, *, headers: dict | None = None, json=None) -> Response:
        body = b"" if json is None else jsonlib.dumps(json).encode()
        head = [f"{method} {path} HTTP/1.1\r\n", self._host_header, "Connection: close\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in (headers or {}).items()]
        if json is not None:
            head.append("Content-Type: application/json\r\n")
        if json is not None or method != "GET":
            head.append(f"Content-Length: {len(body)}\r\n")
        raw = ("".join(head) + "\r\n").encode("latin-1") + body
        try:
            return await asyncio.wait_for(self._exchange(raw), self.timeout)
        except asyncio.TimeoutError:
            raise TransportError("ReadTimeout") from None
        except (ConnectionError, OSError) as exc:
            raise TransportError(type(exc).__name__) from exc

    async def _exchange(self, raw: bytes) -> Response:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(raw)
            data = await reader.read()  # to the end: the server closes after its response
        finally:
            writer.close()
        return parse_response(data)
