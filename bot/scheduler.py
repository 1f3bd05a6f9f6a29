"""Wakes up for stored deadlines, daily posts and outbox entries, and has the outbox worker send them.

The scheduler decides nothing: it asks the engine to close what is due (deadlines are in the
database; each closed question writes its time-out message to the outbox), to queue the daily
posts that are due and close the windows that ended (each writes a post or a reveal to the outbox),
and then runs the outbox worker (bot/outbox.py), which sends every due entry through what each
platform registered, with leases, so two processes never both send one entry. On start the first
tick closes whatever expired while the bot was down and catches up a missed daily post whose
window is still open. Tests call `tick()` with a FakeClock.

Platforms register per kind of entry: `register` (time-outs, as a function of a Delivery),
`register_daily` (a DailyPoster: posts, finds after a crash, reveals) and `deliver` (any kind, as a
function of the outbox entry). Entries are sent `concurrency` at a time (at 09:00 thousands of
channels can be due together; the platform client paces them, see bench/fanout.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from .clock import Clock
from .engine import Delivery, QuizEngine
from .outbox import CONCURRENCY, Find, KindSender, OutboxEntry, OutboxWorker, Send, decode, loads
from .replies import DailyPost, DailyReveal

log = logging.getLogger(__name__)

Deliverer = Callable[[Delivery], Awaitable[None]]
DAILY_CONCURRENCY = CONCURRENCY  # entries (daily posts, reveals, ...) in flight at once


class DailyPoster(Protocol):
    """What a platform does with daily posts. `post` returns a reference to the message it sent.

    Optionally also `batch()`: an async context manager held around a run of the outbox worker."""

    async def post(self, post: DailyPost) -> str: ...

    async def find(self, post: DailyPost) -> str | None:
        """Look for a message an earlier, interrupted attempt may have sent (by its post id)."""

    async def reveal(self, reveal: DailyReveal) -> None: ...


def delivery_of(entry: OutboxEntry) -> Delivery:
    return Delivery(**loads(entry.payload))


def daily_post_of(entry: OutboxEntry) -> DailyPost:
    """The entry's post, built once with its `reconcile` flag (from the entry's parsed payload, which the
    settling hook reads again)."""
    return decode({**entry.data["post"], "reconcile": entry.reconcile})


class Scheduler:
    def __init__(self, engine: QuizEngine, clock: Clock, *, idle_seconds: float = 60.0,
                 daily_concurrency: int = DAILY_CONCURRENCY) -> None:
        if daily_concurrency < 1:
            raise ValueError("daily_concurrency must be at least 1")
        self.engine = engine
        self.clock = clock
        self.idle = timedelta(seconds=idle_seconds)
        self.outbox = OutboxWorker(engine.store, clock, concurrency=daily_concurrency)
        self.outbox.on_settled("daily_post", engine.on_daily_post_settled)
        self.outbox.on_settled_many("daily_post", engine.on_daily_posts_settled)
        self._senders: dict[str, KindSender] = {}
        self._daily_platforms: set[str] = set()
        # when the loop goes to sleep, and until when: lets tests and health checks observe it
        self.asleep = asyncio.Event()
        self.sleeping_until: datetime | None = None

    def deliver(self, platform: str, kind: str, send: Send, find: Find | None = None) -> None:
        """Deliver outbox entries of `kind` on `platform` with `send` (and `find` after an interrupted try)."""
        sender = self._senders.get(platform)
        if sender is None:
            sender = self._senders[platform] = KindSender()
            self.outbox.register(platform, sender)
        sender.on(kind, send, find)
        self.engine.outbox_kinds.setdefault(platform, set()).add(kind)

    def add_batch(self, platform: str, batch: Callable) -> None:
        """An async context manager factory held around each worker run (e.g. one HTTP session)."""
        self._senders[platform].batches.append(batch)

    def register(self, platform: str, deliverer: Deliverer) -> None:
        async def send(entry: OutboxEntry) -> None:
            await deliverer(delivery_of(entry))

        self.deliver(platform, "timeout", send)

    def register_daily(self, platform: str, poster: DailyPoster) -> None:
        async def post(entry: OutboxEntry) -> str:
            return await poster.post(daily_post_of(entry))

        async def find(entry: OutboxEntry) -> str | None:
            return await poster.find(daily_post_of(entry))

        async def reveal(entry: OutboxEntry) -> None:
            await poster.reveal(loads(entry.payload))

        self.deliver(platform, "daily_post", post, find)
        self.deliver(platform, "daily_reveal", reveal)
        batch = getattr(poster, "batch", None)
        if batch is not None:
            self.add_batch(platform, batch)
        self._daily_platforms.add(platform)

    async def tick(self) -> list[Delivery]:
        """Close everything due now and send what is due. Returns the time-outs closed in this tick."""
        deliveries = await self.engine.expire_due()
        await self.daily_tick()
        return deliveries

    async def daily_tick(self) -> tuple[list[DailyPost], list[DailyReveal]]:
        """Queue the daily posts due, close the windows that ended, and run the outbox worker.

        Returns the daily posts and reveals this run attempted (sent, failed or to be retried)."""
        queued_some = asyncio.Event()
        queuing = asyncio.create_task(self.engine.queue_daily_posts(self._daily_platforms, queued_some))
        settled: list[OutboxEntry] = []
        try:
            # send what is queued while the rest is being queued (thousands of channels at 09:00)
            while not queuing.done():
                waiter = asyncio.create_task(queued_some.wait())
                await asyncio.wait({queuing, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                queued_some.clear()
                settled += await self.outbox.run_once()
            queuing.result()
        finally:
            if not queuing.done():
                queuing.cancel()
                await asyncio.gather(queuing, return_exceptions=True)
        await self.engine.close_daily_posts()
        settled += await self.outbox.run_once()
        posts = [daily_post_of(e) for e in settled if e.kind == "daily_post" and e.status != "dropped"]
        reveals = [loads(e.payload) for e in settled if e.kind == "daily_reveal" and e.status != "dropped"]
        return posts, reveals

    async def run(self) -> None:
        """Loop forever: tick, then sleep until the earliest stored deadline (or a new one appears)."""
        wake = self.engine.deadlines_changed
        # other processes on the same database announce their new deadlines (PostgreSQL)
        await self.engine.store.listen()
        while True:
            wake.clear()
            try:
                await self.tick()
                nxt = await self.engine.next_wakeup(self.outbox.routes(), self.outbox.shards)
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
