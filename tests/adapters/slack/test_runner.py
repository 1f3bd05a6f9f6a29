"""`mldebt run` with Slack: the real aiohttp server on 127.0.0.1 (HTTP mode) and Socket Mode."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from urllib.parse import parse_qsl

import aiohttp
import pytest

from adapters.slack.runner import run_slack, slack_running
from bot.cli import Core

from .fake_slack import RESPONSE_URL
from .slack_requests import block_actions_payload, slash_command_body
from .tracker import BackgroundTracker
from .workspace import APP_TOKEN, TEAM, USERGROUP, Workspace, buttons, question_id, texts


@pytest.fixture
def core(settings, bank, store, engine, scheduler, clock) -> Core:
    return Core(settings, bank, store, engine, scheduler, clock)


async def test_http_mode_through_the_real_server(core, client, fake, db, bank):
    async with slack_running(core, client=client) as rt, aiohttp.ClientSession() as http:
        assert rt.mode == "http" and rt.port
        base = f"http://127.0.0.1:{rt.port}"
        async with http.get(base + "/healthz") as r:
            assert r.status == 200 and await r.json() == {"ok": True, "slack": "http", "database": "ok"}
        ws = Workspace(fake, rt.app, BackgroundTracker(rt.app), bank)
        ws.http, ws.events_url = http, base + "/slack/events"
        alice = ws.user()

        msg = await alice.command("challenge")  # form-encoded, signed, over TCP
        assert "1/5" in texts(msg)
        await alice.answer(msg)  # payload=<json>, signed, over TCP
        assert ":white_check_mark: *Correct!*" in texts(msg) and "2/5" in texts(msg)

        req, _ = alice.command_request("stats")
        forged = dataclasses.replace(req, headers={**req.headers, "X-Slack-Signature": "v0=" + "0" * 64})
        async with http.post(ws.events_url, data=forged.body.encode(), headers=forged.headers) as r:
            assert r.status == 401
        async with http.post(base + "/elsewhere", data=b"x") as r:
            assert r.status == 404
        await ws.tracker.idle()
    assert db.rows("SELECT outcome FROM answers") == [("correct",)]
    assert db.rows("SELECT route FROM sessions")[0][0].startswith('{"response_url":"http://127.0.0.1:')


async def test_healthz_answers_503_when_the_database_cannot_answer(core, client):
    async with slack_running(core, client=client) as rt, aiohttp.ClientSession() as http:
        await core.store.close()  # as if the database went away
        async with http.get(f"http://127.0.0.1:{rt.port}/healthz") as r:
            assert r.status == 503
            assert await r.json() == {"ok": False, "slack": "http", "database": "unavailable"}


async def test_socket_mode_session(core, client, fake, db, settings):
    core.settings = dataclasses.replace(settings, slack_app_token=APP_TOKEN, slack_signing_secret=None)
    async with slack_running(core, client=client) as rt:
        assert rt.mode == "socket" and rt.port is None
        tracker = BackgroundTracker(rt.app)
        assert fake.calls_for("apps.connections.open")[0].token == APP_TOKEN
        await fake.wait_for_socket_session()

        url = fake.new_response_url()
        payload = dict(parse_qsl(slash_command_body(text="challenge", response_url=url, team_id=TEAM)))
        env = await fake.send_envelope("slash_commands", payload, accepts_response_payload=True)
        assert await fake.wait_for_socket_ack(env) == {"envelope_id": env}  # an empty ack
        await tracker.idle()
        msg = fake.ephemeral_messages["E1"]
        assert "1/5" in texts(msg)

        label = "Hint"
        click_url = fake.new_response_url(original={"ephemeral": "E1"})
        action = buttons(msg)[label]
        env = await fake.send_envelope("interactive", block_actions_payload(
            action_id=action, value=action, response_url=click_url, team_id=TEAM, is_ephemeral=True))
        await fake.wait_for_socket_ack(env)
        await tracker.idle()
        assert ":bulb: *Hint:*" in texts(msg) and "Hint" not in buttons(msg)
    assert db.rows("SELECT hint_used FROM session_items WHERE position = 0") == [(1,)]


async def test_run_slack_stops_cleanly_when_cancelled(core, client, fake, settings):
    core.settings = dataclasses.replace(settings, slack_app_token=APP_TOKEN)
    task = asyncio.create_task(run_slack(core, client=client))
    await fake.wait_for_socket_session()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_until(lambda: not fake.socket_sessions)  # the app closed its websocket


async def test_time_outs_reach_slack_through_the_running_scheduler(core, client, fake, bank, clock):
    async with slack_running(core, client=client) as rt:
        ws = Workspace(fake, rt.app, BackgroundTracker(rt.app), bank)
        msg = await ws.user().command("challenge")
        task = core.scheduler.start()
        try:
            async with asyncio.timeout(5):
                await core.scheduler.asleep.wait()
                clock.advance(bank.question(question_id(msg)).time_limit)
                await fake.wait_for(RESPONSE_URL, count=2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert "Time's up!" in texts(msg)


async def test_pending_grants_are_retried_at_start_up(core, client, fake, db, bank, clock, settings):
    # a badge whose user-group update failed while the bot ran ...
    fake.fail("usergroups.users.update", "ratelimited")
    async with slack_running(core, client=client) as rt:
        ws = Workspace(fake, rt.app, BackgroundTracker(rt.app), bank)
        alice = ws.user()
        msg = await alice.command("challenge")
        for _ in range(5):
            await alice.answer(msg)
    assert db.rows("SELECT status, last_error FROM outbox WHERE kind = 'grant'") == [("pending", "ratelimited")]
    # ... is carried out by the outbox after a restart, once its backoff has passed
    clock.advance(60)
    async with slack_running(core, client=client):
        await core.scheduler.tick()
    assert db.rows("SELECT status, attempts FROM outbox WHERE kind = 'grant'") == [("sent", 2)]
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]


def test_manifest_round_trip_is_valid_json_for_slack():
    """Slack's manifest API takes JSON; the YAML must convert without YAML-only types."""
    from pathlib import Path

    import yaml

    import adapters.slack

    manifest = yaml.safe_load((Path(adapters.slack.__file__).parent / "manifest.yml").read_text())
    assert json.loads(json.dumps(manifest)) == manifest
