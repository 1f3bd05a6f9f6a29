"""The outbox claim's shard filter, on both stores: a process claims (and wakes up for) only the
entries of guilds on its Discord shards; other platforms' entries are unaffected; an entry of a guild
on a shard no process runs stays pending until it expires, then it is dropped, never failed."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from bot import outbox
from bot.outbox import KindSender, OutboxWorker, ShardFilter
from bot.replies import Player
from bot.scheduler import Scheduler
from bot.store.outbox import OutboxEntry

COUNT = 4
BASE = 1_180_000_000_000_000_000  # a snowflake of 2023: the guild ids below are as large as real ones


def guild_on(shard: int, n: int = 0) -> str:
    """A guild id on `shard` of COUNT, by Discord's formula (id >> 22) % shard_count."""
    high = (BASE >> 22) // COUNT * COUNT + n * COUNT + shard
    return str(high << 22 | 0x2A5)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, entry: OutboxEntry) -> str:
        self.sent.append(entry.key)
        return f"ref-{entry.key}"


def worker(store, clock, shards: ShardFilter | None, lease_seconds: float = 60.0) -> tuple[OutboxWorker, Recorder]:
    w = OutboxWorker(store, clock, rng=random.Random(1), lease_seconds=lease_seconds)
    rec = Recorder()
    for platform in ("discord", "slack"):
        sender = KindSender()
        for kind in outbox.KINDS:
            sender.on(kind, rec.send)
        w.register(platform, sender)
    w.shard("discord", shards)
    return w, rec


async def enqueue(store, clock, platform: str, tenant: str, key: str, **kw) -> None:
    async with store.transaction() as tx:
        assert await tx.enqueue(platform, tenant, "grant", key, "badge:m", outbox.dumps({"k": key}),
                                clock.now().timestamp(), **kw)


async def statuses(store) -> dict[str, str]:
    async with store.transaction() as tx:
        return dict(await tx._all("SELECT key, status FROM outbox ORDER BY key"))


def test_the_guild_ids_here_land_on_the_shard_discord_py_routes_them_to():
    import discord

    class State:  # what discord.py's Guild.shard_id reads: the client's shard count
        shard_count = COUNT

    for shard in range(COUNT):
        guild = discord.Guild.__new__(discord.Guild)
        guild.id, guild._state = int(guild_on(shard, 3)), State()
        assert guild.shard_id == shard
    assert discord.utils.snowflake_time(int(guild_on(0))).year >= 2023


async def test_each_process_claims_only_its_shards_and_other_platforms_are_unaffected(store, clock):
    for shard in range(COUNT):
        await enqueue(store, clock, "discord", guild_on(shard), f"g{shard}")
    await enqueue(store, clock, "slack", "T0123ABC", "slack")  # never cast to a number (PostgreSQL would fail)
    a, sent_a = worker(store, clock, ShardFilter("discord", COUNT, (0, 1)))
    b, sent_b = worker(store, clock, ShardFilter("discord", COUNT, (2,)))

    await a.run_once()
    assert sorted(sent_a.sent) == ["g0", "g1", "slack"]
    await b.run_once()
    assert sent_b.sent == ["g2"]
    await a.run_once()
    await b.run_once()
    assert sorted(sent_a.sent) == ["g0", "g1", "slack"] and sent_b.sent == ["g2"]  # nothing twice
    # shard 3 runs nowhere: its entry waits, neither claimed nor failed
    assert await statuses(store) == {"g0": "sent", "g1": "sent", "g2": "sent", "g3": "pending", "slack": "sent"}

    # ...and wakes no process in a loop: it is due, but not theirs
    async with store.transaction() as tx:
        routes = a.routes()
        assert await tx.next_outbox_event(routes, a.shards) is None
        assert await tx.next_outbox_event(routes, b.shards) is None
        assert await tx.next_outbox_event(routes) == pytest.approx(clock.now().timestamp())

    d, sent_d = worker(store, clock, ShardFilter("discord", COUNT, (3,)))  # shard 3's process starts
    await d.run_once()
    assert sent_d.sent == ["g3"]


