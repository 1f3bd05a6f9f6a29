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

import slack_bolt.request.async_request as async_request
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import extract_enterprise_id, extract_team_id
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.platform_errors import Permanent, Transient

from .errors import slack_call
from .inbound import shape_problem

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SIGNATURE_HEADERS = ("x-slack-request-timestamp", "x-slack-signature")
HEALTH_PATH = "/healthz"
RATE_LIMIT_RETRIES = 2
WEB_API_TIMEOUT = 5  # seconds per Web API call (slack_sdk's default is 30, tried twice on a dead connection)
MAX_BODY = 1 << 20  # bytes; Slack's payloads are far smaller (aiohttp answers 413 beyond)
RESPONSE_URL_TIMEOUT = 3  # seconds per response_url post; the adapter then falls back to the Web API
ACK_FIRST = ("block_actions", "event_callback")  # payload types acknowledged before bolt sees them (and commands)


def retry_handlers() -> list[AsyncRetryHandler]:
    return async_default_handlers() + [AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]


def make_client(token: str | None, *, base_url: str | None = None) -> AsyncWebClient:
    """The bot's Web API client. `base_url` (ending in '/') points it elsewhere, e.g. at a test fake.
    Without a token (OAuth mode) each call gets its workspace's token from bolt or the installs."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return AsyncWebClient(token=token, retry_handlers=retry_handlers(), timeout=WEB_API_TIMEOUT, **kwargs)


async def post_to_response_url(url: str, body: dict[str, Any]) -> None:
    """POST one message to a response_url (ephemeral, replacing, or in_channel, as `body` says).

    bolt's `respond()` has no 429 retry, so the adapter uses this instead everywhere. Raises a
    classified PlatformError: expired or used URLs are Permanent for this message, 429/5xx/timeouts
    Transient (the caller falls back to the Web API either way).
    """
    webhook = AsyncWebhookClient(url, retry_handlers=retry_handlers(), timeout=RESPONSE_URL_TIMEOUT)
    resp = await slack_call(webhook.send_dict(body), what="response_url post")
    if resp.status_code == 429:
        raise Transient("ratelimited", "response_url post: rate limited",
                        retry_after=float(resp.headers.get("Retry-After") or 1) if resp.headers else None)
    if resp.status_code >= 500:
        raise Transient(f"http_{resp.status_code}", f"response_url post: HTTP {resp.status_code}")
    if resp.status_code != 200:
        reason = (resp.body or "").strip()[:40] if (resp.body or "").strip().isidentifier() else f"http_{resp.status_code}"
        raise Permanent(reason, f"response_url post: {resp.status_code} {str(resp.body)[:80]}")


def build_web_app(app: AsyncApp, *, health: dict[str, Any] | None = None,
                  signing_secret: str | None = None,
                  check: Callable[[], Awaitable[None]] | None = None) -> web.Application:
    """HTTP mode: bolt on POST /slack/events and GET /healthz.

    The signature is checked on the raw bytes before anything parses them (bolt parses a body as
    soon as it builds its request object, so unsigned garbage used to end in a 500): a request that
    is unsigned, too large, not UTF-8 or not a Slack payload gets a 4xx and one log line.

    Acks first: a verified command, click or event for the workspace this app is installed in is
    answered with the empty 200 here, and bolt's whole dispatch (whose own ack goes nowhere) waits in
    the work queue behind it. The listeners dedupe by trigger_id/event_id in the database as before.
    What bolt must answer itself goes through it inline: url_verification (the challenge is the
    response's body) and any request while the workspace is not yet known or is another one (the
    app's gate answers 403 there, with nothing written). In OAuth mode a workspace is known once bolt's
    authorize has found its install in this process (its first request runs inline).

    /healthz answers 503 when `check` (the database's ping) fails or takes over 2 s, so a load
    balancer stops sending requests to a replica that cannot reach the database."""
    verifier = SignatureVerifier(signing_secret or app._signing_secret)

    work = getattr(app, "work", None)
    quiz = getattr(app, "quiz", None)

    def ack_first(body: dict[str, Any]) -> bool:
        """The cheap checks before an early ack: a payload the listeners handle, for this workspace."""
        if work is None or quiz is None or (body.get("command") is None and body.get("type") not in ACK_FIRST):
            return False
        try:
            team, enterprise = extract_team_id(body), extract_enterprise_id(body)
        except (AttributeError, TypeError, KeyError, IndexError):
            return False  # an odd shape: bolt answers it inline
        if quiz.installations is not None:  # OAuth mode: a workspace whose install bolt found here before
            return bool(team) and team in quiz.known_teams
        installed = quiz.installed  # learnt from bolt's auth.test by the first request, which runs inline
        if installed is None:
            return False
        return not ((team and installed[0] and team != installed[0])
                    or (enterprise and installed[1] and enterprise != installed[1]))

    resigner = SignatureVerifier(app._signing_secret)

    def resigned(text: str, headers: dict[str, str]) -> dict[str, str]:
        """The headers of a request verified on arrival, signed again as of now: bolt checks the signature
        again when the deferred dispatch runs, and a job that waited in the queue past Slack's 5-minute
        window would otherwise be refused after its 200 and lost."""
        fresh = {k: v for k, v in headers.items() if k.lower() not in SIGNATURE_HEADERS}
        timestamp = str(int(resigner.clock.now()))
        fresh["X-Slack-Request-Timestamp"] = timestamp
        fresh["X-Slack-Signature"] = resigner.generate_signature(timestamp=timestamp, body=text) or ""
        return fresh

    def later(text: str, query: str, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
        async def dispatch() -> None:
            try:
                bolt_request = AsyncBoltRequest(body=text, query=query, headers=resigned(text, headers))
            except Exception as exc:  # bolt reads ids out of the payload at once; an odd shape fails there
                log.warning("ignored a signed Slack request of an unexpected shape (%s)", type(exc).__name__)
                return
            response = await app.async_dispatch(bolt_request)
            if response.status != 200:
                log.warning("bolt answered %d to a Slack request acknowledged early: %s", response.status,
                            str(response.body)[:80])
        return dispatch

    async def slack_events(request: web.Request) -> web.StreamResponse:
        if work is None:
            answer = await _events(request)
        else:
            with work.acking():  # the work queue waits while this request is being acknowledged
                answer = await _events(request)
        if isinstance(answer, web.StreamResponse):
            return answer
        return await answer()  # bolt inline: not an ack in flight, so queued work goes on meanwhile

    async def _events(request: web.Request) -> web.StreamResponse | Callable[[], Awaitable[web.StreamResponse]]:
        """The checks before an ack: a response, or bolt's inline dispatch still to run."""
        raw = await request.read()
        if not verifier.is_valid_request(raw, request.headers):
            log.warning("refused an unsigned or badly signed request (%d bytes)", len(raw))
            return web.Response(status=401, text="invalid signature")
        try:
            text = raw.decode("utf-8")
            body = async_request.parse_body(text, request.content_type)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            log.warning("refused a signed request that is not a Slack payload: %s", type(exc).__name__)
            return web.Response(status=400, text="malformed payload")
        if not isinstance(body, dict):
            log.warning("refused a signed request whose payload is a %s", type(body).__name__)
            return web.Response(status=400, text="malformed payload")
        problem = shape_problem(body)
        if problem is not None:
            log.warning("ignored a signed Slack request: %s", problem)
            return web.Response(status=200, text="")
        if ack_first(body):
            assert work is not None
            query, headers = request.query_string, dict(request.headers)
            work.defer(later(text, query, headers), lambda: AsyncBoltRequest(body=text, query=query, headers=headers))
            return web.Response(status=200, text="")
        try:
            bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        except Exception as exc:  # bolt reads ids out of the payload at once; an odd shape fails there
            log.warning("ignored a signed Slack request of an unexpected shape (%s)", type(exc).__name__)
            return web.Response(status=200, text="")

        async def inline() -> web.StreamResponse:
            return await to_aiohttp_response(await app.async_dispatch(bolt_request))
        return inline

    async def healthz(_request: web.Request) -> web.Response:
        if check is None:
            return web.json_response({"ok": True, **(health or {})})
        try:
            await asyncio.wait_for(check(), 2.0)
        except Exception as exc:  # noqa: BLE001 - any failure means: not ready
            log.warning("health check: the database did not answer (%s)", type(exc).__name__)
            return web.json_response({"ok": False, **(health or {}), "database": "unavailable"}, status=503)
        return web.json_response({"ok": True, **(health or {}), "database": "ok"})

    web_app = web.Application(client_max_size=MAX_BODY)
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get(HEALTH_PATH, healthz)
    if app.oauth_flow is not None:
        add_install_pages(web_app, app.oauth_flow)
    return web_app


def add_install_pages(web_app: web.Application, flow: AsyncOAuthFlow) -> None:
    """OAuth mode: bolt's "Add to Slack" page and the redirect Slack sends the installing browser to.

    The flow's state goes out as a cookie and a database row (oauth.py), so the redirect may reach
    any replica; a bad, missing, expired or reused state gets bolt's failure page and stores nothing."""
    async def install(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await flow.handle_installation(_page_request(request)))

    async def redirect(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await flow.handle_callback(_page_request(request)))

    web_app.router.add_get(flow.install_path, install)
    web_app.router.add_get(flow.redirect_uri_path, redirect)


def _page_request(request: web.Request) -> AsyncBoltRequest:
    return AsyncBoltRequest(body="", query=request.query_string, headers=dict(request.headers))


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
