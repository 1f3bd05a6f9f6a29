"""Client-side pacing and per-route pauses for the daily posts' Slack calls.

Slack limits calls per method and workspace, and chat.postMessage also per channel (about one
message a second). A route is what one limit covers: (workspace, method) or, for chat.postMessage,
(workspace, method, channel). The `Pacer`:

- paces each (workspace, method) that has a configured rate at `SHARE` of it (a token bucket of
  one second's worth, so a 429 is rare; each caller reserves its slot, so waiters never stampede);
- after a 429 pauses only that call's route for Retry-After: the other channels and workspaces keep
  sending. Slack's 429 does not say which limit was hit; a chat.postMessage 429 is taken for the
  channel's limit when this pacer sent to that channel within the last second, else for the
  workspace's (which pauses the workspace's whole method).

The rate is per process: N processes posting for one workspace each get the workspace's rate / N.
Time comes from `now`/`sleep` (monotonic seconds), so tests drive it without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

SHARE = 0.95  # of the configured rate: just under the platform's, so the platform's bucket never empties
PER_CHANNEL_S = 1.0  # chat.postMessage: about one message per second per channel
POST = "chat.postMessage"

Route = tuple[str, ...]  # (workspace, method) or (workspace, method, channel)


def route_of(team: str, method: str, channel: str | None = None) -> Route:
    return (team, method, channel) if method == POST and channel else (team, method)


class _Bucket:
    """A token bucket whose takers reserve: tokens may go below zero, and a taker waits its turn."""

    __slots__ = ("rate", "capacity", "tokens", "at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.at = self.capacity, now

    def reserve(self, now: float) -> float:
        """Take one token; seconds to wait before using it."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate) - 1
        self.at = now
        delay = -self.tokens / self.rate
        return delay if delay > 1e-9 else 0.0  # not a sleep for a rounding error


class Pacer:
    def __init__(self, rates: dict[str, float] | None = None, *, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        """`rates`: calls per second the platform allows per workspace, by method (unlisted: unpaced)."""
        for method, rate in (rates or {}).items():
            if not rate > 0:
                raise ValueError(f"the rate of {method} must be above 0, got {rate!r}")
        self.rates = dict(rates or {})
        self._now, self._sleep = now, sleep
        self._buckets: dict[Route, _Bucket] = {}
        self.paused: dict[Route, float] = {}  # route -> monotonic time until which it waits
        self._last_post: dict[tuple[str, str], float] = {}  # (workspace, channel) -> when we last posted there

    async def acquire(self, route: Route) -> float | None:
        """Wait until a call on `route` may go: its pauses are over and the workspace's pace allows it.

        Returns, for a chat.postMessage route, how long before this call the previous post to its
        channel went (None: not within the last second); `limited` reads it."""
        team, method = route[0], route[1]
        await self._unpaused(route)
        rate = self.rates.get(method)
        if rate is not None:
            now = self._now()
            bucket = self._buckets.get((team, method))
            if bucket is None:
                bucket = self._buckets[(team, method)] = _Bucket(rate * SHARE, now)
            if (delay := bucket.reserve(now)) > 0:
                await self._sleep(delay)
                await self._unpaused(route)  # a 429 may have paused the route while this call waited its turn
        if len(route) != 3:
            return None
        now = self._now()
        if len(self._last_post) > 4096:  # forget channels not posted to within the last second
            self._last_post = {k: t for k, t in self._last_post.items() if now - t < PER_CHANNEL_S}
        previous = self._last_post.get((team, route[2]))
        self._last_post[(team, route[2])] = now
        return now - previous if previous is not None and now - previous < PER_CHANNEL_S else None

    async def _unpaused(self, route: Route) -> None:
        while True:
            until = max(self.paused.get(route, 0.0), self.paused.get(route[:2], 0.0))
            if (delay := until - self._now()) <= 0:
                return
            await self._sleep(delay)

    def limited(self, route: Route, retry_after: float, since_previous: float | None = None) -> Route:
        """A 429 on `route`: pause the route it concerns for `retry_after` seconds; returns that route.

        `since_previous` is what `acquire` returned for the limited call: a channel posted to within
        the last second hit its own limit; otherwise the workspace's limit was hit."""
        paused: Route = route if len(route) == 3 and since_previous is not None else route[:2]
        now = self._now()
        if len(self.paused) > 4096:  # forget pauses that are over
            self.paused = {r: until for r, until in self.paused.items() if until > now}
        self.paused[paused] = max(self.paused.get(paused, 0.0), now + retry_after)
        return paused
