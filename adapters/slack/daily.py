"""Daily question posts in Slack channels: the scheduler's DailyPoster for the "slack" platform.

The engine decides when a post is due and claims it in the database; this only sends it. A post
is a chat.postMessage carrying message metadata with the post id, so `find` can tell whether an
interrupted earlier attempt already posted it (conversations.history, which needs the
channels:history / groups:history scopes; without them `find` reports nothing and the post is
sent again). The reveal edits the post with chat.update. The bot must be in the channel.

Rate limits: at 09:00 thousands of posts can be due together and the scheduler keeps several in
flight. A 429 on any daily call pauses every daily call of this poster for its Retry-After (one
shared `RateGate`), and the call is then tried again. slack_sdk's own 429 handling (used by the
rest of the app) is left out of these calls: it lets each call sleep on its own (Retry-After plus
up to a second of random jitter, at most twice, then an error), so with many calls in flight they
keep hitting the limit, much of each window goes unused, and a post that runs out of retries waits
for its claim's lease (a minute) before it is tried again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.platform_errors import Permanent
from bot.replies import DailyPost, DailyReveal

from .blocks import Renderer
from .errors import classify

log = logging.getLogger(__name__)

METADATA_TYPE = "mldebt_daily_post"
# errors after which looking again cannot help: the post cannot be there, or we cannot see it
_NOT_FINDABLE = {"missing_scope", "not_in_channel", "channel_not_found"}
# errors after which an edit cannot help: the message is gone or no longer ours to edit
_NOT_EDITABLE = {"message_not_found", "channel_not_found", "cant_update_message", "not_in_channel"}
RATE_LIMIT_WAITS = 10  # 429s one call waits out (each for its Retry-After) before it gives up


class RateGate:
    """The pause shared by a poster's calls: after a 429 none of them calls until Retry-After has passed."""

    def __init__(self, *, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._now, self._sleep = now, sleep
        self.until = 0.0

    async def wait(self) -> None:
        while (delay := self.until - self._now()) > 0:
            await self._sleep(delay)

    def limited(self, retry_after: float) -> None:
        self.until = max(self.until, self._now() + retry_after)


def _retry_after(response: AsyncSlackResponse) -> float:
    try:
        return max(1.0, float(response.headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


def _without_rate_limit_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same client (token, base URL, session, connection-error retries) minus the 429 handler."""
    daily = copy.copy(client)
    daily.retry_handlers = [h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)]
    return daily


def message_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


class SlackDailyPoster:
    def __init__(self, client: AsyncWebClient, render: Renderer, *, gate: RateGate | None = None,
                 token_for: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.client = _without_rate_limit_retries(client)
        # the token of a post's workspace (OAuth mode: from its install), given with each call so every
        # workspace shares the one client and its connections; None: the client's own token
        self.token_for = token_for
        self.render = render
        self.gate = gate or RateGate()
        self._own_sessions = client.session is None  # a session given with the client is its owner's

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """One aiohttp session, and its kept-alive connections, for a batch of daily calls (the scheduler
        holds it around a tick's posts). Without it slack_sdk opens and closes a session, and so a
        connection, for every call: for thousands of posts that was about 40% of the bot's CPU."""
        if not self._own_sessions or self.client.session is not None:
            yield
            return
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        self.client.session = session
        try:
            yield
        finally:
            self.client.session = None
            await session.close()

    async def _call(self, call: Callable[[], Awaitable[AsyncSlackResponse]], *, channel: str,
                    what: str) -> AsyncSlackResponse:
        """`call()` once the gate is open; after a 429, close the gate for Retry-After and call again.
        Any other failure (and a 429 that does not stop) comes out classified (errors.py)."""
        waited = 0
        while True:
            await self.gate.wait()
            try:
                return await call()
            except SlackApiError as exc:
                if getattr(exc.response, "status_code", None) != 429 or waited >= RATE_LIMIT_WAITS:
                    raise classify(exc, channel=channel, what=what) from exc
                waited += 1
                self.gate.limited(_retry_after(exc.response))
            except Exception as exc:
                raise classify(exc, channel=channel, what=what) from exc

    async def _auth(self, tenant: str) -> dict[str, str]:
        token = await self.token_for(tenant) if self.token_for is not None else None
        return {"token": token} if token else {}

    async def post(self, post: DailyPost) -> str:
        message = self.render.daily_post(post)
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"post_id": post.post_id}}
        auth = await self._auth(post.tenant)
        resp = await self._call(lambda: self.client.chat_postMessage(channel=post.channel, **message,
                                                                      metadata=metadata, **auth),
                                channel=post.channel, what="posting the daily question")
        return message_ref(resp["channel"], resp["ts"])

    async def find(self, post: DailyPost) -> str | None:
        auth = await self._auth(post.tenant)
        try:
            resp = await self._call(lambda: self.client.conversations_history(
                channel=post.channel, include_all_metadata=True, limit=100, **auth), channel=post.channel,
                what="looking for an interrupted daily post")
        except Permanent as exc:
            if exc.reason in _NOT_FINDABLE:
                log.warning("cannot look for daily post %s in %s (%s); posting it again", post.post_id,
                            post.channel, exc.reason)
                return None
            raise
        for message in resp.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == METADATA_TYPE and (meta.get("event_payload") or {}).get("post_id") \
                    == post.post_id:
                return message_ref(post.channel, message["ts"])
        return None

    async def reveal(self, reveal: DailyReveal) -> None:
        if not reveal.message_ref or ":" not in reveal.message_ref:
            log.warning("daily post %s has no message to edit; nothing to reveal", reveal.post_id)
            return
        channel, ts = reveal.message_ref.split(":", 1)
        auth = await self._auth(reveal.tenant)
        try:
            message = self.render.daily_reveal(reveal)
            await self._call(lambda: self.client.chat_update(channel=channel, ts=ts, **message, **auth),
                             channel=channel,
                             what="revealing the daily answer")
        except Permanent as exc:
            if exc.reason not in _NOT_EDITABLE:
                raise
            log.warning("could not edit daily post %s (%s); leaving it", reveal.post_id, exc.reason)
