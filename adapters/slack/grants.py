"""The Slack side of a badge: membership of the user group SLACK_BADGE_USERGROUP_ID.

`usergroups.users.update` replaces the whole member list, so a grant is a read-modify-write
(`usergroups.users.list`, add the player, update), held exclusively per workspace and group by the
store (`Store.exclusive`: across every process on a PostgreSQL database; within the process on SQLite),
so two grants at once never write lists that drop each other's member. The
engine writes each new badge's grant to the outbox in the same transaction that awards it; the
outbox worker calls `send` and retries it (backoff, Retry-After) or records a permanent reason
(missing scope, paid plan needed, no such group) for the admin status. Nothing is queued in memory.
"""

from __future__ import annotations

import logging

from bot.outbox import OutboxEntry
from bot.store import Store

from .errors import slack_call
from .oauth import WorkspaceClients

log = logging.getLogger(__name__)


class UserGroupGrants:
    def __init__(self, clients: WorkspaceClients, usergroup: str, store: Store) -> None:
        self.clients = clients  # the entry's workspace's client
        self.usergroup = usergroup
        self.store = store

    async def send(self, entry: OutboxEntry) -> str:
        """Add the entry's player to the user group (a no-op if they are in it). Raises PlatformError."""
        user = entry.data["user"]
        what = f"adding <@{user}> to the badge user group"
        client = await self.clients.client(entry.tenant)
        async with self.store.exclusive(f"slack-usergroup:{entry.tenant}:{self.usergroup}"):
            listed = await slack_call(client.usergroups_users_list(usergroup=self.usergroup), what=what)
            members = list(listed.get("users") or [])
            if user not in members:
                await slack_call(client.usergroups_users_update(usergroup=self.usergroup,
                                                                     users=members + [user]), what=what)
                log.info("added %s to user group %s", user, self.usergroup)
        return self.usergroup