async def test_an_unowned_guilds_entry_waits_until_it_expires_then_is_dropped(store, clock, engine):
    expires = (clock.now() + timedelta(minutes=10)).timestamp()
    await enqueue(store, clock, "discord", guild_on(3), "late", expires_at=expires)
    await enqueue(store, clock, "discord", guild_on(0), "mine")
    a, sent_a = worker(store, clock, ShardFilter("discord", COUNT, (0, 1)))
    await a.run_once()
    assert sent_a.sent == ["mine"]
    assert (await statuses(store))["late"] == "pending"
    assert await engine.next_wakeup(a.routes(), a.shards) is None  # nothing of its own is due
    clock.advance(minutes=11)
    await a.run_once()
    assert sent_a.sent == ["mine"]
    assert (await statuses(store))["late"] == "dropped"


async def test_a_dead_processs_lapsed_claim_goes_to_a_process_of_the_same_shard(store, clock):
    await enqueue(store, clock, "discord", guild_on(1), "g1")
    async with store.transaction() as tx:  # a process running shard 1 claims it, then dies
        [claimed] = await tx.outbox_claim(["discord:grant"], clock.now().timestamp(),
                                          clock.now().timestamp() + 60, 10, [ShardFilter("discord", COUNT, (1,))])
    assert claimed.key == "g1"
    clock.advance(61)
    other, sent_other = worker(store, clock, ShardFilter("discord", COUNT, (0, 2, 3)))
    await other.run_once()
    assert sent_other.sent == []
    same, sent_same = worker(store, clock, ShardFilter("discord", COUNT, (1,)))
    await same.run_once()
    assert sent_same.sent == ["g1"]
    assert (await statuses(store))["g1"] == "sent"


async def test_an_unsharded_worker_and_a_filter_for_another_platform_are_refused_or_claim_all(store, clock):
    await enqueue(store, clock, "discord", guild_on(2), "g2")
    w, rec = worker(store, clock, None)
    assert w.shards == ()
    with pytest.raises(ValueError, match="a shard filter of slack given for discord"):
        w.shard("discord", ShardFilter("slack", 2, (0,)))
    w.shard("discord", ShardFilter("discord", COUNT, (0,)))
    w.shard("discord", None)  # a rebuilt unsharded bot: every guild again
    await w.run_once()
    assert rec.sent == ["g2"]


async def test_a_process_without_discord_closes_a_discord_question_and_a_shard_process_tells_the_player(
        store, clock, engine):
    player = Player("discord", guild_on(2), "u1", "Ann")
    await engine.start(player, "challenge")  # `engine` runs no platform: a Slack-only replica, say
    clock.advance(121)
    [closed] = await engine.expire_due()
    assert closed.player == player
    assert await statuses(store) == {f"timeout:{closed.session_id}:0": "pending"}
    shard_2, rec = worker(store, clock, ShardFilter("discord", COUNT, (2, 3)))
    await shard_2.run_once()
    assert rec.sent == [f"timeout:{closed.session_id}:0"]


async def test_a_shard_processs_scheduler_sleeps_past_another_shards_due_entry(store, clock, engine):
    await enqueue(store, clock, "discord", guild_on(3), "theirs")
    sent: list[str] = []

    async def grant(entry: OutboxEntry) -> None:
        sent.append(entry.key)

    scheduler = Scheduler(engine, clock, idle_seconds=3600)
    scheduler.deliver("discord", "grant", grant)
    scheduler.outbox.shard("discord", ShardFilter("discord", COUNT, (0,)))
    task = scheduler.start()
    try:
        async with asyncio.timeout(5):
            await scheduler.asleep.wait()
        assert scheduler.sleeping_until == clock.now() + scheduler.idle  # an idle wait, not a spin
        assert sent == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
