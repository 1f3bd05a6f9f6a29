"""A burst of HTTP POSTs, all at once, from a separate process: `python -m bench.http_burst URL FILE [WARM]`.

FILE holds a JSON list of requests (`{"body": str, "headers": {...}}`), sent exactly as given (the
body is the signed string, never re-encoded). Every request gets its own connection, as requests
from many Slack servers would; all are started together and each one is timed from just before it
connects to the moment its status line arrives (`time.perf_counter`). Prints one JSON line: per
request its status, body and milliseconds, plus the burst's start on the system-wide monotonic
clock (`perf_counter` is CLOCK_MONOTONIC on Linux, so the parent can compare). WARM, a URL that
answers any POST harmlessly, takes a few requests first so that first-use costs are not in the burst.

It runs in its own process, and writes pre-built HTTP/1.1 bytes on plain asyncio streams, so that
the client costs as little as possible and does not compete with the server being measured for
its event loop (Slack sends from elsewhere too).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def _wire(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
            "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")]
    return parts.hostname or "127.0.0.1", parts.port or 80, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _send(host: str, port: int, data: bytes) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        status_line = await reader.readline()
        ms = (time.perf_counter() - t0) * 1000
        rest = await reader.read()  # Connection: close, so the body ends at EOF
    finally:
        writer.close()
    status = int(status_line.split()[1])
    head, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return status, body.decode(), ms


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


async def burst(url: str, requests: list[dict], warm: str | None = None) -> dict:
    if warm:
        host, port, data = _wire(warm, b"warm-up", {"Content-Type": "text/plain"})
        for _ in range(5):
            await _send(host, port, data)
    wires = [_wire(url, r["body"].encode(), r["headers"]) for r in requests]
    gate = asyncio.Event()

    async def one(host: str, port: int, data: bytes) -> dict:
        await gate.wait()
        status, body, ms = await _send(host, port, data)
        return {"status": status, "body": body, "ms": ms}

    tasks = [asyncio.ensure_future(one(*w)) for w in wires]
    await asyncio.sleep(0)  # every task is now parked at the gate
    started = time.perf_counter()
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {"started": started, "wall_ms": (time.perf_counter() - started) * 1000, "results": results}


def main(argv: list[str]) -> int:
    url, path, *warm = argv
    with open(path) as f:
        requests = json.load(f)
    print(json.dumps(asyncio.run(burst(url, requests, warm[0] if warm else None))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
