"""A Slack workspace in a test: users type `/mldebt ...` and click buttons, exactly as Slack sends them.

Requests are signed with the app's secret and dispatched to the real AsyncApp (in-process, or over
HTTP to the real aiohttp server); replies land in the fake Slack, whose ephemeral messages are what
the user sees. A click is built from a message's actual buttons, so the test can only press what
the app rendered.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from adapters.slack.web import build_web_app
from bot.bank import Bank

from .fake_slack import FakeSlack
from .slack_requests import SignedRequest, signed_block_action, signed_slash_command
from .tracker import BackgroundTracker

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-test"
TEAM = "T0TEST"
USERGROUP = "S0MASTERY"


@dataclass
class Response:
    status: int
    body: str


class Workspace:
    def __init__(self, fake: FakeSlack, app: AsyncApp, tracker: BackgroundTracker, bank: Bank) -> None:
        self.fake, self.app, self.tracker, self.bank = fake, app, tracker, bank
        self.http: aiohttp.ClientSession | None = None  # set: requests go over HTTP to `events_url`
        self.events_url = ""

    def user(self, user_id: str = "U0ALICE", name: str = "alice", channel: str = "C0QUIZ", *,
             team: str = TEAM) -> SlackUser:
        return SlackUser(self, user_id, name, channel, team)

    async def send(self, req: SignedRequest) -> Response:
        """Deliver one request as Slack would and wait until the app's background work is done."""
        if self.http is not None:
            async with self.http.post(self.events_url, data=req.body.encode(), headers=req.headers) as r:
                resp = Response(r.status, await r.text())
        else:
            bolt: BoltResponse = await self.app.async_dispatch(AsyncBoltRequest(body=req.body, headers=req.headers))
            resp = Response(bolt.status, bolt.body)
        await self.tracker.idle()
        return resp


@dataclass
class SlackUser:
    ws: Workspace
    id: str
    name: str
    channel: str
    team: str = TEAM

    def command_request(self, text: str, **kw: Any) -> tuple[SignedRequest, str]:
        url = self.ws.fake.new_response_url(channel=self.channel, user=self.id)
        req = signed_slash_command(SECRET, text=text, user_id=self.id, user_name=self.name, team_id=self.team,
                                   channel_id=self.channel, response_url=url, **kw)
        return req, url

    async def command(self, text: str) -> dict | None:
        """`/mldebt <text>`: the ephemeral message the app posted in answer (None if none)."""
        req, url = self.command_request(text)
        resp = await self.ws.send(req)
        assert (resp.status, resp.body) == (200, ""), resp  # an empty ack within 3 s
        original = self.ws.fake.response_url_state(url).original
        return self.ws.fake.ephemeral_messages[original["ephemeral"]] if original else None

    def click_request(self, message: dict, label: str, *, action_ts: str | None = None,
                      trigger_id: str = "1337.43.abcdef") -> SignedRequest:
        action_id = buttons(message)[label]
        url = self.ws.fake.new_response_url(original={"ephemeral": message["id"]})
        return signed_block_action(SECRET, action_id=action_id, value=action_id, response_url=url,
                                   user_id=self.id, user_name=self.name, team_id=self.team, channel_id=self.channel,
                                   message_ts=message["ts"], is_ephemeral=True, button_text=label,
                                   action_ts=action_ts, trigger_id=trigger_id)

    async def click(self, message: dict, label: str, **kw: Any) -> Response:
        resp = await self.ws.send(self.click_request(message, label, **kw))
        assert (resp.status, resp.body) == (200, ""), resp
        return resp

    async def click_public(self, channel: str, ts: str, label: str, **kw: Any) -> Response:
        """A click on a message everyone in the channel sees (the daily question)."""
        message = {**self.ws.fake.messages[(channel, ts)], "id": None}
        action_id = buttons(message)[label]
        url = self.ws.fake.new_response_url(original={"channel": channel, "ts": ts}, channel=channel, user=self.id)
        req = signed_block_action(SECRET, action_id=action_id, value=action_id, response_url=url, user_id=self.id,
                                  user_name=self.name, team_id=self.team, channel_id=channel, message_ts=ts,
                                  button_text=label, message={k: v for k, v in message.items() if k != "id"},
                                  **kw)
        resp = await self.ws.send(req)
        assert (resp.status, resp.body) == (200, ""), resp
        return resp

    async def answer(self, message: dict, *, correct: bool = True) -> Response:
        return await self.click(message, letter(self.ws.bank, message, correct=correct))


# -- reading what the app rendered -------------------------------------------------------------


def buttons(message: dict) -> dict[str, str]:
    """Button label -> action id, over every actions block of the message."""
    return {el["text"]["text"]: el["action_id"] for b in message["blocks"] if b["type"] == "actions"
            for el in b["elements"]}


def texts(message: dict) -> str:
    """Every text the message shows, block by block, one per line."""
    out = []
    for b in message["blocks"]:
        if b["type"] == "section":
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out += [e["text"] for e in b["elements"]]
        elif b["type"] == "header":
            out.append(b["text"]["text"])
    return "\n".join(out)


def question_id(message: dict) -> str:
    """The question of the message's answer buttons (`mldebt:a|d:<session or post>:<question>:<letter>`)."""
    ids = {aid.split(":")[3] for aid in buttons(message).values() if aid.startswith(("mldebt:a:", "mldebt:d:"))}
    assert len(ids) == 1, ids
    return ids.pop()


def letter(bank: Bank, message: dict, *, correct: bool = True) -> str:
    """The letter of the right (or a wrong) choice, read from the rendered choices."""
    answer = bank.question(question_id(message)).answer_text
    for line in texts(message).splitlines():
        if line[:1] == "*" and line[2:4] == ")*":
            if (line[5:] == answer) == correct:
                return line[1]
    raise AssertionError(f"no {'right' if correct else 'wrong'} choice in {texts(message)!r}")


class Db:
    """Read-only looks at the SQLite file the engine writes (committed rows only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}")[0][0]

    def counts(self) -> dict[str, int]:
        tables = ("players", "sessions", "session_items", "answers", "badges", "outbox", "tenant_settings")
        return {t: self.count(t) for t in tables}


def ordered_web_app(app: AsyncApp) -> tuple[web.Application, list[str]]:
    """The app's HTTP server, logging in order each ack it sends ("ack 200") and each bolt dispatch ("bolt")."""
    order: list[str] = []
    dispatch = app.async_dispatch

    async def logged(req):  # type: ignore[no-untyped-def]
        order.append("bolt")
        return await dispatch(req)

    app.async_dispatch = logged  # type: ignore[method-assign]
    web_app = build_web_app(app)

    async def on_prepare(_request, response) -> None:
        order.append(f"ack {response.status}")

    web_app.on_response_prepare.append(on_prepare)
    return web_app, order
