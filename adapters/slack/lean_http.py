"""A minimal HTTP/1.1 client for the daily posts' lean path: POSTs with a fixed head over kept-alive connections.

Why not aiohttp's client here: 10,000 daily posts go out at the platform's rate, and aiohttp's
request machinery (request and response objects, timers, stream readers, payload writers) was the
largest share of the bot's CPU per post (profiled with py-spy, issue 11). A daily post needs much
less: one POST to a known URL with a head built once per token and method, and the status, headers
and body of the answer. The rest of the app keeps aiohttp (through slack_sdk).

What it does: HTTP/1.1 over TCP, or TLS with the certificate checked (the client's SSL context, else
the system's default); answers with Content-Length, chunked, or read until the server closes;
1xx answers skipped; a connection goes back to the pool only after a complete answer that does not
say `Connection: close`; any failure or cancellation closes it. No proxies, no redirects, no
compression (it sends no Accept-Encoding). Failures are `ConnectionError`s (OSError: errors.py
classifies them as connection errors) or `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import defaultdict

from multidict import CIMultiDict
from yarl import URL

MAX_HEAD = 64 * 1024  # bytes of status line and headers; more is not an answer from Slack
Answer = tuple[int, CIMultiDict[str], bytes]


class _Connection(asyncio.Protocol):
    """One connection: feeds what arrives to the waiting request's parser."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._head: tuple[int, CIMultiDict[str]] | None = None
        self._until_close = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is not None and not self._waiter.done():
            try:
                self._parse()
            except ConnectionError as exc:
                self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._head is not None and self._until_close:
            status, headers = self._head
            waiter.set_result((status, headers, bytes(self._buf)))
        else:
            waiter.set_exception(ConnectionResetError("Slack closed the connection before answering")
                                 if exc is None else exc)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._head, self._until_close, self._buf = None, False, bytearray()
        assert self.transport is not None
        self.transport.write(data)
        return self._waiter

    def _parse(self) -> None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ConnectionError("an HTTP head larger than 64 KiB")
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            version, _, rest = lines[0].partition(" ")
            try:
                status = int(rest[:3])
            except ValueError:
                raise ConnectionError(f"not an HTTP status line: {lines[0][:80]!r}") from None
            headers: CIMultiDict[str] = CIMultiDict()
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers.add(name.strip(), value.strip())
            if 100 <= status < 200:
                continue  # an interim answer; the final one follows
            self._head = (status, headers)
            self.keep_alive = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
        status, headers = self._head
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = _dechunk(buf)
            if body is None:
                return
        elif (length := headers.get("Content-Length")) is not None:
            try:
                n = int(length)
            except ValueError:
                raise ConnectionError(f"a bad Content-Length: {length[:40]!r}") from None
            if len(buf) < n:
                return
            body = bytes(buf[:n])
        else:
            self._until_close, self.keep_alive = True, False  # the body ends when the server closes
            return
        assert self._waiter is not None
        self._waiter.set_result((status, headers, body))


def _dechunk(buf: bytearray) -> bytes | None:
    """The body of a complete chunked message in `buf` (trailers ignored); None while incomplete."""
    out, at = bytearray(), 0
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[at:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise ConnectionError("a bad chunk size") from None
        at = eol + 2
        if size == 0:
            if buf.startswith(b"\r\n", at):
                return bytes(out)
            return bytes(out) if buf.find(b"\r\n\r\n", at) >= 0 else None
        if len(buf) < at + size + 2:
            return None
        out += buf[at:at + size]
        at += size + 2


class LeanHttp:
    """A pool of kept-alive connections per host; `close()` ends them all."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: defaultdict[tuple[str, int, bool], list[_Connection]] = defaultdict(list)
        self._default_ssl: ssl_module.SSLContext | None = None
        self.opened = 0  # connections opened so far

    @staticmethod
    def head(url: URL, *lines: str) -> bytes:
        """A POST's head up to `Content-Length: ` (its value and the blank line follow per body)."""
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("a header with a line break")  # e.g. a token pasted with a newline
        host = url.raw_host or ""
        if url.explicit_port:
            host = f"{host}:{url.port}"
        return "".join((f"POST {url.raw_path_qs} HTTP/1.1\r\nHost: {host}\r\n",
                        *(f"{line}\r\n" for line in lines), "Content-Length: ")).encode("latin-1")

    async def post(self, url: URL, head: bytes, body: bytes, ssl: ssl_module.SSLContext | None = None) -> Answer:
        """Send `head` (from `head`) and `body` to `url`'s host; the answer's status, headers and body."""
        tls = url.scheme == "https"
        key = (url.raw_host or "", url.port or (443 if tls else 80), tls)
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                idle = self._idle[key]
                while idle and conn is None:
                    conn = idle.pop()
                    if conn.closed:
                        conn = None
                if conn is None:
                    conn = await self._open(key, ssl)
                answer = await conn.request(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if conn.keep_alive and not conn.closed:
            self._idle[key].append(conn)
        else:
            conn.close()
        return answer

    async def _open(self, key: tuple[str, int, bool], ssl: ssl_module.SSLContext | None) -> _Connection:
        host, port, tls = key
        context = None
        if tls:
            if ssl is None:
                if self._default_ssl is None:
                    self._default_ssl = ssl_module.create_default_context()
                ssl = self._default_ssl
            context = ssl
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection, host, port, ssl=context, server_hostname=host if tls else None)
        self.opened += 1
        return conn

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
