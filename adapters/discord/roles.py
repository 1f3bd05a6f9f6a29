"""The Mastery role: the Discord side of a badge, granted after the engine stored it as pending.

The badge itself is recorded by the engine (with a pending grant, in the same transaction). Here the
bot tries the role: find it by name (create it, without permissions, if missing), then add it to
the member. Whatever Discord answers is written back with `engine.record_grant`: done, or still
pending with a reason that tells an admin what to fix. Pending grants are retried when the bot is
ready (start, and a reconnect with a new session) and on `/mldebt-admin retry-roles`. Never raises for a
platform error: a refused grant is recorded, never lost and never a crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import discord

from bot.engine import QuizEngine
from bot.platform_errors import PlatformError
from bot.replies import BADGE_MASTERY, Player

from .errors import Attempt, call, describe

log = logging.getLogger(__name__)

PLATFORM = "discord"


@dataclass(frozen=True)
class GrantResult:
    ok: bool
    role: discord.Role | None
    reason: str | None = None


class RoleGranter:
    """Grants badge roles in a guild; one lock per guild so two badges never create two roles."""

    def __init__(self, engine: QuizEngine, role_name: str) -> None:
        self.engine = engine
        self.role_name = role_name
        self._locks: dict[int, asyncio.Lock] = {}

    def role_for(self, badge: str) -> str | None:
        return self.role_name if badge == BADGE_MASTERY else None

    async def grant(self, guild: discord.Guild, player: Player, badge: str,
                    member: discord.Member | None = None) -> GrantResult:
        """Try the role for `badge` and record the outcome in the engine."""
        result = await self._try(guild, int(player.user), badge, member)
        if not result.ok:
            log.warning("badge role for %s in guild %s still pending: %s", player.user, guild.id, result.reason)
        await self.engine.record_grant(player, badge, ok=result.ok, reason=result.reason)
        return result

    async def _try(self, guild: discord.Guild, user_id: int, badge: str,
                   member: discord.Member | None) -> GrantResult:
        name = self.role_for(badge)
        if name is None:
            return GrantResult(True, None)  # a badge without a Discord role: nothing to grant
        role = discord.utils.get(guild.roles, name=name)
        try:
            async with self._locks.setdefault(guild.id, asyncio.Lock()):
                role = discord.utils.get(guild.roles, name=name)
                if role is None:
                    role = await call(guild.create_role(name=name, permissions=discord.Permissions.none(),
                                                        mentionable=False,
                                                        reason=f"mldebt: the role for the {badge} badge"),
                                      Attempt(f"create the role \"{name}\"", role_name=name, guild=guild))
            attempt = Attempt(f"grant the role \"{name}\"", role_name=name, guild=guild, role=role)
            if member is None:
                member = await call(guild.fetch_member(user_id), attempt)
            if any(r.id == role.id for r in member.roles):
                return GrantResult(True, role)
            await call(member.add_roles(role, reason=f"mldebt: earned the {badge} badge"), attempt)
            return GrantResult(True, role)
        except PlatformError as exc:
            return GrantResult(False, role, describe(exc))

    async def retry(self, guild: discord.Guild) -> tuple[int, int]:
        """Retry every pending grant of this guild. Returns (granted, still pending)."""
        granted = pending = 0
        for grant in await self.engine.pending_grants(PLATFORM, str(guild.id)):
            result = await self.grant(guild, grant.player, grant.badge)
            granted += int(result.ok)
            pending += int(not result.ok)
        if granted or pending:
            log.info("retried badge roles in guild %s: %d granted, %d still pending", guild.id, granted, pending)
        return granted, pending
