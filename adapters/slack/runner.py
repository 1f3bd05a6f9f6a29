"""`mldebt run` with SLACK_BOT_TOKEN: Socket Mode when SLACK_APP_TOKEN is set, else HTTP. With
SLACK_CLIENT_ID and SLACK_CLIENT_SECRET instead (installs in many workspaces, oauth.py): HTTP only.

Socket Mode needs no public URL: the app opens a websocket to Slack (apps.connections.open with the
xapp- token) and slack_sdk reconnects by itself. HTTP mode serves POST /slack/events (signatures
checked) and GET /healthz on MLDEBT_HTTP_HOST:MLDEBT_HTTP_PORT. Either way time-outs, celebrations,
user-group grants and daily posts reach Slack through the outbox worker of the scheduler that
adapters/serve.py runs (pending ones from before a restart included).

Socket Mode needs Slack at start-up: the first apps.connections.open is made here, so an unreachable
Slack is one log line per try with a growing wait and then a clean exit (bot.cli.connect_with_retries)
instead of slack_sdk's endless retry loop with a traceback each time; a refused app token stops at
once. Later reconnects are slack_sdk's, logged as one line each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import STARTUP_RETRY_DELAYS, Core, StartupFailed, connect_with_retries

from .app import QuizApp, build_app
from .web import EVENTS_PATH, build_web_app, serve_http

log = logging.getLogger(__name__)


@dataclass
class SlackRuntime:
    app: QuizApp
    mode: str  # "socket" | "http"
    port: int | None = None  # HTTP mode: the bound port


DRAIN_SECONDS = 10  # at shutdown, how long acknowledged requests may take to be worked off

# failures of apps.connections.open that a later try may not meet: no route, DNS, time-out
TRANSIENT = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class SlackStartError(StartupFailed):
    """Slack refused to start the bot; the message says which setting to fix."""


class _OneLineReconnects(logging.Filter):
    """slack_sdk logs each failed reconnect with a traceback; the reason alone says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to connect"):
            record.exc_info, record.exc_text = None, None
        return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach {exc.host}: {exc.os_error.strerror or exc.os_error}"
    return str(exc) or type(exc).__name__


async def connect_socket_mode(handler: AsyncSocketModeHandler, *, delays: Sequence[float] = STARTUP_RETRY_DELAYS,
                              sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Open the first Socket Mode connection, retrying an unreachable Slack a bounded number of times."""
    socket_mode = handler.client  # the Socket Mode client (apps.connections.open uses the app token)
    socket_mode.logger.addFilter(_OneLineReconnects())

    async def open_url() -> None:
        socket_mode.wss_uri = await socket_mode.issue_new_wss_url()

    try:
        await connect_with_retries("Slack: opening a Socket Mode connection", open_url, transient=TRANSIENT,
                                   describe=_describe, delays=delays, sleep=sleep,
                                   quiet=("slack_sdk.web.async_base_client",))
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        raise SlackStartError(f"Slack refused SLACK_APP_TOKEN ({error}): create an app-level token with "
                              "connections:write (Basic Information > App-Level Tokens)") from None
    await handler.connect_async()  # uses the URL just issued


@asynccontextmanager
async def slack_running(core: Core, *, client: AsyncWebClient | None = None,
                        retry_delays: Sequence[float] = STARTUP_RETRY_DELAYS,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> AsyncIterator[SlackRuntime]:
    """Start the Slack side on `core` and stop it cleanly on exit (also on cancellation)."""
    settings = core.settings
    app = build_app(settings, core.engine, scheduler=core.scheduler, client=client)
    try:
        if app.quiz.installations is not None:  # OAuth mode: every stored token readable, under the newest key
            await app.quiz.installations.reencrypt()
        if settings.slack_app_token:
            handler = AsyncSocketModeHandler(app, app_token=settings.slack_app_token)
            try:
                await connect_socket_mode(handler, delays=retry_delays, sleep=sleep)
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
                if app.oauth_flow is not None:
                    log.info("Slack: installs in many workspaces; \"Add to Slack\" at GET %s",
                             app.oauth_flow.install_path)
                yield SlackRuntime(app, "http", port)
            finally:
                await runner.cleanup()
    finally:
        await app.work.drain(DRAIN_SECONDS)  # new requests stopped above; finish what Slack had its 200 for
        await app.work.close()


async def run_slack(core: Core, *, client: AsyncWebClient | None = None) -> None:
    """Run until cancelled (adapters/serve.py cancels it on shutdown)."""
    async with slack_running(core, client=client):
        await asyncio.Event().wait()
