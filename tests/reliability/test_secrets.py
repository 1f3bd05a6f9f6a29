"""Secrets: with canary values in every token variable, no log line and no output ever shows one.

Every token variable gets a canary of a valid shape (bot/config.py checks shapes), read through the
real Settings. Then each adapter runs its flows with DEBUG logging captured: the terminal as the real
`mldebt play challenge` subprocess; Slack through the real bolt app (async_dispatch, the real HTTP
server and a Socket Mode session) against the loopback fake Slack, errors and a 429 included; Discord
under SimCord, a role refusal and a failing click included. Everything is searched: logs with
tracebacks, stdout/stderr, what the platforms were sent and answered, the database.

The canaries do travel where they must (the Authorization header to the fake Slack); that header is
the one thing not searched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import discord
import pytest
import simcord
from slack_sdk.http_retry import builtin_async_handlers

import tests.adapters.slack.workspace as slack_workspace
from adapters.discord.client import build_bot
from adapters.slack.app import build_app
from adapters.slack.runner import slack_running
from adapters.slack.web import make_client
from bot.cli import Core
from bot.config import Settings, SettingsError
from bot.scheduler import Scheduler
from tests.adapters.console.test_console_cli import PROMPT, correct_letter
from tests.adapters.console.test_console_cli import start as start_terminal
from tests.adapters.discord.helpers import custom_id, play, right
from tests.adapters.slack.fake_slack import RESPONSE_URL, FakeSlack
from tests.adapters.slack.slack_requests import app_home_opened_event, signed_event, slash_command_body
from tests.adapters.slack.tracker import BackgroundTracker
from tests.adapters.slack.workspace import TEAM, USERGROUP, Workspace, letter
from tests.fakes.bank import write_bank

CANARIES = {
    "SLACK_BOT_TOKEN": "xoxb-5150-canarybot-Q7ZK2M9X4W",
    "SLACK_APP_TOKEN": "xapp-1-canaryapp-R8YJ3N6V1T",
    "SLACK_SIGNING_SECRET": "canarysigningP4LH7C2D9F6B",
    "DISCORD_TOKEN": "MTE4canaryDiscordUserPart9G3K.Gx7Qp1.canaryDiscordSecretPart5M8W2Z4",
}
# the whole values and the parts that would survive a token cut short or split at its dots
FRAGMENTS = {name: [value, *(p for p in value.replace(".", "-").split("-") if len(p) >= 10)]
             for name, value in CANARIES.items()}
LOGGERS = ("", "slack_bolt", "slack_sdk", "discord", "aiohttp", "asyncio", "adapters", "bot", "simcord", "mldebt")


def assert_no_canary(text: str, where: str) -> None:
    lowered = text.lower()
    for name, fragments in FRAGMENTS.items():
        for fragment in fragments:
            at = lowered.find(fragment.lower())
            assert at < 0, f"{name} shows in {where}: ...{text[max(0, at - 120):at + 60]!r}..."
    assert "canary" not in lowered, f"a canary fragment shows in {where}"


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every log record of every library at DEBUG, formatted with tracebacks, as an operator would see it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def canary_settings(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_mapping({**CANARIES, "MLDEBT_DATABASE": str(tmp_path / "quiz.sqlite3"), **extra})


def database_text(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


# -- settings -------------------------------------------------------------------------------------


def test_settings_hold_the_tokens_and_never_show_them(tmp_path):
    settings = canary_settings(tmp_path)
    assert (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret,
            settings.discord_token) == tuple(CANARIES.values())
    for shown in (repr(settings), str(settings), f"{settings!r}", repr([settings]), repr({"s": settings})):
        assert_no_canary(shown, "the Settings repr")


@pytest.mark.parametrize("name", list(CANARIES))
def test_a_malformed_token_is_named_never_echoed(tmp_path, name):
    with pytest.raises(SettingsError) as err:
        canary_settings(tmp_path, **{name: CANARIES[name] + "!?"})
    assert err.value.name == name
    assert_no_canary(str(err.value), f"the error for a malformed {name}")


# -- the terminal ---------------------------------------------------------------------------------


async def test_the_terminal_never_prints_a_token(tmp_path):
    root = write_bank(tmp_path / "bank")
    from bot.bank import load_bank

    bank = load_bank(root)
    term = await start_terminal(tmp_path, "play", "challenge", **CANARIES, MLDEBT_LOG_LEVEL="DEBUG",
                                MLDEBT_QUESTION_BANK=str(root), MLDEBT_TIME_LIMIT_SCALE="0.25")
    try:
        block = await term.until(PROMPT)
        qid, answer = correct_letter(bank, block)
        await term.type(next(x for x in "ABCD" if x != answer))  # wrong first
        await term.until(PROMPT)
        await term.type("h")
        block = await term.until(PROMPT)
        await term.type(answer)
        block = await term.until(PROMPT)
        await term.type("s")  # skip one
        block = await term.until(PROMPT)
        for n in range(3):
            _, answer = correct_letter(bank, block)
            await term.type(answer)
            if n < 2:
                block = await term.until(PROMPT)
        assert await asyncio.wait_for(term.proc.wait(), 20) == 0
        output = term.seen + (await term.proc.stdout.read()).decode()
    finally:
        if term.proc.returncode is None:
            term.proc.kill()
            await term.proc.wait()
    assert "DEBUG asyncio: Using selector" in output  # DEBUG logging was on, into the same output
    assert "Mastery challenge finished" in output
    assert_no_canary(output, "the terminal's stdout/stderr")
    assert_no_canary(database_text(tmp_path / "console.sqlite3"), "the terminal's database")


async def test_a_malformed_token_stops_the_terminal_without_showing_it(tmp_path):
    bad = {**CANARIES, "SLACK_BOT_TOKEN": "xoxb-9999!" + CANARIES["SLACK_BOT_TOKEN"]}
    term = await start_terminal(tmp_path, "play", "challenge", **bad, MLDEBT_LOG_LEVEL="DEBUG")
    out, _ = await asyncio.wait_for(term.proc.communicate(), 20)
    assert term.proc.returncode == 2
    assert out.decode().strip() == "mldebt: invalid setting SLACK_BOT_TOKEN: must look like xoxb-..."


# -- Slack ----------------------------------------------------------------------------------------


def recorded_outputs(fake: FakeSlack) -> str:
    """Everything the fake Slack was sent and answered, minus the Authorization header."""
    parts = []
    for call in fake.calls:
        headers = {k: v for k, v in call.headers.items() if k.lower() != "authorization"}
        parts.append(repr((call.method, call.path, headers, call.query, call.form, call.json, call.raw_body,
                           call.status, call.response)))
    parts.append(repr((fake.messages, fake.ephemerals, fake.ephemeral_messages, fake.channel_posts,
                       fake.home_views, fake.socket_received)))
    return "\n".join(parts)


async def test_slack_flows_never_log_or_send_a_token(tmp_path, bank, store, engine, clock, debug_logs, monkeypatch):
    settings = canary_settings(tmp_path, SLACK_BADGE_USERGROUP_ID=USERGROUP, MLDEBT_HTTP_HOST="127.0.0.1")
    monkeypatch.setattr(slack_workspace, "SECRET", CANARIES["SLACK_SIGNING_SECRET"])  # how Slack signs for us
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:  # slack_sdk's Retry-After wait, recorded instead
        sleeps.append(seconds)

    monkeypatch.setattr(builtin_async_handlers, "asyncio", SimpleNamespace(sleep=no_sleep))
    responses: list[str] = []
    async with FakeSlack(team_id=TEAM, usergroups={USERGROUP: ["U0BOB"]},
                         scopes="commands,chat:write,users:read,usergroups:read,usergroups:write") as fake:
        fake.users = {"U0ADMIN": {"name": "ada", "is_admin": True}, "U0ALICE": {"name": "alice"}}
        client = make_client(settings.slack_bot_token, base_url=fake.base_url)
        scheduler = Scheduler(engine, clock)
        app = build_app(settings, engine, scheduler=scheduler, client=client)
        slack = Workspace(fake, app, BackgroundTracker(app), bank)
        alice, bob, ada = slack.user(), slack.user("U0BOB", "bob"), slack.user("U0ADMIN", "ada", "C0DAILY")

        # alice: a wrong answer, the hint, then all right: the badge, the user group (after a 429), the celebration
        fake.rate_limit("usergroups.users.list", times=1, retry_after=2)
        msg = await alice.command("challenge")
        responses.append(repr((await alice.click(msg, letter(bank, msg, correct=False))).body))
        await alice.click(msg, "Hint")
        for _ in range(5):
            await alice.answer(msg)
        assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"] and sleeps
        # bob: a skip, a failing reply link (falls back to chat.postEphemeral), a crash in the engine
        msg = await bob.command("practice")
        fake.fail(RESPONSE_URL, "expired_url", times=2)
        await bob.click(msg, "Skip")
        for text in ("stats", "leaderboard", "team create Night Owls", "help", "frobnicate", "quit"):
            await bob.command(text)
        with monkeypatch.context() as m:
            m.setattr(engine, "stats", _boom)
            await bob.command("stats")
        # an admin's daily question: posted, answered, revealed; admin status; a failing users.info
        await ada.command("daily set <#C0DAILY|daily> 09:00 Europe/Berlin")
        await ada.command("daily now")
        await scheduler.tick()
        [(channel, ts)] = list(fake.messages)
        await ada.click_public(channel, ts, "A")
        await ada.command("admin status")
        fake.fail("users.info", "ratelimited")
        await ada.command("admin celebrate off")
        clock.advance(hours=25)
        await scheduler.tick()
        # App Home, and a request signed with another secret
        home = signed_event(CANARIES["SLACK_SIGNING_SECRET"], app_home_opened_event(), team_id=TEAM)
        responses.append(repr(await slack.send(home)))
        forged, _ = alice.command_request("stats")
        forged.headers["X-Slack-Signature"] = "v0=" + "0" * 64
        responses.append(repr(await slack.send(forged)))

        # the real HTTP server, then a Socket Mode session with the app token
        core = Core(dataclasses.replace(settings, slack_app_token=None, http_port=0), bank, store, engine, scheduler,
                    clock)
        async with slack_running(core, client=client) as rt:
            ws = Workspace(fake, rt.app, BackgroundTracker(rt.app), bank)
            async with aiohttp.ClientSession() as http:
                ws.http, ws.events_url = http, f"http://127.0.0.1:{rt.port}/slack/events"
                await ws.user("U0CAROL", "carol").command("challenge")
                async with http.get(f"http://127.0.0.1:{rt.port}/healthz") as r:
                    responses.append(await r.text())
        core.settings = settings
        async with slack_running(core, client=client) as rt:
            tracker = BackgroundTracker(rt.app)
            await fake.wait_for_socket_session()
            payload = dict(parse_qsl(slash_command_body(text="stats", response_url=fake.new_response_url(),
                                                        team_id=TEAM, user_id="U0DAVE")))
            env = await fake.send_envelope("slash_commands", payload, accepts_response_payload=True)
            await fake.wait_for_socket_ack(env)
            await tracker.idle()
        assert fake.calls_for("apps.connections.open")[0].token == CANARIES["SLACK_APP_TOKEN"]
        assert all(c.token == CANARIES["SLACK_BOT_TOKEN"] for c in fake.calls_for("chat.postMessage"))
        outputs = recorded_outputs(fake)

    logs = debug_logs.getvalue()
    # the flows really ran, and were logged at DEBUG (each Web API call) with their failures
    for expected in ("DEBUG slack_sdk", "usergroups.users.update", "response_url post (replace_original=True) failed",
                     "RuntimeError: the engine failed", "users.info for U0ADMIN failed", "chat.update",
                     "views.publish", "Slack: HTTP mode on 127.0.0.1", "Slack: connected in Socket Mode"):
        assert expected in logs, expected
    assert_no_canary(logs, "the DEBUG logs of the Slack flows")
    assert_no_canary(outputs, "what the fake Slack was sent and answered")
    assert_no_canary("\n".join(responses), "the app's HTTP answers")
    assert_no_canary(database_text(tmp_path / "quiz.sqlite3"), "the database")


async def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("the engine failed")


# -- Discord --------------------------------------------------------------------------------------


async def test_discord_flows_never_log_or_show_a_token(tmp_path, bank, engine, clock, debug_logs, monkeypatch):
    settings = canary_settings(tmp_path)
    scheduler = Scheduler(engine, clock)
    seen: list[str] = []
    async with simcord.run(build_bot(settings, engine), check_errors=False) as env:
        env.bot.http.token = settings.discord_token  # where `bot.start(token)` keeps it in production
        env.bot.attach(scheduler)
        guild = env.create_guild("ML Guild")
        channel = guild.create_text_channel("quiz")
        alice = guild.add_member(env.create_user("alice", global_name="Alice"))
        bob = guild.add_member(env.create_user("bob", global_name="Bob"))
        mod = guild.add_member(env.create_user("mod"), roles=[guild.create_role(
            "Mods", permissions=discord.Permissions(manage_guild=True))])
        # the bot may not manage roles: the Mastery role is refused, recorded as pending, logged
        perms = discord.Permissions.all()
        perms.administrator = perms.manage_roles = False
        env.backend.edit_role(guild.id, guild.roles["TestBot"].id, {"permissions": perms.value})
        world = SimpleNamespace(channel=channel, bank=bank)
        started, last = await play(world, alice)
        await scheduler.outbox.run_once()  # the badge's role grant (refused, logged) and celebration
        results = [started, last]
        practice = await bob.slash(channel, "mldebt practice")
        results.append(await bob.click(practice.response, label="Hint"))
        results.append(await bob.click(practice.response, label="Skip"))
        for command in ("mldebt stats", "mldebt leaderboard", "mldebt help", "mldebt resume"):
            results.append(await bob.slash(channel, command))
        results.append(await mod.slash(channel, "mldebt-admin status"))
        results.append(await mod.slash(channel, "mldebt-admin daily set", channel=channel, time="09:00",
                                       timezone="Europe/Berlin"))
        results.append(await mod.slash(channel, "mldebt-admin daily now"))
        await scheduler.daily_tick()
        post = channel.last_message
        results.append(await alice.click(post, label="A"))
        # a click the engine cannot handle: logged with its traceback, the member gets an apology
        challenge = await bob.slash(channel, "mldebt challenge")
        with monkeypatch.context() as m:
            m.setattr(engine, "answer", _boom)
            results.append(await bob.click(challenge.response, custom_id=custom_id(challenge.response,
                                                                                    right(bank, challenge.response))))
        clock.advance(hours=25)
        await scheduler.daily_tick()
        await env.settle()
        for result in results:
            for message in [result.response, *result.followups]:
                if message is not None:
                    seen.append(repr((message.content, [e.to_dict() for e in message.embeds], message.components)))
        for member in (alice, bob, mod, None):
            seen += [repr((m.content, [e.to_dict() for e in m.embeds])) for m in channel.history(viewer=member)]
        seen.append(repr([(r.method, r.path, r.params, r.json, r.reason) for r in env.http_requests]))
        seen.append(env.transcript())
        seen.append(repr([repr(e) for e in env.errors]))

    logs = debug_logs.getvalue()
    for expected in ("DEBUG discord", "click mldebt:a:", "RuntimeError: the engine failed", "Manage Roles"):
        assert expected in logs + "\n".join(seen), expected
    assert_no_canary(logs, "the DEBUG logs of the Discord flows")
    assert_no_canary("\n".join(seen), "what the Discord bot sent and showed")
    assert_no_canary(database_text(tmp_path / "quiz.sqlite3"), "the database")
