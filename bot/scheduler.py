"""Wakes up for stored deadlines and hands what they produce to the adapters.

The scheduler decides nothing: it asks the engine to close what is due (the deadline is in the
database) and passes each Delivery to the deliverer registered for the player's platform. On start
the first tick closes whatever expired while the bot was down. Tests call `tick()` with a FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from .clock import Clock
from .engine import Delivery, QuizEngine

log = logging.getLogger(__name__)

Deliverer = Callable[[Delivery], Awaitable[None]]


class Scheduler:
    def __init__(self, engine: QuizEngine, clock: Clock, *, idle_seconds: float = 60.0) -> None:
        self.engine = engine
        self.clock = clock
        self.idle = timedelta(seconds=idle_seconds)
        self._deliverers: dict[str, Deliverer] = {}
        # when the loop goes to sleep, and until when: lets tests and health checks observe it
        self.asleep = asyncio.Event()
        self.sleeping_until: datetime | None = None

    def register(self, platform: str, deliverer: Deliverer) -> None:
        self._deliverers[platform] = deliverer

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
        return deliveries

    async def run(self) -> None:
        """Loop forever: tick, then sleep until the earliest stored deadline (or a new one appears)."""
        wake = self.engine.deadlines_changed
        while True:
            wake.clear()
            try:
                await self.tick()
                nxt = await self.engine.next_deadline()
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
