"""The Slack side of a badge: membership of the user group SLACK_BADGE_USERGROUP_ID.

`usergroups.users.update` replaces the whole member list, so a grant is a read-modify-write
(`usergroups.users.list`, add the player, update), serialised inside the process by a lock. The
engine stores each new badge as a pending grant in the same transaction that awards it; every
attempt's outcome goes back through `engine.record_grant`, so a failure (missing scope, paid plan
needed, rate limit, network) stays pending in the database with its reason and is retried: at
start-up and then periodically, with a growing delay per grant. Nothing is queued in memory.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clock import Clock
from bot.engine import QuizEngine
from bot.replies import Player

log = logging.getLogger(__name__)

PLATFORM = "slack"
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=6)
BATCH = 50  # grants retried per pass, so one pass stays short


def retry_delay(attempts: int) -> timedelta:
    """1 min after the first failure, doubling per attempt, at most 6 h (never given up)."""
    return min(FIRST_RETRY * (2 ** max(0, attempts - 1)), MAX_RETRY)


class UserGroupGrants:
    def __init__(self, engine: QuizEngine, client: AsyncWebClient, usergroup: str) -> None:
        self.engine = engine
        self.client = client
        self.usergroup = usergroup
        self._lock = asyncio.Lock()
        # observable progress of `run`, for tests and health checks: passes done, and asleep between them
        self.passes = 0
        self.asleep = asyncio.Event()

    async def grant(self, player: Player, badge: str) -> bool:
        """Add the player to the user group; record the outcome. True when they are in the group."""
        async with self._lock:
            try:
                members = list((await self.client.usergroups_users_list(usergroup=self.usergroup))["users"])
                if player.user not in members:
                    await self.client.usergroups_users_update(usergroup=self.usergroup,
                                                              users=members + [player.user])
            except SlackApiError as exc:
                reason = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
                return await self._failed(player, badge, reason)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return await self._failed(player, badge, f"network: {type(exc).__name__}")
        await self.engine.record_grant(player, badge, ok=True)
        log.info("added %s to user group %s (%s)", player.user, self.usergroup, badge)
        return True

    async def _failed(self, player: Player, badge: str, reason: str) -> bool:
        log.warning("could not add %s to user group %s: %s (kept pending, will retry)",
                    player.user, self.usergroup, reason)
        await self.engine.record_grant(player, badge, ok=False, reason=reason)
        return False

    async def retry_due(self) -> int:
        """One pass over the stored pending grants whose retry time has come. Returns how many succeeded."""
        now = self.engine.clock.now()
        due = [g for g in await self.engine.pending_grants(PLATFORM)
               if g.attempts == 0 or g.since + retry_delay(g.attempts) <= now]
        done = 0
        for g in due[:BATCH]:
            done += await self.grant(g.player, g.badge)
        return done

    async def run(self, clock: Clock, *, every: timedelta = FIRST_RETRY) -> None:
        """Retry at start-up, then every `every`, until cancelled. One failed pass never stops it."""
        while True:
            try:
                await self.retry_due()
            except Exception:
                log.exception("retrying pending user-group grants failed; trying again later")
            self.passes += 1
            self.asleep.set()
            await clock.sleep_until(clock.now() + every)
            self.asleep.clear()
