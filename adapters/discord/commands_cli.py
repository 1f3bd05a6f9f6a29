"""`mldebt discord sync` and `mldebt discord invite-url`."""

from __future__ import annotations

import sys

import discord

from bot.cli import Core

from .client import build_bot
from .sync import force_sync

SCOPES = ("bot", "applications.commands")


def bot_permissions() -> discord.Permissions:
    """Exactly what the bot uses.

    Manage Roles: create and grant the Mastery role. View Channel, Send Messages, Embed Links and
    Read Message History: the daily question (posted in a channel, edited for the reveal, and looked
    up after a crash mid-post). Replies to commands and clicks go through the interaction itself and
    need no channel permission.
    """
    return discord.Permissions(manage_roles=True, view_channel=True, send_messages=True, embed_links=True,
                               read_message_history=True)


def invite_url(application_id: str | int) -> str:
    return discord.utils.oauth_url(int(application_id), permissions=bot_permissions(), scopes=SCOPES)


def _fail(message: str) -> int:
    print(f"mldebt: {message}", file=sys.stderr)
    return 2


async def print_invite_url(core: Core) -> int:
    app_id = core.settings.discord_application_id
    if not app_id:
        return _fail("DISCORD_APPLICATION_ID is not set: copy the Application ID from the Developer Portal "
                     "(your application > General Information) into .env")
    print(invite_url(app_id))
    return 0


async def sync_commands(core: Core) -> int:
    token = core.settings.discord_token
    if not token:
        return _fail("DISCORD_TOKEN is not set: copy the bot token from the Developer Portal "
                     "(your application > Bot > Reset Token) into .env")
    bot = build_bot(core.settings, core.engine, sync_commands=False)
    try:
        async with bot:
            await bot.login(token)
            count = await force_sync(core.engine, bot, bot.tree)
    except discord.LoginFailure:
        return _fail("Discord rejected DISCORD_TOKEN: copy a fresh token from the Developer Portal "
                     "(your application > Bot > Reset Token)")
    print(f"Synced {count} commands (/mldebt, /mldebt-admin) for application {bot.application_id}. "
          "New commands can take a minute to appear; restart Discord if they do not.")
    return 0
