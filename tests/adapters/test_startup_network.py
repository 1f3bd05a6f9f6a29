"""Start-up when the platform cannot be reached: one line per try, bounded retries, a clean exit.

The platforms are "unreachable" as a closed port on 127.0.0.1 (connection refused); the waits
between tries are recorded instead of slept.
"""

from __future__ import annotations

import gc
import logging
import socket
from pathlib import Path

import discord
import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from adapters.discord import runner as discord_runner
from adapters.slack.runner import SlackStartError, slack_running
from adapters.slack.web import make_client
from bot import cli
from bot.cli import StartupFailed, open_core
from bot.config import Settings
from tests.fakes.bank import write_bank

SLACK_BOT = "xoxb-1-2-test"
SLACK_APP = "xapp-1-A1-2-test"
DISCORD_TOKEN = "A" * 24 + "." + "B" * 6 + "." + "C" * 27


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Waits:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
async def core(tmp_path: Path):
    settings = Settings(database=tmp_path / "q.sqlite3", question_bank=(write_bank(tmp_path / "bank"),),
                        slack_bot_token=SLACK_BOT, slack_app_token=SLACK_APP, discord_token=DISCORD_TOKEN)
    c = await open_core(settings)
    yield c
    await c.close()


def mldebt_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mldebt"]


async def test_slack_unreachable_is_one_line_per_try_then_a_clean_stop(core, caplog):
    caplog.set_level(logging.INFO)
    port = closed_port()
    waits = Waits()
    # without slack_sdk's own retry of a refused connection (it waits a second each time)
    client = AsyncWebClient(token=SLACK_BOT, base_url=f"http://127.0.0.1:{port}/api/", retry_handlers=[])
    with pytest.raises(StartupFailed) as exc:
        async with slack_running(core, client=client, retry_delays=(1.0, 4.0), sleep=waits):
            raise AssertionError("connected to nothing")
    reason = f"cannot reach 127.0.0.1: Connect call failed ('127.0.0.1', {port})"
    assert str(exc.value) == (f"Slack: opening a Socket Mode connection failed 3 times ({reason}); giving up. "
                              "Check the network and start again.")
    assert waits.seconds == [1.0, 4.0]
    assert [r.getMessage() for r in mldebt_records(caplog)] == [
        f"Slack: opening a Socket Mode connection failed ({reason}); retrying in 1 s (attempt 2 of 3)",
        f"Slack: opening a Socket Mode connection failed ({reason}); retrying in 4 s (attempt 3 of 3)",
    ]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
    assert not [r for r in caplog.records if r.name.startswith("slack_sdk") and r.levelno < logging.WARNING]


async def test_slack_refusing_the_app_token_stops_at_once(core):
    async def connections_open(request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error": "invalid_auth"})

    app = web.Application()
    app.router.add_post("/api/apps.connections.open", connections_open)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    waits = Waits()
    try:
        with pytest.raises(SlackStartError) as exc:
            async with slack_running(core, client=make_client(SLACK_BOT, base_url=f"http://127.0.0.1:{port}/api/"),
                                     sleep=waits):
                raise AssertionError("connected with a refused token")
    finally:
        await server.cleanup()
    assert str(exc.value) == ("Slack refused SLACK_APP_TOKEN (invalid_auth): create an app-level token with "
                              "connections:write (Basic Information > App-Level Tokens)")
    assert waits.seconds == []


async def test_discord_unreachable_is_one_line_per_try_without_the_voice_warning(core, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    port = closed_port()
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as on a fresh process without PyNaCl
    waits = Waits()
    with pytest.raises(StartupFailed) as exc:
        await discord_runner.run_discord(core, retry_delays=(3.0,), sleep=waits)
    reason = f"cannot reach 127.0.0.1: Connect call failed ('127.0.0.1', {port})"
    assert str(exc.value) == f"Discord: logging in failed 2 times ({reason}); giving up. Check the network and start again."
    assert waits.seconds == [3.0]
    assert [r.getMessage() for r in mldebt_records(caplog)] == [
        f"Discord: logging in failed ({reason}); retrying in 3 s (attempt 2 of 2)"]
    assert not [r for r in caplog.records if r.exc_info or "PyNaCl" in r.getMessage()]


def test_a_start_up_failure_is_one_line_and_exit_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLDEBT_DATABASE", str(tmp_path / "q.sqlite3"))
    monkeypatch.setenv("MLDEBT_QUESTION_BANK", str(write_bank(tmp_path / "bank")))
    monkeypatch.setenv("MLDEBT_CACHE_DIR", "off")
    monkeypatch.setenv("DISCORD_TOKEN", DISCORD_TOKEN)

    async def servers(core, args):
        raise StartupFailed("Discord: logging in failed 6 times (cannot reach discord.com); giving up.")

    frontends = cli.Frontends(console=servers, servers=servers, extra={})
    try:
        assert cli.main(["--env-file", "/dev/null", "run"], frontends) == 1
    finally:
        gc.unfreeze()  # `run` froze the start-up heap before serving; the test session collects as before
    assert capsys.readouterr().err == ("mldebt: Discord: logging in failed 6 times (cannot reach discord.com); "
                                       "giving up.\n")


def test_serving_starts_with_the_start_up_heap_frozen_and_the_terminal_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("MLDEBT_DATABASE", str(tmp_path / "q.sqlite3"))
    monkeypatch.setenv("MLDEBT_QUESTION_BANK", str(write_bank(tmp_path / "bank")))
    monkeypatch.setenv("MLDEBT_CACHE_DIR", "off")
    frozen: dict[str, int] = {}

    def runner(name: str):
        async def run(core, args):
            frozen[name] = gc.get_freeze_count()
            gc.unfreeze()  # the rest of the test session collects as before
            return 0
        return run

    frontends = cli.Frontends(console=runner("console"), servers=runner("servers"), extra={})
    gc.unfreeze()
    assert cli.main(["--env-file", "/dev/null", "run"], frontends) == 0  # no platform configured: the terminal
    monkeypatch.setenv("DISCORD_TOKEN", DISCORD_TOKEN)
    assert cli.main(["--env-file", "/dev/null", "run"], frontends) == 0
    assert frozen["console"] == 0 and frozen["servers"] > 10_000  # the bank alone is thousands of objects


def test_a_missing_env_file_is_an_error(tmp_path, capsys):
    assert cli.main(["--env-file", str(tmp_path / "nope.env"), "bank", "check"]) == 2
    assert capsys.readouterr().err == f"mldebt: --env-file {tmp_path / 'nope.env'}: no such file\n"
