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
from bot.replies import BADGE_MASTERY, Player

log = logging.getLogger(__name__)

PLATFORM = "discord"
RETRY_HINT = "then run /mldebt-admin retry-roles"


@dataclass(frozen=True)
class GrantResult:
    ok: bool
    role: discord.Role | None
    reason: str | None = None


def _explain(guild: discord.Guild, role: discord.Role | None, role_name: str, exc: discord.HTTPException) -> str:
    """Why Discord refused, in words an admin can act on."""
    me = guild.me
    if isinstance(exc, discord.Forbidden):
        if me is not None and not me.guild_permissions.manage_roles:
            return (f"The bot lacks the Manage Roles permission. Fix: Server Settings > Roles > "
                    f"{me.top_role.name}: turn on Manage Roles, {RETRY_HINT}.")
        if me is not None and role is not None and role >= me.top_role:
            return (f"The role \"{role.name}\" is not below the bot's highest role \"{me.top_role.name}\". Fix: "
                    f"Server Settings > Roles: drag \"{me.top_role.name}\" above \"{role.name}\", {RETRY_HINT}.")
        return (f"Discord refused to grant \"{role_name}\" ({exc.status}, code {exc.code}: {exc.text}). "
                f"Check the bot's role and its permissions, {RETRY_HINT}.")
    return f"Discord error while granting \"{role_name}\" ({exc.status}: {exc.text}); it will be retried."


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
                    role = await guild.create_role(name=name, permissions=discord.Permissions.none(),
                                                   mentionable=False, reason=f"mldebt: the role for the {badge} badge")
            if member is None:
                member = await guild.fetch_member(user_id)
            if any(r.id == role.id for r in member.roles):
                return GrantResult(True, role)
            await member.add_roles(role, reason=f"mldebt: earned the {badge} badge")
            return GrantResult(True, role)
        except discord.NotFound as exc:
            if exc.code == 10007:  # Unknown Member
                return GrantResult(False, role, "The player is no longer a member of this server; the role is "
                                                "granted if they come back and an admin retries.")
            return GrantResult(False, role, _explain(guild, role, name, exc))
        except discord.HTTPException as exc:
            return GrantResult(False, role, _explain(guild, role, name, exc))

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
