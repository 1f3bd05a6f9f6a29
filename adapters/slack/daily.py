"""Daily question posts in Slack channels: the scheduler's DailyPoster for the "slack" platform.

The engine decides when a post is due and claims it in the database; this only sends it. A post
is a chat.postMessage carrying message metadata with the post id, so `find` can tell whether an
interrupted earlier attempt already posted it (conversations.history, which needs the
channels:history / groups:history scopes; without them `find` reports nothing and the post is
sent again). The reveal edits the post with chat.update. The bot must be in the channel.

Sending fast (issue 11: 10,000 channels at 09:00, at the platform's rate): a post goes out through
a lean path instead of slack_sdk's client (which cost about 80% of the bot's CPU per post): one
aiohttp session for a batch of posts, the body serialised once per post content (a template keyed
by the question, its choice order and date) with only the post id and the channel spliced in, and
the answer classified by the same rules as every other Slack call (errors.py: HTML or empty
bodies, 5xx, error codes). The token and base URL come from the tenant's client (`client_for`).

Rate limits: calls are paced per workspace and method just under the configured rate, and a 429
pauses only its route (adapters/slack/pacing.py) for Retry-After before the call is tried again;
the other channels and workspaces keep sending. slack_sdk's own 429 handling (used by the rest of
the app) is left out of these calls: it lets each call sleep on its own (Retry-After plus up to a
second of random jitter, at most twice, then an error), so with many calls in flight they keep
hitting the limit, and a post that runs out of retries waits for its claim's lease.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

import aiohttp
from multidict import istr
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from yarl import URL

from bot.platform_errors import Permanent
from bot.replies import DailyPost, DailyReveal

from .blocks import Renderer
from .errors import classify
from .mrkdwn import SECTION_LIMIT, esc
from .pacing import Pacer, Route, route_of

log = logging.getLogger(__name__)

METADATA_TYPE = "mldebt_daily_post"
# errors after which looking again cannot help: the post cannot be there, or we cannot see it
_NOT_FINDABLE = {"missing_scope", "not_in_channel", "channel_not_found"}
# errors after which an edit cannot help: the message is gone or no longer ours to edit
_NOT_EDITABLE = {"message_not_found", "cant_update_message", "channel_not_found", "not_in_channel"}
RATE_LIMIT_WAITS = 10  # 429s one call waits out (each for its Retry-After) before it gives up
TEMPLATES = 4096  # post bodies kept serialised (one per question, date and window: the choice order is spliced)
# stand-ins rendered where the post id, the channel and the choice texts go, replaced per post (plain
# ASCII letters: neither Slack's escaping nor JSON changes them)
_POST_SLOT, _CHANNEL_SLOT, _CHOICE_SLOT = "MLDEBTSLOTPOSTID", "MLDEBTSLOTCHANNEL", "MLDEBTSLOTCHOICE"
_SLOTS = re.compile(f"({_POST_SLOT}|{_CHANNEL_SLOT}|{_CHOICE_SLOT}[A-Z])")
_CHOICES_SPLICED = 2000  # characters of escaped choice texts up to which splicing cannot meet a block's limit
ClientFor = Callable[[str], Awaitable[AsyncWebClient]]
# aiohttp's default headers the Web API does not need (User-Agent and Accept are optional; without
# Accept-Encoding the answer is not compressed, so it needs no inflating)
_SKIP_HEADERS = frozenset(map(istr, ("User-Agent", "Accept", "Accept-Encoding")))
# the start of chat.postMessage's success answer, in Slack's order ({"ok":true,"channel":...,"ts":...,
# "message":{...}}): read without parsing the echoed message; any other shape is parsed in full
_POSTED = re.compile(rb'\{\s*"ok"\s*:\s*true\s*,\s*"channel"\s*:\s*"([A-Za-z0-9]+)"\s*,\s*"ts"\s*:\s*"([0-9.]+)"')


@lru_cache(maxsize=TEMPLATES)
def _choice_text(text: str) -> str:
    """A choice's text as spliced into a serialised body: escaped for mrkdwn, then for a JSON string."""
    return encode_basestring(esc(text))[1:-1]


