"""Badge grants to the Slack user group from several processes: `usergroups.users.update` replaces the
whole member list, so each grant's list-then-update holds the store's exclusive lock (PostgreSQL: an
advisory lock across processes). Two grants at once, through two stores on one database, keep both."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adapters.slack.grants import UserGroupGrants
from adapters.slack.oauth import OneWorkspace
from adapters.slack.web import make_client
from bot.outbox import OutboxEntry
from bot.store import SqliteStore
from bot.store.postgres import PostgresStore

from .workspace import USERGROUP


def grant(user: str) -> OutboxEntry:
    return OutboxEntry(1, f"grant:{user}", "slack", "T0TEST", "grant", f"badge:{user}",
                       json.dumps({"player_id": 1, "user": user, "badge": "mastery"}), "sending", 0.0, None, 1.0,
                       1, None, None, None, None, None, 0.0, 0.0)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_grants_at_once_from_two_processes_keep_both_members(kind, request, tmp_path: Path, fake):
    if kind == "postgres":  # two processes: two stores on one database
        url = request.getfixturevalue("postgres_url")
        stores = [PostgresStore(url), PostgresStore(url)]
    else:  # one process: its grants share the one store
        stores = [SqliteStore(tmp_path / "quiz.sqlite3")] * 2
    for store in set(stores):
        await store.open()
    try:
        client = make_client("xoxb-test", base_url=fake.base_url)
        processes = [UserGroupGrants(OneWorkspace(client), USERGROUP, store) for store in stores]
        refs = await asyncio.gather(*(p.send(grant(user)) for p, user in zip(processes, ("U0AMY", "U0BEN"), strict=True)))
    finally:
        for store in set(stores):
            await store.close()
    assert refs == [USERGROUP, USERGROUP]
    assert sorted(fake.usergroups[USERGROUP]) == ["U0AMY", "U0BEN", "U0BOB"]  # nobody's membership undone
    updates = fake.calls_for("usergroups.users.update")
    first, second = (c.args["users"].split(",") for c in updates)  # whichever went first, the second saw it
    assert len(first) == 2 and sorted(second) == ["U0AMY", "U0BEN", "U0BOB"] and second[:2] == first
