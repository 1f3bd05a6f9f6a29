"""Time, injected: the engine and the scheduler never read the wall clock directly.

Tests use FakeClock so that deadlines, daily posts and time-outs are driven by `advance()`
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    async def sleep_until(self, when: datetime, wake: asyncio.Event | None = None) -> None:
        """Return at `when`, or earlier if `wake` is set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, wake: asyncio.Event | None = None) -> None:
        delay = max(0.0, (when - self.now()).total_seconds())
        if wake is None:
            await asyncio.sleep(delay)
            return
        # not asyncio.wait_for: on Python 3.11 it returns normally, swallowing a cancellation, when the
        # event is set in the same loop turn as the cancel; the scheduler's task then never ends and a
        # shutdown that cancels it hangs (seen: `mldebt play` not exiting after a finished quiz)
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=delay)
        finally:
            waiter.cancel()


class FakeClock:
    """A clock that only moves when told to. Sleepers wake when `advance` passes their instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when
        self._wake_due()

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self._now += timedelta(seconds=seconds, **kwargs)
        self._wake_due()
        return self._now

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep_until(self, when: datetime, wake: asyncio.Event | None = None) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        if wake is None:
            await fut
            return
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({fut, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not fut.done():
                fut.cancel()