def _json_text(text: str) -> str:
    """`text` as the inside of a JSON string (json.dumps(..., ensure_ascii=False) builds an encoder per call)."""
    return encode_basestring(text)[1:-1]


@dataclasses.dataclass(frozen=True)
class LeanResponse:
    """What `errors.classify` reads from a failed call (as from slack_sdk's responses)."""

    status_code: int
    data: dict[str, Any] | None
    headers: Any


def _retry_after(headers: Any) -> float:
    try:
        return max(1.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError, AttributeError):
        return 1.0


def _without_rate_limit_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The same client (token, base URL, session, connection-error retries) minus the 429 handler."""
    daily = copy.copy(client)
    daily.retry_handlers = [h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)]
    return daily


def message_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


class SlackDailyPoster:
    def __init__(self, client: AsyncWebClient, render: Renderer, *, pacer: Pacer | None = None,
                 client_for: ClientFor | None = None) -> None:
        """`client`: the app's client (one workspace's token); `client_for(team)`: the client of a
        workspace, where the app is installed in many (each call uses its workspace's token)."""
        self.client = _without_rate_limit_retries(client)
        self.render = render
        self.pacer = pacer or Pacer()
        self._client_for = client_for
        self._own_sessions = client.session is None  # a session given with the client is its owner's
        self._session: aiohttp.ClientSession | None = None  # the batch's, for the lean path
        self._templates: OrderedDict[tuple, list[str]] = OrderedDict()
        # (token, base URL, method) -> the request's URL and headers
        self._fixed: dict[tuple[str | None, str, str], tuple[URL, dict[str, str]]] = {}

    async def client_of(self, team: str) -> AsyncWebClient:
        if self._client_for is None:
            return self.client
        client = _without_rate_limit_retries(await self._client_for(team))
        if client.session is None:
            client.session = self._session
        return client

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """One aiohttp session, and its kept-alive connections, for a batch of daily calls (the scheduler
        holds it around a tick's posts). Without it every call opens and closes a session, and so a
        connection: for thousands of posts that was about 40% of the bot's CPU."""
        if self._session is not None:
            yield
            return
        session = self.client.session if not self._own_sessions else \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        self._session = session
        if self._own_sessions:
            self.client.session = session
        try:
            yield
        finally:
            self._session = None
            if self._own_sessions:
                self.client.session = None
                await session.close()

    # -- the lean path of a post -----------------------------------------------------------------

    def _body(self, post: DailyPost) -> bytes:
        """chat.postMessage's JSON body. The post's content is serialised once per question, date and
        window, with stand-ins for what differs between channels (the post id, the channel, the
        choice order), which are spliced in: JSON-escaped, and the choices escaped as the renderer does."""
        choices = {f"{_CHOICE_SLOT}{ch.letter}": ch.text for ch in post.choices}
        if sum(map(len, map(esc, choices.values()))) > min(_CHOICES_SPLICED, SECTION_LIMIT):
            return self._serialise(self._message(post))  # long enough that a block's limit could cut it
        key = (post.question_id, post.local_date, post.closes_at, post.topic, post.difficulty, post.prompt,
               post.code, tuple(ch.letter for ch in post.choices))
        parts = self._templates.get(key)
        if parts is None:
            slotted = dataclasses.replace(post, post_id=_POST_SLOT, channel=_CHANNEL_SLOT, reconcile=False,
                                          choices=tuple(dataclasses.replace(ch, text=f"{_CHOICE_SLOT}{ch.letter}")
                                                        for ch in post.choices))
            parts = _SLOTS.split(self._serialise(self._message(slotted)).decode())
            self._templates[key] = parts
            if len(self._templates) > TEMPLATES:
                self._templates.popitem(last=False)
        spliced = {slot: _choice_text(text) for slot, text in choices.items()}
        spliced[_POST_SLOT], spliced[_CHANNEL_SLOT] = _json_text(post.post_id), _json_text(post.channel)
        # the slots are the odd parts (re.split with one capturing group)
        return "".join([spliced[p] if i & 1 else p for i, p in enumerate(parts)]).encode()

    def _message(self, post: DailyPost) -> dict[str, Any]:
        return {"channel": post.channel, **self.render.daily_post(post),
                "metadata": {"event_type": METADATA_TYPE, "event_payload": {"post_id": post.post_id}}}

    @staticmethod
    def _serialise(message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()

    async def _send(self, session: aiohttp.ClientSession, client: AsyncWebClient, method: str,
                    body: bytes) -> LeanResponse:
        """One POST; its URL and headers are built once per token, base URL and method."""
        fixed = self._fixed.get((client.token, client.base_url, method))
        if fixed is None:
            fixed = self._fixed[(client.token, client.base_url, method)] = (
                URL(f"{client.base_url}{method}"),
                {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json;charset=utf-8"})
        url, headers = fixed
        async with session.post(url, data=body, headers=headers, skip_auto_headers=_SKIP_HEADERS) as resp:
            raw = await resp.read()
            if resp.status == 200 and (m := _POSTED.match(raw)) is not None:
                return LeanResponse(200, {"ok": True, "channel": m[1].decode(), "ts": m[2].decode()}, resp.headers)
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = None
            return LeanResponse(resp.status, data if isinstance(data, dict) else None, resp.headers)

    async def _lean_call(self, client: AsyncWebClient, method: str, body: bytes, *, route: Route, channel: str,
                         what: str) -> dict[str, Any]:
        """POST `body` to `method` once `route` may go; a 429 pauses the route and the call goes again.
        Any other failure (and a 429 that does not stop) comes out classified (errors.py)."""
        waited = 0
        while True:
            since_previous = await self.pacer.acquire(route)
            try:
                if self._session is not None:
                    resp = await self._send(self._session, client, method, body)
                else:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout)) as session:
                        resp = await self._send(session, client, method, body)
            except Exception as exc:
                raise classify(exc, channel=channel, what=what) from exc
            if resp.status_code == 429 and waited < RATE_LIMIT_WAITS:
                waited += 1
                self.pacer.limited(route, _retry_after(resp.headers), since_previous)
                continue
            if resp.status_code == 200 and resp.data is not None and resp.data.get("ok"):
                return resp.data
            error = (resp.data or {}).get("error") or f"HTTP {resp.status_code}"
            raise classify(SlackApiError(f"{method}: {error}", resp), channel=channel, what=what)

    # -- the slack_sdk path (look-ups after a crash, reveals: a few calls, not thousands) -----------

    async def _call(self, call: Callable[[], Awaitable[AsyncSlackResponse]], *, route: Route, channel: str,
                    what: str) -> AsyncSlackResponse:
        """`call()` once `route` may go; after a 429, pause the route for Retry-After and call again.
        Any other failure (and a 429 that does not stop) comes out classified (errors.py)."""
        waited = 0
        while True:
            await self.pacer.acquire(route)
            try:
                return await call()
            except SlackApiError as exc:
                if getattr(exc.response, "status_code", None) != 429 or waited >= RATE_LIMIT_WAITS:
                    raise classify(exc, channel=channel, what=what) from exc
                waited += 1
                self.pacer.limited(route, _retry_after(exc.response.headers))
            except Exception as exc:
                raise classify(exc, channel=channel, what=what) from exc

    async def post(self, post: DailyPost) -> str:
        client = await self.client_of(post.tenant)
        data = await self._lean_call(client, "chat.postMessage", self._body(post),
                                     route=route_of(post.tenant, "chat.postMessage", post.channel),
                                     channel=post.channel, what="posting the daily question")
        return message_ref(data["channel"], data["ts"])

    async def find(self, post: DailyPost) -> str | None:
        client = await self.client_of(post.tenant)
        try:
            resp = await self._call(lambda: client.conversations_history(
                channel=post.channel, include_all_metadata=True, limit=100),
                route=route_of(post.tenant, "conversations.history"), channel=post.channel,
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
        client = await self.client_of(reveal.tenant)
        try:
            message = self.render.daily_reveal(reveal)
            await self._call(lambda: client.chat_update(channel=channel, ts=ts, **message),
                             route=route_of(reveal.tenant, "chat.update"), channel=channel,
                             what="revealing the daily answer")
        except Permanent as exc:
            if exc.reason not in _NOT_EDITABLE:
                raise
            log.warning("could not edit daily post %s (%s); leaving it", reveal.post_id, exc.reason)
