"""Issue 10's classes on Slack, driven by the fake's failure injection: what the database records, which
Slack calls are made, and what the player and the admin see."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest

import adapters.slack.web as slack_web
from adapters.slack.errors import classify
from adapters.slack.web import build_web_app, serve_http
from bot.platform_errors import Permanent, Transient

from .fake_slack import RESPONSE_URL
from .slack_requests import (
    SignedRequest,
    app_home_opened_event,
    block_actions_payload,
    interactivity_body,
    sign,
    signed_event,
    signed_slash_command,
)
from .workspace import SECRET, TEAM, texts

SET = "daily set <#C0DAILY|ml-daily> 09:00 Europe/Berlin"


async def earn_badge(user) -> dict:
    msg = await user.command("challenge")
    for _ in range(5):
        await user.answer(msg)
    return msg


def signed(body: str, content_type: str = "application/x-www-form-urlencoded") -> SignedRequest:
    return sign(body, SECRET, content_type=content_type)


# -- a daily channel the bot cannot post to ---------------------------------------------------------

@pytest.mark.parametrize(("fields", "says"), [
    ({"is_member": False}, "Invite the bot to <#C0DAILY>: type /invite @mldebt there"),
    (None, "The channel &lt;#C0DAILY&gt; is gone or the bot cannot see it"),
    ({"is_archived": True}, "Unarchive <#C0DAILY>"),
])
async def test_daily_set_checks_the_channel_before_saying_yes(slack, fake, db, fields, says):
    fake.channels["C0DAILY"] = fields
    shown = texts(await slack.user("U0ADMIN", "ada").command(SET))
    assert shown.startswith(":warning: I can't post in <#C0DAILY>") and says.replace("&lt;", "<").replace(
        "&gt;", ">") in shown.replace("&lt;", "<").replace("&gt;", ">")
    assert db.count("daily_channels") == 0
    assert fake.calls_for("conversations.info")[0].args["channel"] == "C0DAILY"


async def test_a_lost_permission_is_tried_once_a_day_then_paused_with_a_notice(slack, fake, db, clock, scheduler,
                                                                                caplog):
    ada = slack.user("U0ADMIN", "ada")
    await ada.command(SET)
    fake.fail("chat.postMessage", "not_in_channel", times=10)  # the bot was removed from the channel
    caplog.set_level(logging.INFO)
    await scheduler.tick()
    for _ in range(5):
        clock.advance(61)
        await scheduler.tick()  # no re-claim every lease: one attempt for today's post
    assert len(fake.calls_for("chat.postMessage")) == 1
    assert db.rows("SELECT status, last_error FROM outbox") == [("failed", "not_in_channel")]
    assert db.rows("SELECT status FROM daily_posts") == [("missed",)]
    status = texts(await ada.command("admin status"))
    assert "<#C0DAILY> at 09:00 Europe/Berlin: :warning: failing since" in status
    assert "Invite the bot to &lt;#C0DAILY&gt;: type /invite @mldebt there." in status
    for day in range(1, 4):  # the next posts are tried once each, at their time
        clock.advance(hours=24)
        await scheduler.tick()
        assert len(fake.calls_for("chat.postMessage")) == day + 1
    assert db.rows("SELECT state, reason FROM outbox_targets") == [("paused", "not_in_channel")]
    clock.advance(hours=24)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 4  # paused: not tried again
    assert "*paused* since" in texts(await ada.command("admin status"))
    assert caplog.text.count("delivery problem on slack T0TEST C0DAILY: ok -> failing") == 1
    assert caplog.text.count("failing -> paused") == 1
    assert "Traceback" not in caplog.text
    # the admin invites the bot back and sets the schedule again: today's post only, no backlog
    fake._plans.clear()
    await ada.command(SET)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 5
    assert db.rows("SELECT COUNT(*) FROM daily_posts WHERE status = 'posted'") == [(1,)]
    assert db.rows("SELECT * FROM outbox_targets") == []


async def test_a_deleted_channel_pauses_its_schedule_at_once(slack, fake, db, clock, scheduler):
    ada = slack.user("U0ADMIN", "ada")
    await ada.command(SET)
    fake.fail("chat.postMessage", "channel_not_found")
    await scheduler.tick()
    assert db.rows("SELECT target, state FROM outbox_targets") == [("C0DAILY", "paused")]
    clock.advance(hours=24)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 1 and db.count("daily_posts") == 1
    assert "*paused* since" in texts(await ada.command("admin status"))


async def test_an_uninstalled_app_pauses_the_workspace(slack, fake, db, clock, scheduler):
    ada = slack.user("U0ADMIN", "ada")
    await ada.command(SET)
    fake.fail("chat.postMessage", "account_inactive")
    await scheduler.tick()
    assert db.rows("SELECT target, state, reason FROM outbox_targets") == [("", "paused", "account_inactive")]
    clock.advance(hours=24)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 1
    shown = texts(await ada.command("admin status"))
    assert ":warning: *The whole workspace:* *paused* since" in shown and "Reinstall the app" in shown


# -- HTML, empty and hanging answers ----------------------------------------------------------------

async def test_an_html_502_on_the_celebration_does_not_lose_it(slack, fake, db, clock, scheduler):
    alice = slack.user()
    msg = await alice.command("challenge")
    for _ in range(4):
        await alice.answer(msg)
    fake.passes(RESPONSE_URL)  # the private result goes through ...
    fake.fail_http(RESPONSE_URL, 502)  # ... the celebration's in_channel post gets an HTML error page,
    fake.fail_http("chat.postMessage", 502)  # and so does its fallback
    await alice.answer(msg)
    assert "5/5 correct" in texts(msg)
    rows = db.rows("SELECT kind, status, last_error FROM outbox ORDER BY kind")
    assert ("celebration", "pending", "http_502") in rows
    clock.advance(60)
    await scheduler.tick()
    assert db.rows("SELECT status FROM outbox WHERE kind = 'celebration'") == [("sent",)]
    posts = [p for p in fake.channel_posts if p["text"].startswith(":tada:")]
    posts += [c for c in fake.calls_for("chat.postMessage", ok_only=True)]
    assert len(posts) == 1  # exactly one celebration


async def test_a_hanging_response_url_falls_back_within_its_short_timeout(slack, fake, monkeypatch):
    monkeypatch.setattr(slack_web, "RESPONSE_URL_TIMEOUT", 0.2)
    alice = slack.user()
    msg = await alice.command("challenge")
    fake.hang(RESPONSE_URL, times=2)  # replacing, then posting anew: both hang
    started = time.monotonic()
    await alice.answer(msg)
    assert time.monotonic() - started < 2.5  # two short timeouts (and one connection retry each), not minutes
    [ephemeral] = fake.calls_for("chat.postEphemeral")
    assert ephemeral.args["user"] == "U0ALICE" and "Correct" in ephemeral.args["text"]


@pytest.mark.parametrize(("status", "body", "ctype", "reason"), [
    (502, "<html><body>Bad Gateway</body></html>", "text/html", "http_502"),
    (503, "", "text/plain", "http_503"),
    (500, "upstream failed", "text/plain", "http_500"),
    (504, "", "application/json", "http_504"),
])
async def test_non_json_bodies_are_transient_not_attribute_errors(client, fake, status, body, ctype, reason):
    fake.fail_http("chat.postMessage", status, body=body, content_type=ctype)
    with pytest.raises(Exception) as caught:
        await client.chat_postMessage(channel="C1", text="hi")
    err = classify(caught.value)
    assert isinstance(err, Transient) and err.reason == reason


def test_every_permanent_code_has_a_scope_and_a_fix_for_admins():
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_slack_response import AsyncSlackResponse

    def error(code: str, **extra) -> SlackApiError:
        resp = AsyncSlackResponse(client=None, http_verb="POST", api_url="u", req_args={},
                                  data={"ok": False, "error": code, **extra}, headers={}, status_code=200)
        return SlackApiError("x", resp)

    tenant = classify(error("token_revoked"))
    assert isinstance(tenant, Permanent) and tenant.scope == "tenant" and "Reinstall" in tenant.fix
    scope = classify(error("missing_scope", needed="usergroups:write"), channel="C1")
    assert scope.scope == "target" and "usergroups:write" in scope.fix
    gone = classify(error("channel_not_found"), channel="C1")
    assert gone.gone and "<#C1>" in gone.fix
    assert classify(error("internal_error")).__class__ is Transient
    assert classify(error("msg_too_long")).scope == "entry"
    assert classify(TimeoutError()).reason == "timeout"
    assert classify(aiohttp.ClientConnectionError()).reason == "connection_error"


# -- inbound bodies the app never expected --------------------------------------------------------------

@pytest.fixture
async def http_slack(slack, app):
    runner, port = await serve_http(build_web_app(app), "127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        slack.http, slack.events_url = http, f"http://127.0.0.1:{port}/slack/events"
        yield slack
    await runner.cleanup()


@pytest.mark.parametrize("body", [b"{", b"payload=%7Bnot-json", b"[]", b"[" * 5000, b"\xff\xfe\x00bad",
                                  b'{"type": "event_callback"}'])
async def test_unsigned_garbage_gets_401_and_one_log_line(http_slack, db, fake, body, caplog):
    async with http_slack.http.post(http_slack.events_url, data=body,
                                    headers={"Content-Type": "application/json"}) as r:
        assert r.status == 401
    assert db.counts()["players"] == 0 and fake.calls == []
    assert caplog.text.count("refused an unsigned") == 1 and "Traceback" not in caplog.text


@pytest.mark.parametrize("body", ["{", "payload=%7Bnot-json", "[]", "[" * 5000])
async def test_signed_garbage_gets_400_never_500(http_slack, db, body, caplog):
    req = signed(body, "application/json")
    async with http_slack.http.post(http_slack.events_url, data=req.body.encode(), headers=req.headers) as r:
        assert r.status == 400
    assert db.counts()["players"] == 0 and "Traceback" not in caplog.text


@pytest.mark.parametrize("change", [
    lambda p: p.update(actions=[]),
    lambda p: p["actions"][0].update(action_id=42),
    lambda p: p.pop("user"),
    lambda p: p.update(user="U0ALICE"),
])
async def test_signed_payloads_of_odd_shapes_are_acknowledged_and_ignored(http_slack, fake, db, change, caplog):
    payload = block_actions_payload(action_id="mldebt:a:0123456789abcdef:alpha-04:A", value="x",
                                    response_url=fake.new_response_url(), team_id=TEAM)
    change(payload)
    req = signed(interactivity_body(payload))
    async with http_slack.http.post(http_slack.events_url, data=req.body.encode(), headers=req.headers) as r:
        assert (r.status, await r.text()) == (200, "")
    await http_slack.tracker.idle()
    assert db.counts()["players"] == 0 and fake.calls_for(RESPONSE_URL) == []
    assert "ignored a signed Slack request" in caplog.text and "Traceback" not in caplog.text


# -- retries, tenancy, lifecycle ------------------------------------------------------------------------

async def test_a_slash_command_delivered_twice_runs_once(slack, db, fake):
    alice = slack.user()
    await alice.command("challenge")
    req, _ = alice.command_request("skip", trigger_id="99.1.same")
    await slack.send(req)
    await slack.send(req.with_headers(X_Slack_Retry_Num="1", X_Slack_Retry_Reason="http_timeout"))
    replay, _ = alice.command_request("skip", trigger_id="99.1.same")  # a replay inside the 5-minute window
    await slack.send(replay)
    assert db.rows("SELECT status FROM session_items ORDER BY position")[:3] == [("skipped",), ("open",),
                                                                                ("pending",)]
    assert db.rows("SELECT key FROM inbound_seen WHERE key LIKE 'trigger:99%'") == [("trigger:99.1.same",)]


async def test_a_request_for_another_workspace_is_refused_with_nothing_written(slack, fake, db):
    await slack.user().command("help")  # the app learns its workspace (auth.test)
    before = db.counts()
    for text in ("challenge", "admin celebrate off"):
        req = signed_slash_command(SECRET, text=text, user_id="U0FOREIGN", team_id="T0OTHER",
                                   response_url=fake.new_response_url())
        resp = await slack.send(req)
        assert resp.status == 403
    assert db.counts() == before
    assert fake.calls_for("users.info") == []  # never asks this workspace's API about a foreign user


async def test_uninstall_pauses_and_the_next_valid_request_resumes(slack, fake, db, clock, scheduler, engine):
    ada = slack.user("U0ADMIN", "ada")
    await ada.command(SET)
    resp = await slack.send(signed_event(SECRET, {"type": "app_uninstalled"}, team_id=TEAM))
    assert resp.status == 200
    assert db.rows("SELECT target, state, reason FROM outbox_targets") == [("", "paused", "app_uninstalled")]
    await scheduler.tick()
    assert fake.calls_for("chat.postMessage") == [] and db.count("daily_posts") == 0
    # a user token revoked is not the bot's: nothing more to pause
    await slack.send(signed_event(SECRET, {"type": "tokens_revoked", "tokens": {"oauth": ["U1"]}}, team_id=TEAM))
    # reinstalled (a new process): the first valid request resumes the workspace
    slack.app.quiz._maybe_paused = True
    await slack.user().command("help")
    assert db.rows("SELECT * FROM outbox_targets") == []
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 1


async def test_tokens_revoked_for_the_bot_pauses_the_workspace(slack, db):
    await slack.send(signed_event(SECRET, {"type": "tokens_revoked", "tokens": {"bot": ["U0BOT"]}}, team_id=TEAM))
    assert db.rows("SELECT target, state, reason FROM outbox_targets") == [("", "paused", "tokens_revoked")]


async def test_an_event_of_an_odd_shape_is_acknowledged_and_ignored(http_slack, fake, caplog):
    event = app_home_opened_event(user="U0ALICE")
    event["user"] = 7  # bolt itself fails reading it
    resp = await http_slack.send(signed_event(SECRET, event, team_id=TEAM))
    assert resp.status == 200 and fake.calls_for("views.publish") == []
    assert "ignored a signed Slack request of an unexpected shape (TypeError)" in caplog.text
