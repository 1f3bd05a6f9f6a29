"""HTTP mode answers Slack's 200 before bolt runs: what the early ack keeps, and what still goes through bolt.

Over the real aiohttp server (web.py's handler): a verified command, click or event for the
installed workspace is acknowledged first, and bolt's dispatch runs afterwards from the work queue.
url_verification, another workspace's request and a request before the workspace is known go
through bolt inline, with the answers they always had.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from slack_sdk.signature import Clock

from adapters.slack.app import BUSY, build_app
from adapters.slack.web import serve_http
from adapters.slack.work import WorkQueue
from bot.engine import QuizEngine

from .fake_slack import RESPONSE_URL
from .slack_requests import JSON, sign, signed_slash_command
from .tracker import BackgroundTracker
from .workspace import SECRET, Workspace, ordered_web_app, question_id, texts


class GatedEngine(QuizEngine):
    """An engine whose `start` announces itself and then waits for the test."""

    gate: asyncio.Event
    entered: asyncio.Event

    async def start(self, *args, **kwargs):
        self.entered.set()
        await self.gate.wait()
        return await super().start(*args, **kwargs)


@pytest.fixture
async def served(settings, store, bank, clock, client, fake):
    """A gated engine's app behind the real HTTP server, plus a log of acks and bolt dispatches in order."""
    engine = GatedEngine(store, bank, clock)
    engine.gate, engine.entered = asyncio.Event(), asyncio.Event()
    engine.gate.set()
    app = build_app(settings, engine, client=client)
    web_app, order = ordered_web_app(app)
    runner, port = await serve_http(web_app, "127.0.0.1", 0)
    ws = Workspace(fake, app, BackgroundTracker(app), bank)
    async with aiohttp.ClientSession() as http:
        ws.http, ws.events_url = http, f"http://127.0.0.1:{port}/slack/events"
        ws.engine, ws.order = engine, order  # type: ignore[attr-defined]
        yield ws
    engine.gate.set()
    await app.work.close()
    await runner.cleanup()


async def test_the_first_request_goes_through_bolt_then_acks_come_before_bolt(served, fake, db):
    alice = served.user()
    await alice.command("help")  # the workspace is not known yet: bolt runs inline (auth.test)
    assert served.order == ["bolt", "ack 200"]
    served.order.clear()
    message = await alice.command("challenge")
    assert served.order == ["ack 200", "bolt"]  # Slack had its 200 before bolt saw the request
    served.order.clear()
    await alice.answer(message)
    assert served.order == ["ack 200", "bolt"]
    assert db.rows("SELECT outcome FROM answers") in ([("correct",)], [("wrong",)])
    assert db.count("sessions") == 1 and question_id(message)


async def test_the_ack_does_not_wait_for_the_work(served, fake, db):
    alice = served.user()
    await alice.command("help")
    served.engine.gate.clear()
    req, url = alice.command_request("challenge")
    async with served.http.post(served.events_url, data=req.body.encode(), headers=req.headers) as r:
        assert (r.status, await r.text()) == (200, "")
    await served.engine.entered.wait()
    shown = fake.response_url_state(url).posts
    assert db.count("sessions") == 0 and shown == [] and served.app.work.pending == 1
    served.engine.gate.set()
    await served.tracker.idle()
    assert db.count("sessions") == 1 and len(shown) == 1


