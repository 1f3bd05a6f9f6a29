"""The daily posts' HTTP/1.1 client against a scripted loopback server: the exact request it writes,
kept-alive connections, the answer framings it reads (Content-Length, chunked, until close, 1xx
first), and what closes a connection instead of pooling it (Connection: close, a server that hangs
up, a cancelled request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from adapters.slack.errors import classify
from adapters.slack.lean_http import LeanHttp
from bot.platform_errors import Transient


class Scripted:
    """Answers each request it reads with the next scripted bytes (None: hang up without answering;
    ... : never answer). Records (connection number, raw head, body) per request."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.connections = 0
        self.got_request = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                self.requests.append((number, head, body))
                self.got_request.set()
                answer = self.answers.pop(0)
                if answer is None:
                    return
                if answer is ...:
                    await reader.read()  # until the client goes away
                    return
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer or b"Content-Length" not in answer and b"chunked" not in answer:
                    return
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, URL]]:
    scripted = Scripted([])
    srv = await asyncio.start_server(scripted.serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield scripted, URL(f"http://127.0.0.1:{port}/api/chat.postMessage")
    srv.close()
    await srv.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        extra, len(body), body)


async def test_writes_the_fixed_head_and_reuses_the_connection(server):
    scripted, url = server
    scripted.answers += [ok(b'{"ok":true}'), ok(b'{"ok":false}', b"Retry-After: 3\r\n")]
    http = LeanHttp(30.0)
    head = LeanHttp.head(url, "Authorization: Bearer xoxb-1", "Content-Type: application/json;charset=utf-8")
    first = await http.post(url, head, b'{"a":1}')
    status, headers, body = await http.post(url, head, b'{"b":"\xc3\xa9"}')
    http.close()
    assert first[0] == 200 and first[2] == b'{"ok":true}'
    assert (status, body, headers["retry-after"]) == (200, b'{"ok":false}', "3")
    host = f"127.0.0.1:{url.port}".encode()
    assert [(n, h) for n, h, _ in scripted.requests] == [
        (1, b"POST /api/chat.postMessage HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: Bearer xoxb-1\r\n"
            b"Content-Type: application/json;charset=utf-8\r\nContent-Length: 7\r\n\r\n"),
        (1, b"POST /api/chat.postMessage HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: Bearer xoxb-1\r\n"
            b"Content-Type: application/json;charset=utf-8\r\nContent-Length: 10\r\n\r\n")]
    assert [b for _, _, b in scripted.requests] == [b'{"a":1}', b'{"b":"\xc3\xa9"}']
    assert http.opened == scripted.connections == 1


async def test_reads_chunked_until_close_and_interim_answers(server):
    scripted, url = server
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\n{\"ok\"\r\n6\r\n:true}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    scripted.answers += [b"HTTP/1.1 100 Continue\r\n\r\n" + chunked, ok(b"{}", b"Connection: close\r\n"),
                         b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n<html>busy</html>",
                         ok(b"[]")]
    http = LeanHttp(30.0)
    head = LeanHttp.head(url)
    answers = [await http.post(url, head, b"x") for _ in range(4)]
    http.close()
    assert [(s, b) for s, _, b in answers] == [(200, b'{"ok":true}'), (200, b"{}"), (503, b"<html>busy</html>"),
                                               (200, b"[]")]
    # chunked: kept alive; Connection: close and a body that ends with the connection: a new one each
    assert [n for n, _, _ in scripted.requests] == [1, 1, 2, 3] and http.opened == 3


async def test_a_hang_up_is_a_connection_error_and_a_cancelled_request_closes_its_connection(server):
    scripted, url = server
    scripted.answers += [None, ..., ok(b"{}")]
    http = LeanHttp(30.0)
    head = LeanHttp.head(url)
    with pytest.raises(ConnectionError) as caught:
        await http.post(url, head, b"x")
    error = classify(caught.value, channel="C1", what="posting the daily question")
    assert isinstance(error, Transient) and error.reason == "connection_error"
    scripted.got_request.clear()
    pending = asyncio.create_task(http.post(url, head, b"y"))
    await scripted.got_request.wait()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert (await http.post(url, head, b"z"))[0] == 200
    http.close()
    assert [n for n, _, _ in scripted.requests] == [1, 2, 3]  # the cancelled request's connection was not reused


def test_a_header_with_a_line_break_is_refused():
    with pytest.raises(ValueError, match="line break"):
        LeanHttp.head(URL("https://slack.com/api/chat.postMessage"), "Authorization: Bearer xoxb-1\r\nX-Evil: 1")
    assert LeanHttp.head(URL("https://slack.com/api/chat.postMessage"), "A: b") == (
        b"POST /api/chat.postMessage HTTP/1.1\r\nHost: slack.com\r\nA: b\r\nContent-Length: ")
