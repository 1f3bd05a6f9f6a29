"""Acks first, always: the work behind Slack's acknowledgements runs from one bounded queue.

bolt acks a request (empty 200) and then starts each lazy listener as its own task, so under a
burst every request's reply work competes with the next acks for the event loop. `WorkQueue`
replaces bolt's lazy-listener runner: `start` (called right after the ack) only appends to a queue,
in arrival order, and a fixed number of workers drain it. The ack path never awaits the work.

When the queue is full the request is still acknowledged (the ack happened already), and instead
of dropping the work silently the user is told "busy, try again" through `on_full`, at most
`BUSY_NOTICES` of those in flight at once; one log line per burst of refusals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.asyncio_runner import AsyncioLazyListenerRunner
from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # requests waiting for a worker
WORKERS = 32  # requests worked on at once (each mostly waits on the database or Slack)
BUSY_NOTICES = 64  # "busy" notices in flight at once; beyond that the refusal is only counted

Job = tuple[Callable[..., Awaitable[None]], AsyncBoltRequest]


class WorkQueue(AsyncioLazyListenerRunner):
    def __init__(self, logger: logging.Logger, *, size: int = QUEUE_SIZE, workers: int = WORKERS,
                 on_full: Callable[[AsyncBoltRequest], Awaitable[None]] | None = None) -> None:
        super().__init__(logger)
        self.size, self.workers = size, workers
        self.on_full = on_full
        self.refused = 0
        self._queue: asyncio.Queue[Job] | None = None
        self._tasks: list[asyncio.Task] = []
        self._notices: set[asyncio.Task] = set()
        self._busy = 0  # jobs queued or running
        self._idle = asyncio.Event()
        self._idle.set()
        self._refusing = False

    def start(self, function: Callable[..., Awaitable[None]], request: AsyncBoltRequest) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self.size)
            self._tasks = [asyncio.create_task(self._work(), name=f"slack-work-{i}") for i in range(self.workers)]
        try:
            self._queue.put_nowait((function, request))
        except asyncio.QueueFull:
            self._refuse(request)
            return
        self._refusing = False
        self._busy += 1
        self._idle.clear()

    def _refuse(self, request: AsyncBoltRequest) -> None:
        self.refused += 1
        if not self._refusing:
            log.warning("Slack work queue full (%d waiting): telling users to try again", self.size)
            self._refusing = True
        if self.on_full is not None and len(self._notices) < BUSY_NOTICES:
            task = asyncio.create_task(self.on_full(request))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            function, request = await self._queue.get()
            try:
                await to_runnable_function(internal_func=function, logger=self.logger, request=request)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._busy

    async def idle(self) -> None:
        """Return once nothing is queued or running (tests and shutdown)."""
        await self._idle.wait()
        if self._notices:
            await asyncio.gather(*self._notices, return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._notices, return_exceptions=True)
        self._tasks, self._queue = [], None
