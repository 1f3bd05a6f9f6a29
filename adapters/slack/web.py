"""Talking HTTP with Slack: the Web API client, response_url posts, and the HTTP-mode server.

Every outgoing call honours 429 + Retry-After (slack_sdk's AsyncRateLimitErrorRetryHandler) on
top of the default connection-error retry; `retry_handlers=` replaces the defaults, so both are
listed. bolt copies `app.client.retry_handlers` into the per-request client of each listener.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
RATE_LIMIT_RETRIES = 2


def retry_handlers() -> list[AsyncRetryHandler]:
    return async_default_handlers() + [AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]


def make_client(token: str, *, base_url: str | None = None) -> AsyncWebClient:
    """The bot's Web API client. `base_url` (ending in '/') points it elsewhere, e.g. at a test fake."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return AsyncWebClient(token=token, retry_handlers=retry_handlers(), **kwargs)


class ResponseUrlError(Exception):
    """Slack refused a response_url post (expired, used too often, or gone)."""


async def post_to_response_url(url: str, body: dict[str, Any]) -> None:
    """POST one message to a response_url (ephemeral, replacing, or in_channel, as `body` says).

    bolt's `respond()` has no 429 retry, so the adapter uses this instead everywhere.
    """
    resp = await AsyncWebhookClient(url, retry_handlers=retry_handlers()).send_dict(body)
    if resp.status_code != 200:
        raise ResponseUrlError(f"response_url answered {resp.status_code}: {resp.body[:200]}")


def build_web_app(app: AsyncApp, *, health: dict[str, Any] | None = None,
                  check: Callable[[], Awaitable[None]] | None = None) -> web.Application:
    """HTTP mode: bolt on POST /slack/events (signatures checked by bolt) and GET /healthz.

    /healthz answers 503 when `check` (the database's ping) fails or takes over 2 s, so a load
    balancer stops sending requests to a replica that cannot reach the database."""

    async def slack_events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def healthz(_request: web.Request) -> web.Response:
        if check is None:
            return web.json_response({"ok": True, **(health or {})})
        try:
            await asyncio.wait_for(check(), 2.0)
        except Exception as exc:  # noqa: BLE001 - any failure means: not ready
            log.warning("health check: the database did not answer (%s)", type(exc).__name__)
            return web.json_response({"ok": False, **(health or {}), "database": "unavailable"}, status=503)
        return web.json_response({"ok": True, **(health or {}), "database": "ok"})

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get(HEALTH_PATH, healthz)
    return web_app


async def serve_http(web_app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the aiohttp server inside the running loop (never `web.run_app`); returns the bound port."""
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host=host, port=port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
