"""Wakes up for stored deadlines and daily posts and hands what they produce to the adapters.

The scheduler decides nothing: it asks the engine to close what is due (deadlines are in the
database), to claim the daily posts that are due (a claim is a database row, so two processes never
both post), and passes the results to what each platform registered. On start the first tick closes
whatever expired while the bot was down and catches up a missed daily post whose window is still
open. Tests call `tick()` with a FakeClock.

Daily posts and reveals are sent a few at a time (`daily_concurrency`), not one after another: at
09:00 thousands of channels can be due together, and one after another each waits for the previous
round trip (measured: 10,000 Slack posts took 34 s where a limit of 1,000 calls/s allows 10; see
bench/fanout.py). The platform client's rate-limit handling, not the scheduler, paces them. A
poster may offer `batch()`, an async context manager the scheduler holds around each tick's posts
(and reveals) to that platform: the Slack poster keeps one HTTP session open for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from .clock import Clock
from .engine import Delivery, QuizEngine
from .replies import DailyPost, DailyReveal

log = logging.getLogger(__name__)

Deliverer = Callable[[Delivery], Awaitable[None]]
T = TypeVar("T")
DAILY_CONCURRENCY = 16  # daily posts (or reveals) in flight at once


class DailyPoster(Protocol):
    """What a platform does with daily posts. `post` returns a reference to the message it sent.

    Optionally also `batch()`: see the module docstring."""

    async def post(self, post: DailyPost) -> str: ...

    async def find(self, post: DailyPost) -> str | None:
        """Look for a message an earlier, interrupted attempt may have sent (by its post id)."""

    async def reveal(self, reveal: DailyReveal) -> None: ...


class Scheduler:
    def __init__(self, engine: QuizEngine, clock: Clock, *, idle_seconds: float = 60.0,
                 daily_concurrency: int = DAILY_CONCURRENCY) -> None:
        if daily_concurrency < 1:
            raise ValueError("daily_concurrency must be at least 1")
        self.engine = engine
        self.clock = clock
        self.idle = timedelta(seconds=idle_seconds)
        self.daily_concurrency = daily_concurrency
        self._deliverers: dict[str, Deliverer] = {}
        self._posters: dict[str, DailyPoster] = {}
        # when the loop goes to sleep, and until when: lets tests and health checks observe it
        self.asleep = asyncio.Event()
        self.sleeping_until: datetime | None = None

    def register(self, platform: str, deliverer: Deliverer) -> None:
        self._deliverers[platform] = deliverer

    def register_daily(self, platform: str, poster: DailyPoster) -> None:
        self._posters[platform] = poster

    async def tick(self) -> list[Delivery]:
        """Close everything due now and deliver it. Returns what was delivered (or attempted)."""
        deliveries = await self.engine.expire_due()
        for delivery in deliveries:
            deliverer = self._deliverers.get(delivery.player.platform)
            if deliverer is None:
                log.warning("no deliverer for platform %s; time-out recorded but not shown",
                            delivery.player.platform)
                continue
            try:
                await deliverer(delivery)
            except Exception:  # one failed message must not stop the others
                log.exception("delivering a time-out for session %s failed", delivery.session_id)
        await self.daily_tick()
        return deliveries

    async def daily_tick(self) -> tuple[list[DailyPost], list[DailyReveal]]:
        """Send the daily posts that are due and reveal the ones whose window closed."""
        posts = await self.engine.claim_daily_posts(self._posters.keys())
        async with self._batch(p.platform for p in posts):
            await self._each(posts, self._post)
        reveals = await self.engine.claim_daily_reveals(self._posters.keys())
        async with self._batch(r.platform for r in reveals):
            await self._each(reveals, self._reveal)
        return posts, reveals

    @asynccontextmanager
    async def _batch(self, platforms: Iterable[str]) -> AsyncIterator[None]:
        """Hold the `batch()` of each poster that has one and has work in this batch."""
        async with AsyncExitStack() as stack:
            for platform in sorted(set(platforms)):
                batch = getattr(self._posters[platform], "batch", None)
                if batch is not None:
                    await stack.enter_async_context(batch())
            yield

    async def _each(self, items: Sequence[T], send: Callable[[T], Awaitable[None]]) -> None:
        """`send` every item, at most `daily_concurrency` at once, in order of the list."""
        queue = iter(items)

        async def worker() -> None:
            for item in queue:  # the workers share one iterator: each item is taken once
                await send(item)

        await asyncio.gather(*(worker() for _ in range(min(self.daily_concurrency, len(items)))))

    async def _post(self, post: DailyPost) -> None:
        poster = self._posters[post.platform]
        try:
            ref = await poster.find(post) if post.reconcile else None
            if ref is None:
                ref = await poster.post(post)
            await self.engine.daily_posted(post.post_id, ref)
        except Exception:  # the claim's lease runs out and the next tick looks again
            log.exception("daily post %s to channel %s failed; will retry", post.post_id, post.channel)

    async def _reveal(self, reveal: DailyReveal) -> None:
        try:
            await self._posters[reveal.platform].reveal(reveal)
            await self.engine.daily_revealed(reveal.post_id)
        except Exception:
            log.exception("revealing daily post %s failed; will retry", reveal.post_id)

    async def run(self) -> None:
        """Loop forever: tick, then sleep until the earliest stored deadline (or a new one appears)."""
        wake = self.engine.deadlines_changed
        # other processes on the same database announce their new deadlines (PostgreSQL)
        await self.engine.store.listen()
        while True:
            wake.clear()
            try:
                await self.tick()
                nxt = await self.engine.next_wakeup()
            except Exception:
                log.exception("scheduler tick failed; retrying")
                nxt = None
            until = self.clock.now() + self.idle
            if nxt is not None and nxt < until:
                until = nxt
            self.sleeping_until = until
            self.asleep.set()
            await self.clock.sleep_until(until, wake)
            self.asleep.clear()

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name="mldebt-scheduler")
