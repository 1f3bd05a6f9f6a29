"""Command sync without hammering Discord: push the tree only when its payload changed.

The hash of exactly what `tree.sync()` would PUT is stored in the database, per application (a
tenant setting of platform "discord", tenant "app:<application id>"). Starting the bot syncs only
when the hash differs; `mldebt discord sync` always syncs (e.g. after the commands were deleted in
the Developer Portal, or when pointing a copied database at a new application).
"""

from __future__ import annotations

import hashlib
import json
import logging

import discord
from discord import app_commands

from bot.engine import QuizEngine
from bot.platform_errors import PlatformError

from .errors import Attempt, call

log = logging.getLogger(__name__)

HASH_KEY = "command_tree_sha256"
SYNC_TIMEOUT = 30.0  # seconds: one PUT of the whole tree, rate-limited on Discord's side


def tree_hash(tree: app_commands.CommandTree) -> str:
    payload = [cmd.to_dict(tree) for cmd in tree.get_commands()]
    payload.sort(key=lambda c: (c.get("type", 1), c["name"]))
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _tenant(client: discord.Client) -> str:
    return f"app:{client.application_id}"


async def stored_hash(engine: QuizEngine, client: discord.Client) -> str | None:
    async with engine.store.transaction() as tx:
        return await tx.get_setting("discord", _tenant(client), HASH_KEY)


async def force_sync(engine: QuizEngine, client: discord.Client, tree: app_commands.CommandTree) -> int:
    """Push the commands now and remember what was pushed. Returns the number of top-level commands."""
    synced = await call(tree.sync(), Attempt("sync the app commands"), limit=SYNC_TIMEOUT)
    async with engine.store.transaction() as tx:
        await tx.set_setting("discord", _tenant(client), HASH_KEY, tree_hash(tree))
    log.info("synced %d Discord commands for application %s", len(synced), client.application_id)
    return len(synced)


async def sync_if_changed(engine: QuizEngine, client: discord.Client, tree: app_commands.CommandTree) -> bool:
    """Sync at start-up if the commands changed. A Discord failure is one warning, not a failed start:
    the commands synced last time keep working, and the next start (or `mldebt discord sync`) tries again."""
    if await stored_hash(engine, client) == tree_hash(tree):
        log.info("Discord commands unchanged; not syncing")
        return False
    try:
        await force_sync(engine, client, tree)
    except PlatformError as exc:
        log.warning("Discord commands not synced (%s: %s); run `mldebt discord sync` later", exc.reason, exc.detail)
        return False
    return True
