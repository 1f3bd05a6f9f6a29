"""`mldebt run` with DISCORD_TOKEN set: the bot on the shared engine, time-outs from the scheduler."""

from __future__ import annotations

import logging

import discord

from bot.cli import Core

from .client import build_bot
from .roles import PLATFORM

log = logging.getLogger(__name__)


class DiscordStartError(RuntimeError):
    """Discord refused to start the bot; the message says which setting to fix."""


async def run_discord(core: Core) -> None:
    bot = build_bot(core.settings, core.engine)
    core.scheduler.register(PLATFORM, bot.deliver)
    core.scheduler.register_daily(PLATFORM, bot.daily)
    assert core.settings.discord_token is not None
    try:
        async with bot:
            await bot.start(core.settings.discord_token)
    except discord.LoginFailure as exc:
        raise DiscordStartError("Discord rejected DISCORD_TOKEN: copy a fresh token from the Developer Portal "
                                "(your application > Bot > Reset Token)") from exc