async def test_url_verification_is_answered_with_its_challenge(served):
    await served.user().command("help")
    body = json.dumps({"token": "deprecated", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    resp = await served.send(sign(body, SECRET, content_type=JSON))
    assert resp.status == 200
    assert json.loads(resp.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_another_workspace_is_refused_with_403_and_nothing_written(served, fake, db):
    await served.user().command("help")
    before = db.counts()
    served.order.clear()
    req = signed_slash_command(SECRET, text="challenge", user_id="U0FOREIGN", team_id="T0OTHER",
                               response_url=fake.new_response_url())
    resp = await served.send(req)
    assert (resp.status, resp.body) == (403, "This app is not installed in that workspace.")
    assert served.order == ["bolt", "ack 403"] and db.counts() == before and served.app.work.pending == 0


async def test_a_command_delivered_twice_at_once_runs_once(served, fake, db):
    alice = served.user()
    await alice.command("help")
    req, url = alice.command_request("challenge", trigger_id="77.1.same")
    retry = req.with_headers(X_Slack_Retry_Num="1", X_Slack_Retry_Reason="http_timeout")
    first, second = await asyncio.gather(served.send(req), served.send(retry))
    assert (first.status, first.body) == (second.status, second.body) == (200, "")
    assert db.count("sessions") == 1
    assert db.rows("SELECT key FROM inbound_seen WHERE key LIKE 'trigger:77%'") == [("trigger:77.1.same",)]
    assert len(fake.response_url_state(url).posts) == 1


async def test_work_runs_in_arrival_order_and_a_full_queue_says_busy(served, fake, db):
    await served.user().command("help")
    helped = len(fake.calls_for(RESPONSE_URL))
    work = served.app.work
    await work.close()  # a fresh queue: one worker, room for two waiting
    work.workers, work.size = 1, 2
    served.engine.gate.clear()
    urls = []
    for n, user in enumerate(("U0AMY", "U0BEN", "U0CAT", "U0DAN")):
        req, url = served.user(user, user.lower()).command_request("challenge")
        urls.append(url)
        async with served.http.post(served.events_url, data=req.body.encode(), headers=req.headers) as r:
            assert (r.status, await r.text()) == (200, "")  # every one acknowledged, the refused one too
        if n == 0:
            await served.engine.entered.wait()  # the one worker holds AMY's job; BEN and CAT wait, DAN is refused
    dan = fake.response_url_state(urls[3])
    await fake.wait_until(lambda: bool(dan.posts))
    assert [(c.path, c.json["text"], c.json["response_type"]) for c in fake.calls_for(RESPONSE_URL)[helped:]] == \
        [(f"/response/{dan.id}", BUSY, "ephemeral")]  # only DAN was told, and nothing else was sent yet
    assert work.refused == 1
    served.engine.gate.set()
    await served.tracker.idle()
    players = db.rows("SELECT p.user_id FROM sessions s JOIN players p ON p.id = s.player_id ORDER BY s.rowid")
    assert players == [("U0AMY",), ("U0BEN",), ("U0CAT",)]


@pytest.mark.parametrize("http_mode", [True, False])
async def test_after_http_acks_jobs_start_one_per_loop_turn(http_mode):
    """HTTP mode: queued jobs start one per turn of the event loop, so connections that arrived in
    between are read first; Socket Mode (no HTTP acks) starts them as before."""
    work = WorkQueue(logging.getLogger("test"), workers=2)
    if http_mode:
        with work.acking():
            pass  # one request acknowledged over HTTP
    loop = asyncio.get_running_loop()
    marks: list[str] = []

    def job(name: str):
        async def run() -> None:
            marks.append(name)
            loop.call_soon(marks.append, f"turn after {name}")
        return run

    work.defer(job("first"), lambda: pytest.fail("nothing is refused"))
    work.defer(job("second"), lambda: pytest.fail("nothing is refused"))
    await work.idle()
    await asyncio.sleep(0)
    await work.close()
    if http_mode:
        assert marks == ["first", "turn after first", "second", "turn after second"]
    else:
        assert marks == ["first", "second", "turn after first", "turn after second"]


async def test_a_job_that_waited_past_the_signature_window_still_runs(served, fake, db, monkeypatch):
    """Verified on arrival, acknowledged, then queued for longer than Slack's 5 minutes: bolt's own check at
    dispatch sees a request signed again as of then, so the work is not refused after its 200."""
    await served.user().command("help")
    work = served.app.work
    await work.close()
    work.workers = 1  # one worker, held by AMY's job
    served.engine.gate.clear()
    amy, _ = served.user("U0AMY", "amy").command_request("challenge")
    ben, ben_url = served.user("U0BEN", "ben").command_request("challenge")
    for req in (amy, ben):
        async with served.http.post(served.events_url, data=req.body.encode(), headers=req.headers) as r:
            assert (r.status, await r.text()) == (200, "")
        await served.engine.entered.wait()
    real_now = Clock.now
    monkeypatch.setattr(Clock, "now", lambda self: real_now(self) + 400)  # BEN's job starts 400 s later
    served.engine.gate.set()
    await served.tracker.idle()
    players = db.rows("SELECT p.user_id FROM sessions s JOIN players p ON p.id = s.player_id ORDER BY s.rowid")
    assert players == [("U0AMY",), ("U0BEN",)]
    assert "*Mastery challenge* · 1/5" in texts(fake.response_url_state(ben_url).posts[0])


async def test_shutdown_works_off_what_was_acknowledged(served, fake, db):
    await served.user().command("help")
    served.engine.gate.clear()
    for user in ("U0AMY", "U0BEN", "U0CAT"):
        req, _ = served.user(user, user.lower()).command_request("challenge")
        async with served.http.post(served.events_url, data=req.body.encode(), headers=req.headers) as r:
            assert r.status == 200
    await served.engine.entered.wait()
    assert db.count("sessions") == 0
    drain = asyncio.create_task(served.app.work.drain(10))
    served.engine.gate.set()
    assert await drain == 0
    assert db.count("sessions") == 3


async def test_shutdown_gives_up_after_its_wait_and_says_how_many_were_left(caplog):
    work = WorkQueue(logging.getLogger("test"), workers=1)
    held = asyncio.Event()
    work.defer(held.wait, lambda: pytest.fail("nothing is refused"))
    work.defer(held.wait, lambda: pytest.fail("nothing is refused"))
    assert await work.drain(0.01) == 2
    assert "stopping with 2 acknowledged Slack requests not worked off" in caplog.text
    await work.close()


async def test_a_request_bolt_answers_inline_does_not_hold_back_queued_work(served, fake, db):
    """Another workspace's request goes through bolt before its answer; queued jobs run meanwhile."""
    await served.user().command("help")
    order = served.order
    slow, inside = asyncio.Event(), asyncio.Event()
    dispatch = served.app.async_dispatch

    async def slow_for_foreigners(req):  # type: ignore[no-untyped-def]
        if "T0OTHER" in req.raw_body:
            inside.set()
            await slow.wait()
        return await dispatch(req)

    served.app.async_dispatch = slow_for_foreigners  # type: ignore[method-assign]
    foreign = signed_slash_command(SECRET, text="challenge", user_id="U0FOREIGN", team_id="T0OTHER",
                                   response_url=fake.new_response_url())
    pending = asyncio.create_task(served.send(foreign))
    await inside.wait()
    order.clear()
    message = await served.user("U0AMY", "amy").command("challenge")  # acked and worked off meanwhile
    assert "*Mastery challenge* · 1/5" in texts(message) and not pending.done()
    slow.set()
    assert (await pending).status == 403
