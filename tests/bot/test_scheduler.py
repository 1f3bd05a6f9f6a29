"""The scheduler sends many due daily posts (and reveals) a few at a time, each exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from bot.commands import handle_text
from bot.replies import DailyPost, DailyReveal, Player
from bot.scheduler import DAILY_CONCURRENCY, Scheduler

ADMIN = Player("slack", "T1", "U099", "Admin")


async def set_channels(engine, n: int) -> list[str]:
    channels = [f"C{i:03d}" for i in range(n)]
    for channel in channels:
        await handle_text(engine, ADMIN, f"daily set <#{channel}|c> 09:00 UTC", is_admin=True)
    return channels


class GatedPoster:
    """Holds every post until `release` is set, counting how many are in flight at once."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.waiting = asyncio.Condition()
        self.posts: list[DailyPost] = []
        self.reveals: list[DailyReveal] = []
        self.fail = fail or set()

    async def _hold(self) -> None:
        async with self.waiting:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.waiting.notify_all()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1

    async def post(self, post: DailyPost) -> str:
        await self._hold()
        if post.channel in self.fail:
            raise RuntimeError("platform down")
        self.posts.append(post)
        return f"ref-{post.channel}"

    async def find(self, post: DailyPost) -> str | None:
        return None

    async def reveal(self, reveal: DailyReveal) -> None:
        await self._hold()
        self.reveals.append(reveal)

    async def until_in_flight(self, n: int) -> None:
        async with self.waiting:
            await asyncio.wait_for(self.waiting.wait_for(lambda: self.in_flight >= n), 5)


async def statuses(store) -> dict[str, str]:
    async with store.transaction() as tx:
        rows = await tx._all("SELECT channel, status FROM daily_posts")
    return dict(rows)


async def test_many_due_posts_go_out_a_few_at_a_time_each_once(engine, store, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    channels = await set_channels(engine, 30)
    scheduler = Scheduler(engine, clock, daily_concurrency=4)
    poster = GatedPoster()
    scheduler.register_daily("slack", poster)
    tick = asyncio.create_task(scheduler.daily_tick())
    await poster.until_in_flight(4)
    assert poster.most == 4  # four in flight, the other 26 wait their turn
    poster.release.set()
    posts, reveals = await asyncio.wait_for(tick, 5)
    assert sorted(p.channel for p in posts) == channels and reveals == []
    assert sorted(p.channel for p in poster.posts) == channels  # each channel exactly once
    assert poster.most == 4
    assert set((await statuses(store)).values()) == {"posted"}


async def test_one_failed_post_does_not_hold_up_the_others(engine, store, clock, caplog):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    channels = await set_channels(engine, 10)
    scheduler = Scheduler(engine, clock, daily_concurrency=3)
    poster = GatedPoster(fail={"C004"})
    poster.release.set()
    scheduler.register_daily("slack", poster)
    await scheduler.daily_tick()
    assert sorted(p.channel for p in poster.posts) == [c for c in channels if c != "C004"]
    assert (await statuses(store))["C004"] == "queued"  # its outbox entry is retried after a backoff
    assert "outbox daily_post:C004:2026-06-01: unexpected error; will retry" in caplog.text
    clock.advance(61)
    poster.fail.clear()
    await scheduler.daily_tick()
    assert sorted(p.channel for p in poster.posts) == channels
    assert [p.reconcile for p in poster.posts if p.channel == "C004"] == [True]


async def test_reveals_go_out_a_few_at_a_time_too(engine, store, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    channels = await set_channels(engine, 12)
    scheduler = Scheduler(engine, clock, daily_concurrency=5)
    poster = GatedPoster()
    poster.release.set()
    scheduler.register_daily("slack", poster)
    await scheduler.daily_tick()
    clock.set(datetime(2026, 6, 2, 9, 0, 30, tzinfo=UTC))  # the next post closes yesterday's window
    poster.release.clear()
    tick = asyncio.create_task(scheduler.daily_tick())
    await poster.until_in_flight(5)
    poster.release.set()
    posts, reveals = await asyncio.wait_for(tick, 5)
    assert len(posts) == 12 and sorted(r.channel for r in reveals) == channels
    assert sorted(r.channel for r in poster.reveals) == channels and poster.most == 5
    async with store.transaction() as tx:
        rows = await tx._all("SELECT local_date, status, COUNT(*) FROM daily_posts GROUP BY 1, 2 ORDER BY 1")
    assert rows == [("2026-06-01", "closed", 12), ("2026-06-02", "posted", 12)]


async def test_concurrency_one_is_one_after_another(engine, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    await set_channels(engine, 5)
    scheduler = Scheduler(engine, clock, daily_concurrency=1)
    poster = GatedPoster()
    poster.release.set()
    scheduler.register_daily("slack", poster)
    posts, _ = await scheduler.daily_tick()
    assert len(poster.posts) == 5 and poster.most == 1
    assert [p.channel for p in poster.posts] == [p.channel for p in posts]  # in the order claimed


async def test_cancelling_a_tick_stops_the_posts_in_flight(engine, store, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    await set_channels(engine, 8)
    scheduler = Scheduler(engine, clock, daily_concurrency=2)
    poster = GatedPoster()
    scheduler.register_daily("slack", poster)
    tick = asyncio.create_task(scheduler.daily_tick())
    await poster.until_in_flight(2)
    tick.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tick
    assert poster.in_flight == 0 and poster.posts == []
    assert set((await statuses(store)).values()) == {"queued"}
    async with store.transaction() as tx:  # claimed under a lease: a restart reconciles them
        assert await tx._all("SELECT DISTINCT status FROM outbox") == [("sending",)]


def test_concurrency_must_be_positive(engine, clock):
    assert DAILY_CONCURRENCY >= 1
    with pytest.raises(ValueError, match="daily_concurrency"):
        Scheduler(engine, clock, daily_concurrency=0)


class BatchingPoster(GatedPoster):
    """A poster with `batch()`: every post and reveal must happen inside one."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.batches: list[str] = []
        self.open = False

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        self.batches.append("open")
        self.open = True
        try:
            yield
        finally:
            self.open = False
            self.batches.append("closed")

    async def post(self, post: DailyPost) -> str:
        assert self.open
        return await super().post(post)

    async def reveal(self, reveal: DailyReveal) -> None:
        assert self.open
        await super().reveal(reveal)


async def test_a_posters_batch_is_held_around_each_ticks_sends(engine, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    await set_channels(engine, 6)
    scheduler = Scheduler(engine, clock, daily_concurrency=3)
    poster = BatchingPoster()
    scheduler.register_daily("slack", poster)
    await scheduler.daily_tick()
    assert len(poster.posts) == 6 and poster.batches == ["open", "closed"]  # once for all six
    await scheduler.daily_tick()
    assert poster.batches == ["open", "closed"]  # nothing due: no batch
    clock.set(datetime(2026, 6, 2, 9, 0, 30, tzinfo=UTC))
    await scheduler.daily_tick()
    assert len(poster.posts) == 12 and len(poster.reveals) == 6
    assert poster.batches == ["open", "closed"] * 2  # the new posts and the reveals, in one run
