"""`mldebt discord invite-url`, `mldebt discord sync` and the runner, without a network."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord
import pytest

from adapters.discord import runner
from adapters.discord.client import MlDebtBot
from adapters.discord.commands_cli import bot_permissions, invite_url
from adapters.main import main
from bot.cli import open_core
from bot.config import Settings
from tests.fakes.bank import write_bank

APP_ID = "123456789012345678"
TOKEN = "A" * 24 + "." + "B" * 6 + "." + "C" * 27


@pytest.fixture
def env(monkeypatch, tmp_path: Path):
    for name in ("DISCORD_TOKEN", "DISCORD_APPLICATION_ID", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                 "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLDEBT_DATABASE", str(tmp_path / "quiz.sqlite3"))
    monkeypatch.setenv("MLDEBT_QUESTION_BANK", str(write_bank(tmp_path / "bank")))
    return monkeypatch


def test_the_invite_url_asks_for_both_scopes_and_exactly_the_permissions_used(env, capsys):
    env.setenv("DISCORD_APPLICATION_ID", APP_ID)
    assert main(["--env-file", "/nonexistent", "discord", "invite-url"]) == 0
    url = capsys.readouterr().out.strip()
    assert url == invite_url(APP_ID)
    query = parse_qs(urlparse(url).query)
    assert query["client_id"] == [APP_ID]
    assert query["scope"] == ["bot applications.commands"]
    perms = discord.Permissions(int(query["permissions"][0]))
    assert perms == bot_permissions()
    assert {name for name, on in perms if on} == {"manage_roles", "read_messages", "send_messages", "embed_links",
                                                  "read_message_history"}  # read_messages = View Channel


def test_the_invite_url_needs_the_application_id(env, capsys):
    assert main(["--env-file", "/nonexistent", "discord", "invite-url"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mldebt: DISCORD_APPLICATION_ID is not set: copy the Application ID from the Developer Portal "
                   "(your application > General Information) into .env")


def test_sync_needs_the_token(env, capsys):
    assert main(["--env-file", "/nonexistent", "discord", "sync"]) == 2
    assert capsys.readouterr().err.startswith("mldebt: DISCORD_TOKEN is not set")


async def test_the_runner_registers_the_bot_with_the_scheduler_and_explains_a_bad_token(tmp_path, monkeypatch):
    settings = Settings(database=tmp_path / "q.sqlite3", question_bank=(write_bank(tmp_path / "bank"),),
                        discord_token=TOKEN)
    core = await open_core(settings)
    started = []

    async def refuse(self, token, *, reconnect=True):
        started.append(token)
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(MlDebtBot, "start", refuse)
    try:
        with pytest.raises(runner.DiscordStartError, match="Discord rejected DISCORD_TOKEN"):
            await runner.run_discord(core)
        assert started == [TOKEN]
        assert {"timeout", "daily_post", "daily_reveal"} <= core.engine.outbox_kinds["discord"]
        assert "discord" in core.engine.grant_platforms
    finally:
        await core.close()
