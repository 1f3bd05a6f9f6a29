"""The Mastery role: the Discord side of a badge, delivered by the outbox like every other side effect.

The engine writes each new badge's grant to the outbox in the same transaction that awards it; the
outbox worker calls `send`, which finds the role by name (creates it, without permissions, if
missing) and adds it to the member. Discord's answer is raised classified (errors.py): a missing
Manage Roles or a role above the bot is Permanent with the fix (shown by admin status, retried on
`/mldebt-admin retry-roles`), a member who left is Permanent for that entry alone, 5xx, 429 and
time-outs are Transient and retried with backoff. Nothing is queued in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord

from bot.outbox import OutboxEntry
from bot.platform_errors import Transient
from bot.replies import BADGE_MASTERY

from .errors import Attempt, call

log = logging.getLogger(__name__)

PLATFORM = "discord"


class RoleGranter:
    """Grants badge roles; one lock per guild so two badges never create two roles."""

    def __init__(self, get_guild: Callable[[int], discord.Guild | None], role_name: str) -> None:
        self.get_guild = get_guild
        self.role_name = role_name
        self._locks: dict[int, asyncio.Lock] = {}

    def role_for(self, badge: str) -> str | None:
        return self.role_name if badge == BADGE_MASTERY else None

    def guild(self, tenant: str) -> discord.Guild | None:
        return self.get_guild(int(tenant)) if tenant.isdigit() else None

    async def send(self, entry: OutboxEntry) -> str | None:
        """The outbox's grant sender: add the entry's badge role to its player. Raises PlatformError only."""
        badge, user = entry.data["badge"], entry.data["user"]
        name = self.role_for(badge)
        if name is None:
            return None  # a badge without a Discord role: nothing to grant
        guild = self.guild(entry.tenant)
        if guild is None:  # not in the cache yet (starting up) or left: retried; a removal pauses the tenant
            raise Transient("guild_unavailable", f"The server {entry.tenant} is not available to the bot yet.")
        async with self._locks.setdefault(guild.id, asyncio.Lock()):
            role = discord.utils.get(guild.roles, name=name)
            if role is None:
                role = await call(guild.create_role(name=name, permissions=discord.Permissions.none(),
                                                    mentionable=False, reason=f"mldebt: the role for the {badge} badge"),
                                  Attempt(f"create the role \"{name}\"", role_name=name, guild=guild))
        attempt = Attempt(f"grant the role \"{name}\"", role_name=name, guild=guild, role=role)
        member = await call(guild.fetch_member(int(user)), attempt)
        if not any(r.id == role.id for r in member.roles):
            await call(member.add_roles(role, reason=f"mldebt: earned the {badge} badge"), attempt)
            log.info("granted %s to %s in guild %s", name, user, guild.id)
        return str(role.id)
