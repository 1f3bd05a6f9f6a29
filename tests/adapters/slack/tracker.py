"""Wait for bolt's background listener work without sleeping (see /work/notes/slack.md §6)."""

from __future__ import annotations

import asyncio

from slack_bolt.async_app import AsyncApp
from slack_bolt.listener.async_listener_completion_handler import AsyncListenerCompletionHandler
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler


class BackgroundTracker:
    """Counts listener runs bolt starts in the background; `await idle()` waits until all are done.

    Hooks bolt's listener_runner: the start/completion handlers wrap every ack-function run; the
    work behind the acks is in the app's WorkQueue, which says when it is idle. Race-free: by the
    time `async_dispatch` returns, the ack ran and its work was queued synchronously.
    """

    def __init__(self, app: AsyncApp) -> None:
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        runner = app.listener_runner
        tracker = self

        class _Start(AsyncListenerStartHandler):
            async def handle(self, request, response):
                tracker._inc()

        class _Done(AsyncListenerCompletionHandler):
            async def handle(self, request, response):
                tracker._dec()

        runner.listener_start_handler = _Start()
        runner.listener_completion_handler = _Done()
        self.work = app.work

    def _inc(self) -> None:
        self._pending += 1
        self._idle.clear()

    def _dec(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    @property
    def pending(self) -> int:
        return self._pending

    async def idle(self, within: float = 5.0) -> None:
        """Acks done, then the app's work queue drained (work queued by the acks included)."""
        async def both() -> None:
            await self._idle.wait()
            await self.work.idle()

        await asyncio.wait_for(both(), within)
