"""A loopback fake of the Slack Web API (plus response_url and Socket Mode) for tests.

Runs an aiohttp server on 127.0.0.1 with a random port, inside the test's own
event loop. Every request is recorded (method, HTTP verb, headers, query, form,
JSON, raw body, status answered). Point the real clients at it:

    fake = FakeSlack(); await fake.start()
    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)   # ends with "/"
    ...
    await fake.stop()

Behaviour knobs:
    fake.rate_limit("chat.postMessage", times=2, retry_after=1)   # 429 + Retry-After, next 2 calls
    fake.fail("chat.update", "message_not_found", times=1)        # HTTP 200 {"ok": false, "error": ...}
    fake.fail(RESPONSE_URL, "expired_url")                         # response_url answers 404 expired_url
    fake.fail_http("chat.postMessage", 502, times=1)               # an HTML error page (or body="" / text)
    fake.hang("chat.postMessage", times=1)                         # no answer until the client gives up
    fake.channels["C0GONE"] = None                                 # conversations.info: channel_not_found
    fake.channels["C0OUT"] = {"is_member": False}                  # ... the bot is not in it
    url = fake.new_response_url(channel="C1", user="U1")           # a command's response_url
    url = fake.new_response_url(original={"ephemeral": "E1"})      # a click's: original = that message
    fake.install_code("c0de", team_id="T0B", token="xoxb-b")       # oauth.v2.access: a one-time code
    fake.revoked.add("xoxb-b")                                      # calls with it: token_revoked
    calls = await fake.wait_for("chat.postMessage", count=1)       # event-driven, no polling

response_url model: an ephemeral post creates a message in `fake.ephemeral_messages` (only its
user sees it); `replace_original` rewrites the URL's original message (for a command's URL: the
last message posted through it); `in_channel` posts land in `fake.channel_posts`.

Many workspaces: each bot token an install handed out (`install_code`, then oauth.v2.access) belongs
to its workspace, and auth.test, users.info and views.publish answer as that workspace; any other
xoxb- token is the default workspace's. Every call's token is recorded (`RecordedCall.token`).

Not a full Slack: only the methods the mldebt adapter uses are modelled; any other
method answers {"ok": false, "error": "unknown_method"} (and is still recorded).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

RESPONSE_URL = "response_url"  # pseudo method name under which response_url POSTs are recorded


@dataclass
class RecordedCall:
    method: str  # Web API method ("chat.postMessage") or RESPONSE_URL
    http_method: str  # "POST" / "GET"
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    form: dict[str, str]
    json: dict | None
    raw_body: str
    status: int = 200  # HTTP status the fake answered
    response: Any = None  # body the fake answered

    @property
    def args(self) -> dict[str, Any]:
        """All arguments merged, the way Slack reads them (query < form < JSON)."""
        return {**self.query, **self.form, **(self.json or {})}

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return self.args.get("token")


@dataclass
class _Planned:
    kind: str  # "rate_limit" | "error" | "http" | "hang" | "pass"
    retry_after: int = 1
    error: str = ""
    status: int = 200
    body: str = ""
    content_type: str = "text/html"


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class ResponseURLState:
    id: str
    original: dict | None = None  # {"channel","ts"} or {"ephemeral": id} of the message the URL belongs to
    posts: list[dict] = field(default_factory=list)
    channel: str = "C0QUIZ"
    user: str = "U0ALICE"
    deleted: bool = False


class FakeSlack:
    def __init__(
        self,
        *,
        team_id: str = "T0TEST",
        team: str = "mldebt-test",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        scopes: str = "commands,chat:write,usergroups:read,usergroups:write",
        usergroups: dict[str, list[str]] | None = None,
    ):
        self.team_id, self.team, self.bot_user_id, self.bot_id = team_id, team, bot_user_id, bot_id
        self.scopes = scopes
        self.calls: list[RecordedCall] = []
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> message
        self.ephemerals: list[dict] = []
        self.home_views: dict[str, dict] = {}  # user_id -> last published view
        self.usergroups: dict[str, list[str]] = dict(usergroups or {})
        self.response_urls: dict[str, ResponseURLState] = {}
        self.ephemeral_messages: dict[str, dict] = {}  # id -> {"id","channel","user","text","blocks"}
        self.channel_posts: list[dict] = []  # in_channel response_url posts: {"channel","text","blocks"}
        self.users: dict[str, dict] = {}  # users.info: user id -> user object fields (is_admin, ...)
        # conversations.info: channel -> fields (is_member, is_archived); None = deleted; absent = a
        # channel the bot is in
        self.channels: dict[str, dict | None] = {}
        self._hung: list[asyncio.Event] = []
        self._ephemeral_ids = itertools.count(1)
        self.socket_sessions: list[web.WebSocketResponse] = []
        self.socket_received: list[dict] = []  # frames the app sent back over Socket Mode (acks)
        self._plans: dict[str, list[_Planned]] = {}
        self._ts = itertools.count(1)
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        # OAuth installs: the app's credentials, one-time codes, and the workspace of each token handed out
        self.client_id, self.client_secret = "1111.2222", "0123456789abcdef0123456789abcdef"
        self.codes: dict[str, dict[str, str]] = {}
        self.token_teams: dict[str, str] = {}  # bot token -> team id
        self.revoked: set[str] = set()  # tokens Slack no longer accepts (uninstalled, revoked)
        self._team = team_id  # the workspace of the call being answered

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Use as AsyncWebClient(base_url=...). The trailing slash matters (method is appended)."""
        return self.url + "/"

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_get("/socket-mode/{sid}", self._handle_socket)
        app.router.add_route("*", "/{method}", self._handle_api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host="127.0.0.1", port=0)  # 0 = random free port
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for gate in self._hung:
            gate.set()
        for ws in list(self.socket_sessions):  # open websockets would block cleanup
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ knobs
    def install_code(self, code: str, *, team_id: str, token: str, team: str | None = None,
                     installer: str = "U0ADMIN") -> None:
        """A code Slack gives a browser that approved the install in `team_id`; oauth.v2.access trades it
        once for `token`."""
        self.codes[code] = {"team_id": team_id, "team": team or team_id.lower(), "token": token,
                            "installer": installer}

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer HTTP 429 + Retry-After for the next `times` calls of `method` (or RESPONSE_URL)."""
        self._plans.setdefault(method, []).extend(
            _Planned("rate_limit", retry_after=retry_after) for _ in range(times)
        )

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer HTTP 200 {"ok": false, "error": error} for the next `times` calls of `method`."""
        self._plans.setdefault(method, []).extend(_Planned("error", error=error) for _ in range(times))

    def fail_http(self, method: str, status: int = 502, *, body: str = HTML_502, content_type: str = "text/html",
                  times: int = 1) -> None:
        """Answer HTTP `status` with a non-JSON `body` (an HTML page, "" or plain text) for the next calls."""
        self._plans.setdefault(method, []).extend(
            _Planned("http", status=status, body=body, content_type=content_type) for _ in range(times))

    def passes(self, method: str, *, times: int = 1) -> None:
        """Answer the next `times` calls normally (to aim a later planned failure at a later call)."""
        self._plans.setdefault(method, []).extend(_Planned("pass") for _ in range(times))

    def hang(self, method: str, *, times: int = 1) -> None:
        """Never answer the next `times` calls (until `stop`): the client's own timeout must end them."""
        self._plans.setdefault(method, []).extend(_Planned("hang") for _ in range(times))

    async def _misbehave(self, call: RecordedCall, plan: _Planned) -> web.Response:
        if plan.kind == "hang":
            gate = asyncio.Event()
            self._hung.append(gate)
            call.status = 0
            await self._record(call)
            await gate.wait()
            return web.Response(status=504)
        return await self._answer_raw(call, plan.status, plan.body, plan.content_type)

    async def _answer_raw(self, call: RecordedCall, status: int, body: str, content_type: str) -> web.Response:
        call.status, call.response = status, body
        await self._record(call)
        return web.Response(status=status, text=body, content_type=content_type)

    def new_response_url(self, original: dict | None = None, *, channel: str = "C0QUIZ",
                         user: str = "U0ALICE") -> str:
        rid = uuid.uuid4().hex[:12]
        if original is not None and "ephemeral" in original:
            msg = self.ephemeral_messages[original["ephemeral"]]
            channel, user = msg["channel"], msg["user"]
        self.response_urls[rid] = ResponseURLState(id=rid, original=original, channel=channel, user=user)
        return f"{self.url}/response/{rid}"

    def response_url_state(self, url: str) -> ResponseURLState:
        return self.response_urls[url.rsplit("/", 1)[1]]

    def add_message(self, channel: str, text: str = "", blocks: list | None = None) -> str:
        ts = self._next_ts()
        self.messages[(channel, ts)] = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "text": text,
            "blocks": blocks or [],
        }
        return ts

    # ------------------------------------------------------------------ queries
    def calls_for(self, method: str, *, ok_only: bool = False) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200)]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        *,
        where: Callable[[RecordedCall], bool] | None = None,
        within: float = 5.0,
    ) -> list[RecordedCall]:
        """Wait (event-driven, no polling) until `count` matching calls were recorded."""

        def matching() -> list[RecordedCall]:
            return [c for c in self.calls if c.method == method and (where is None or where(c))]

        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: len(matching()) >= count), within)
            return matching()

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checked whenever a call or a socket change is recorded."""
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(predicate), within)

    async def _record(self, call: RecordedCall) -> None:
        async with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    # ------------------------------------------------------------------ HTTP handlers
    async def _read(self, request: web.Request, method: str) -> RecordedCall:
        raw = await request.text()
        form: dict[str, str] = {}
        body_json: dict | None = None
        if request.content_type == "application/json" and raw:
            body_json = json.loads(raw)
        elif request.content_type == "application/x-www-form-urlencoded" and raw:
            form = dict(parse_qsl(raw, keep_blank_values=True))
        return RecordedCall(
            method=method,
            http_method=request.method,
            path=request.path,
            headers=dict(request.headers),
            query=dict(request.query),
            form=form,
            json=body_json,
            raw_body=raw,
        )

    def _planned(self, method: str) -> _Planned | None:
        queue = self._plans.get(method)
        plan = queue.pop(0) if queue else None
        return None if plan is not None and plan.kind == "pass" else plan

    async def _answer(
        self, call: RecordedCall, status: int, body: Any, headers: dict | None = None
    ) -> web.Response:
        call.status, call.response = status, body
        await self._record(call)
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._read(request, method)
        plan = self._planned(method)
        if plan is not None and plan.kind in ("http", "hang"):
            return await self._misbehave(call, plan)
        if plan is not None and plan.kind == "rate_limit":
            return await self._answer(
                call,
                429,
                {"ok": False, "error": "ratelimited"},
                headers={"Retry-After": str(plan.retry_after)},
            )
        if plan is not None and plan.kind == "error":
            return await self._answer(call, 200, {"ok": False, "error": plan.error})
        if method == "oauth.v2.access":
            return await self._answer(call, 200, self._oauth_v2_access(call))
        token = call.token
        if not token:
            return await self._answer(call, 200, {"ok": False, "error": "not_authed"})
        if token in self.revoked:
            return await self._answer(call, 200, {"ok": False, "error": "token_revoked"})
        self._team = self.token_teams.get(token, self.team_id)
        if method == "apps.connections.open":
            if not token.startswith("xapp-"):
                return await self._answer(call, 200, {"ok": False, "error": "not_allowed_token_type"})
            ws_url = f"ws://127.0.0.1:{self.port}/socket-mode/{uuid.uuid4().hex[:8]}"
            return await self._answer(call, 200, {"ok": True, "url": ws_url})
        if not token.startswith("xoxb-"):
            return await self._answer(call, 200, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return await self._answer(call, 200, {"ok": False, "error": "unknown_method"})
        body, headers = handler(call.args)
        return await self._answer(call, 200, body, headers)

    def _oauth_v2_access(self, call: RecordedCall) -> dict:
        """Trade a one-time code for a bot token, if the app's credentials (HTTP Basic) are right."""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if call.headers.get("Authorization") != f"Basic {expected}":
            return {"ok": False, "error": "invalid_client_id"}
        grant = self.codes.pop(call.args.get("code") or "", None)
        if grant is None:
            return {"ok": False, "error": "invalid_code"}
        self.token_teams[grant["token"]] = grant["team_id"]
        return {"ok": True, "app_id": "A0TEST", "authed_user": {"id": grant["installer"]}, "scope": self.scopes,
                "token_type": "bot", "access_token": grant["token"], "bot_user_id": self.bot_user_id,
                "team": {"id": grant["team_id"], "name": grant["team"]}, "enterprise": None,
                "is_enterprise_install": False}

    # --- Web API methods. Each returns (json_body, extra_headers); `self._team` is the caller's workspace.
    def _m_auth_test(self, a: dict):
        return (
            {
                "ok": True,
                "url": f"https://{self.team}.slack.com/",
                "team": self.team,
                "user": "mldebt",
                "team_id": self._team,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            },
            {"x-oauth-scopes": self.scopes},  # bolt reads bot scopes from this header
        )

    def _m_chat_postMessage(self, a: dict):
        channel = a.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}, None
        if not (a.get("text") or a.get("blocks") or a.get("attachments")):
            return {"ok": False, "error": "no_text"}, None
        ts = self._next_ts()
        msg = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": ts,
            "text": a.get("text", ""),
            "blocks": _maybe_json(a.get("blocks")) or [],
        }
        if a.get("thread_ts"):
            msg["thread_ts"] = a["thread_ts"]
        if a.get("metadata"):
            msg["metadata"] = _maybe_json(a["metadata"])
        self.messages[(channel, ts)] = {**msg, "channel": channel}
        return {"ok": True, "channel": channel, "ts": ts, "message": msg}, None

    def _m_chat_postEphemeral(self, a: dict):
        if not a.get("channel"):
            return {"ok": False, "error": "channel_not_found"}, None
        if not a.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}, None
        if not (a.get("text") or a.get("blocks") or a.get("attachments")):
            return {"ok": False, "error": "no_text"}, None
        ts = self._next_ts()
        self.ephemerals.append({**a, "blocks": _maybe_json(a.get("blocks")), "message_ts": ts})
        return {"ok": True, "message_ts": ts}, None

    def _m_chat_update(self, a: dict):
        key = (a.get("channel"), a.get("ts"))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}, None
        msg = self.messages[key]
        if "text" in a:
            msg["text"] = a["text"]
        if "blocks" in a:
            msg["blocks"] = _maybe_json(a["blocks"])
        return {
            "ok": True,
            "channel": key[0],
            "ts": key[1],
            "text": msg["text"],
            "message": {k: v for k, v in msg.items() if k != "channel"},
        }, None

    def _m_views_publish(self, a: dict):
        user_id, view = a.get("user_id"), _maybe_json(a.get("view"))
        if not user_id or not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}, None
        if view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}, None
        stored = {
            "id": "V" + uuid.uuid4().hex[:10].upper(),
            "team_id": self._team,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "hash": f"{time.time():.6f}",
            "bot_id": self.bot_id,
        }
        self.home_views[user_id] = stored
        return {"ok": True, "view": stored}, None

    def _m_conversations_history(self, a: dict):
        channel = a.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}, None
        with_meta = str(a.get("include_all_metadata")).lower() in ("1", "true")
        found = sorted((m for (c, _), m in self.messages.items() if c == channel), key=lambda m: m["ts"],
                       reverse=True)[: int(a.get("limit") or 100)]
        out = [{k: v for k, v in m.items() if k != "channel" and (with_meta or k != "metadata")} for m in found]
        return {"ok": True, "messages": out, "has_more": False}, None

    def _m_conversations_info(self, a: dict):
        channel = a.get("channel")
        fields = self.channels.get(channel, {}) if channel else None
        if fields is None:
            return {"ok": False, "error": "channel_not_found"}, None
        info = {"id": channel, "is_channel": True, "is_archived": False, "is_member": True, **fields}
        return {"ok": True, "channel": info}, None

    def _m_users_info(self, a: dict):
        user = a.get("user")
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}, None
        return {"ok": True, "user": {"id": user, "team_id": self._team, **self.users[user]}}, None

    def _m_usergroups_users_list(self, a: dict):
        group = a.get("usergroup")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}, None
        return {"ok": True, "users": list(self.usergroups[group])}, None

    def _m_usergroups_users_update(self, a: dict):
        group = a.get("usergroup")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}, None
        users = [u for u in str(a.get("users") or "").split(",") if u]
        if not users:  # Slack refuses to empty a group (use usergroups.disable instead)
            return {"ok": False, "error": "no_users_provided"}, None
        self.usergroups[group] = users
        return {
            "ok": True,
            "usergroup": {
                "id": group,
                "team_id": self.team_id,
                "is_usergroup": True,
                "users": users,
                "user_count": len(users),
            },
        }, None

    # --- response_url
    async def _handle_response_url(self, request: web.Request) -> web.Response:
        call = await self._read(request, RESPONSE_URL)
        state = self.response_urls.get(request.match_info["rid"])
        if state is None:
            return await self._answer(call, 404, "no_such_url")  # unknown id: a wrong URL in the test
        plan = self._planned(RESPONSE_URL)
        if plan is not None and plan.kind in ("http", "hang"):
            return await self._misbehave(call, plan)
        if plan is not None and plan.kind == "rate_limit":
            return await self._answer(
                call, 429, "rate_limited", headers={"Retry-After": str(plan.retry_after)}
            )
        if plan is not None and plan.kind == "error":
            return await self._answer(call, 404, plan.error)  # e.g. expired_url, used_url
        body = call.json or {}
        state.posts.append(body)
        original = state.original or {}
        if body.get("delete_original") and original:
            state.deleted = True
            if "ephemeral" in original:
                self.ephemeral_messages.pop(original["ephemeral"], None)
            else:
                self.messages.pop((original["channel"], original["ts"]), None)
        elif body.get("replace_original") and "ephemeral" in original:
            msg = self.ephemeral_messages[original["ephemeral"]]
            msg["text"], msg["blocks"] = body.get("text", ""), body.get("blocks", [])
            msg["versions"] += 1
        elif body.get("replace_original") and original:
            key = (original["channel"], original["ts"])
            self.messages[key] = {
                **self.messages.get(key, {}),
                "channel": key[0],
                "ts": key[1],
                "text": body.get("text", ""),
                "blocks": body.get("blocks", []),
            }
        elif body.get("response_type") == "in_channel":
            self.channel_posts.append(
                {"channel": state.channel, "text": body.get("text", ""), "blocks": body.get("blocks", [])}
            )
        else:  # a new ephemeral message; later replace_original through this URL rewrites it
            mid = f"E{next(self._ephemeral_ids)}"
            self.ephemeral_messages[mid] = {
                "id": mid, "channel": state.channel, "user": state.user, "text": body.get("text", ""),
                "blocks": body.get("blocks", []), "ts": self._next_ts(), "versions": 1,
            }
            if state.original is None:
                state.original = {"ephemeral": mid}
        return await self._answer(call, 200, {"ok": True})

    # --- Socket Mode websocket (the URL apps.connections.open hands out)
    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # autoping=True answers the client's pings
        await ws.prepare(request)
        async with self._cond:
            self.socket_sessions.append(ws)
            self._cond.notify_all()
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A0TEST"},
            }
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    async with self._cond:
                        self.socket_received.append(json.loads(msg.data))
                        self._cond.notify_all()
        finally:
            async with self._cond:
                if ws in self.socket_sessions:
                    self.socket_sessions.remove(ws)
                self._cond.notify_all()
        return ws

    async def send_envelope(
        self,
        envelope_type: str,
        payload: dict,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Push a Socket Mode envelope to the connected app; returns its envelope_id."""
        if not self.socket_sessions:
            raise RuntimeError("no Socket Mode session is connected")
        envelope_id = uuid.uuid4().hex
        env: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            env["retry_attempt"], env["retry_reason"] = retry_attempt, retry_reason or "timeout"
        await self.socket_sessions[-1].send_json(env)
        return envelope_id

    async def wait_for_socket_ack(self, envelope_id: str, within: float = 5.0) -> dict:
        def find():
            return next((m for m in self.socket_received if m.get("envelope_id") == envelope_id), None)

        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: find() is not None), within)
            return find()

    async def wait_for_socket_session(self, within: float = 5.0) -> web.WebSocketResponse:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: bool(self.socket_sessions)), within)
            return self.socket_sessions[-1]

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"


def _maybe_json(value: Any) -> Any:
    """Blocks/views arrive as JSON strings when sent form-encoded, as objects when sent as JSON."""
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value
