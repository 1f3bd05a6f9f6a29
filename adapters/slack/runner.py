"""`mldebt run` with SLACK_BOT_TOKEN: Socket Mode when SLACK_APP_TOKEN is set, else HTTP.

Socket Mode needs no public URL: the app opens a websocket to Slack (apps.connections.open with the
xapp- token) and slack_sdk reconnects by itself. HTTP mode serves POST /slack/events (signatures
checked) and GET /healthz on MLDEBT_HTTP_HOST:MLDEBT_HTTP_PORT. Either way the pending user-group
grants are retried at start-up and then periodically, and time-outs reach Slack through the
scheduler that adapters/serve.py runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import Core

from .app import QuizApp, build_app
from .web import EVENTS_PATH, build_web_app, serve_http

log = logging.getLogger(__name__)


@dataclass
class SlackRuntime:
    app: QuizApp
    mode: str  # "socket" | "http"
    port: int | None = None  # HTTP mode: the bound port


@asynccontextmanager
async def slack_running(core: Core, *, client: AsyncWebClient | None = None) -> AsyncIterator[SlackRuntime]:
    """Start the Slack side on `core` and stop it cleanly on exit (also on cancellation)."""
    settings = core.settings
    app = build_app(settings, core.engine, scheduler=core.scheduler, client=client)
    background: list[asyncio.Task] = []
    if app.quiz.grants is not None:
        background.append(asyncio.create_task(app.quiz.grants.run(core.clock), name="slack-grant-retries"))
    try:
        if settings.slack_app_token:
            handler = AsyncSocketModeHandler(app, app_token=settings.slack_app_token)
            try:
                await handler.connect_async()
                log.info("Slack: connected in Socket Mode")
                yield SlackRuntime(app, "socket")
            finally:
                await handler.close_async()
        else:
            runner, port = await serve_http(build_web_app(app, health={"slack": "http"}, check=core.store.ping),
                                            settings.http_host, settings.http_port)
            try:
                log.info("Slack: HTTP mode on %s:%s (POST %s, GET /healthz)", settings.http_host, port,
                         EVENTS_PATH)
                yield SlackRuntime(app, "http", port)
            finally:
                await runner.cleanup()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def run_slack(core: Core, *, client: AsyncWebClient | None = None) -> None:
    """Run until cancelled (adapters/serve.py cancels it on shutdown)."""
    async with slack_running(core, client=client):
        await asyncio.Event().wait()
