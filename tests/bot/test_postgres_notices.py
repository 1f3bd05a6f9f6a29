"""LISTEN/NOTIFY between processes on one PostgreSQL database: a new deadline wakes the other
processes' schedulers, a changed time zone drops their cached one."""

from __future__ import annotations

import asyncio
import random

from bot.engine import QuizEngine
from bot.replies import Player
from bot.store.postgres import PostgresStore


async def test_a_deadline_or_a_setting_committed_by_one_process_reaches_the_others(postgres_url, bank, clock):
    async with PostgresStore(postgres_url) as mine, PostgresStore(postgres_url) as theirs:
        me = QuizEngine(mine, bank, clock, rng=random.Random(1))
        them = QuizEngine(theirs, bank, clock, rng=random.Random(2))
        await theirs.listen()
        them._tz_cache["slack:T1"] = them.default_tz  # what it read before the change

        await me.start(Player("slack", "T1", "U1", "Ann"), "challenge")  # stores a deadline
        await asyncio.wait_for(them.deadlines_changed.wait(), 5)

        them.deadlines_changed.clear()
        await me.set_timezone(Player("slack", "T1", "U1", "Ann"), "Europe/Berlin")
        for _ in range(100):  # bounded: the notice arrives on the listener's connection
            if "slack:T1" not in them._tz_cache:
                break
            await asyncio.sleep(0.01)
        assert "slack:T1" not in them._tz_cache
        assert not them.deadlines_changed.is_set()  # a setting is not a deadline
