"""Failure injection for SimCord, per call: what Discord does on a bad day.

SimCord routes every REST call of the real discord.py bot (the HTTP client and the interaction
webhook adapter) to its in-process backend; `env.inject_error` fails a call with a JSON error code.
This layer adds what real Discord also does and SimCord does not model: a 5xx with an HTML page or
an empty body, a 429 with Retry-After, a call that hangs (bounded only by the bot's own timeout,
on SimCord's virtual clock: a test advances it, nothing sleeps), and a dropped connection. Every
injected call is recorded in `env.http_requests` like a real one, so tests assert the exact calls.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from simcord.http import client as simcord_client
from simcord.types import HttpLogEntry

HANG_SECONDS = 3600.0  # far beyond any timeout of the bot


class _Response:
    """Enough of an aiohttp response for discord.HTTPException."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
        self.headers = headers or {}


@dataclass
class Fault:
    method: str
    path: str  # fnmatch pattern on the API path
    kind: str  # html | empty | rate_limit | hang | connection | code
    times: int | None = 1
    status: int = 503
    code: int = 0
    message: str = ""
    retry_after: float = 2.5
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and fnmatch.fnmatch(path, self.path)

    async def fire(self) -> None:
        self.fired += 1
        if self.kind == "hang":
            await asyncio.sleep(HANG_SECONDS)  # a virtual-clock sleep: the bot's timeout ends it first
            raise AssertionError("a hanging call outlived the bot's timeout")
        if self.kind == "connection":
            raise aiohttp.ClientConnectionError("Connection reset by peer")
        if self.kind == "html":
            raise discord.DiscordServerError(_Response(self.status), "<html><body><h1>503 Service Unavailable</h1>"
                                                                     "</body></html>")
        if self.kind == "empty":
            raise discord.DiscordServerError(_Response(self.status), "")
        if self.kind == "rate_limit":
            raise discord.HTTPException(_Response(429, {"Retry-After": str(self.retry_after)}),
                                        {"message": "You are being rate limited.", "retry_after": self.retry_after,
                                         "global": False, "code": 0})
        data = {"message": self.message, "code": self.code}
        if self.status == 403:
            raise discord.Forbidden(_Response(403), data)
        if self.status == 404:
            raise discord.NotFound(_Response(404), data)
        raise discord.HTTPException(_Response(self.status), data)


@dataclass
class Faults:
    """The faults of one test; installed on SimCord's two transports by the `faults` fixture."""

    env: Any
    active: list[Fault] = field(default_factory=list)

    def add(self, method: str, path: str, kind: str, *, times: int | None = 1, **details: Any) -> Fault:
        fault = Fault(method, path, kind, times, **details)
        self.active.append(fault)
        return fault

    def code(self, method: str, path: str, status: int, code: int, message: str, *, times: int | None = 1) -> Fault:
        """A Discord JSON error (403/50013, 404/10003, ...)."""
        return self.add(method, path, "code", times=times, status=status, code=code, message=message)

    def clear(self) -> None:
        self.active.clear()

    async def check(self, method: str, path: str, body: Any) -> None:
        for fault in list(self.active):
            if not fault.matches(method, path):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.active.remove(fault)
            self.env.backend.http_requests.append(HttpLogEntry(method, path, {}, copy.deepcopy(body), None))
            await fault.fire()


def install(monkeypatch: Any, faults: Faults) -> None:
    http_request = simcord_client.FakeHTTPClient.request
    webhook_request = simcord_client.FakeWebhookAdapter.request

    async def request(self: Any, route: Any, **kwargs: Any) -> Any:
        await faults.check(route.method, simcord_client._path_of(route.url), kwargs.get("json"))  # noqa: SLF001
        return await http_request(self, route, **kwargs)

    async def webhook(self: Any, route: Any, session: Any, **kwargs: Any) -> Any:
        await faults.check(route.method, simcord_client._path_of(route.url), kwargs.get("payload"))  # noqa: SLF001
        return await webhook_request(self, route, session, **kwargs)

    monkeypatch.setattr(simcord_client.FakeHTTPClient, "request", request)
    monkeypatch.setattr(simcord_client.FakeWebhookAdapter, "request", webhook)


def as_bot(env: Any, work: Any) -> asyncio.Task[Any]:
    """Run `work` as a task of the bot, as the scheduler would in the bot's process.

    SimCord puts only the bot's own tasks on its virtual clock; a call made straight from the test
    would wait out a hang's timeout in real time. `_bot_scope` is SimCord's (3.2) internal marker.
    """
    with env._bot_scope():  # noqa: SLF001
        return asyncio.get_running_loop().create_task(work)
