"""Wait for bolt's background listener work without sleeping (see /work/notes/slack.md §6)."""

from __future__ import annotations

import asyncio

from slack_bolt.async_app import AsyncApp
from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.asyncio_runner import AsyncioLazyListenerRunner
from slack_bolt.listener.async_listener_completion_handler import AsyncListenerCompletionHandler
from slack_bolt.listener.async_listener_start_handler import AsyncListenerStartHandler


class BackgroundTracker:
    """Counts listener runs bolt starts in the background; `await idle()` waits until all are done.

    Hooks bolt's listener_runner: the start/completion handlers wrap every ack-function run, and a
    lazy runner keeps the tasks it creates. Race-free: by the time `async_dispatch` returns, the
    ack function has called the start handler and lazy starts were counted synchronously.
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

        class _Lazy(AsyncioLazyListenerRunner):
            def start(self, function, request):
                tracker._inc()
                task = asyncio.ensure_future(
                    to_runnable_function(internal_func=function, logger=self.logger, request=request)
                )
                task.add_done_callback(lambda _t: tracker._dec())

        runner.listener_start_handler = _Start()
        runner.listener_completion_handler = _Done()
        runner.lazy_listener_runner = _Lazy(logger=app.logger)

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
        await asyncio.wait_for(self._idle.wait(), within)
