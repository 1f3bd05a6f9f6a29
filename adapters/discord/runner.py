"""`mldebt run` with DISCORD_TOKEN set: the bot on the shared engine, its outbox entries delivered by the scheduler.

Logging in is the start-up step that needs the network. When Discord cannot be reached, each try is
one log line and a growing wait, then the command exits with one line (bot.cli.connect_with_retries);
once connected, discord.py reconnects by itself. A refused token is no network problem: it stops at once.
With DISCORD_SHARD_COUNT set, the bot connects its shards (DISCORD_SHARD_IDS, default all) and says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import discord

from bot.cli import STARTUP_RETRY_DELAYS, Core, StartupFailed, connect_with_retries

from .client import build_bot, describe_shards, syncs_commands

log = logging.getLogger(__name__)

# failures of the login request that a later try may not meet: no route, DNS, time-out, Discord 5xx
TRANSIENT = (aiohttp.ClientError, OSError, asyncio.TimeoutError, discord.GatewayNotFound, discord.DiscordServerError)


class DiscordStartError(StartupFailed):
    """Discord refused to start the bot; the message says which setting to fix."""


def quiet_voice_warnings() -> None:
    """The bot never joins voice, so discord.py's warnings about missing voice libraries (PyNaCl,
    davey) on every start are noise."""
    discord.VoiceClient.warn_nacl = False
    if hasattr(discord.VoiceClient, "warn_dave"):
        discord.VoiceClient.warn_dave = False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach {exc.host}: {exc.os_error.strerror or exc.os_error}"
    return str(exc) or type(exc).__name__


async def run_discord(core: Core, *, retry_delays: Sequence[float] = STARTUP_RETRY_DELAYS,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    quiet_voice_warnings()
    assert core.settings.discord_token is not None
    if core.settings.discord_shard_count is not None:
        log.info("Discord: running %s%s", describe_shards(core.settings),
                 "" if syncs_commands(core.settings) else "; the process running shard 0 syncs the commands")
    bot = build_bot(core.settings, core.engine)
    bot.attach(core.scheduler)

    async def log_in() -> None:
        nonlocal bot
        if bot.is_closed():  # a failed try closed its client: the next one gets a fresh one
            bot = build_bot(core.settings, core.engine)
            bot.attach(core.scheduler)
        try:
            await bot.login(core.settings.discord_token)
        except BaseException:
            await bot.close()
            raise

    try:
        await connect_with_retries("Discord: logging in", log_in, transient=TRANSIENT, describe=_describe,
                                   delays=retry_delays, sleep=sleep, quiet=("discord.client",))
    except discord.LoginFailure as exc:
        raise DiscordStartError("Discord rejected DISCORD_TOKEN: copy a fresh token from the Developer Portal "
                                "(your application > Bot > Reset Token)") from exc
    try:
        await bot.connect(reconnect=True)  # what bot.start() does after logging in
    finally:
        await bot.close()
