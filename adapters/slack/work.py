"""Acks first, always: the work behind Slack's acknowledgements runs from one bounded queue.

bolt acks a request (empty 200) and then starts each lazy listener as its own task, so under a
burst every request's reply work competes with the next acks for the event loop. `WorkQueue`
replaces bolt's lazy-listener runner: `start` (called right after the ack) only appends to a queue,
in arrival order, and a fixed number of workers drain it. The ack path never awaits the work.

Acks also go first in time: the HTTP handler marks each request it is acknowledging
(`acking()`), and a worker starts its next job only when no ack is in flight, so a burst is
acknowledged before the loop spends its time on the burst's replies (each job, once started, still
interleaves with new acks at its awaits, which are short). In HTTP mode workers also take turns
to start jobs, one per turn of the event loop: when the last ack of a moment ends, the waiting
workers would otherwise all run their jobs' first stretch of CPU (~0.6 ms each in bolt) back to
back, while the connections that arrived meanwhile wait to be read. This slows the replies' drain
after a burst (bench/README.md: starting freely once a loop turn passed without a new ack drained
faster but let the acks at 200 slip from 1.2x to 1.5x the bare handler). Socket Mode, which has no
HTTP acks, never takes turns.

In HTTP mode the handler goes further (web.py): once a request is verified and known to be for
this workspace it answers the 200 itself and `defer`s bolt's whole dispatch to this queue, so
bolt's own per-request CPU (its request object, middleware, listener matching) is not on the ack
path either. The lazy listeners that dispatch starts run inside the same job, in order, instead of
being queued a second time.

When the queue is full the request is still acknowledged (the ack happened already), and instead
of dropping the work silently the user is told "busy, try again" through `on_full`, at most
`BUSY_NOTICES` of those in flight at once; one log line per burst of refusals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.asyncio_runner import AsyncioLazyListenerRunner
from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # requests waiting for a worker
WORKERS = 32  # requests worked on at once (each mostly waits on the database or Slack)
BUSY_NOTICES = 64  # "busy" notices in flight at once; beyond that the refusal is only counted

Job = Callable[[], Awaitable[None]]
Lazy = tuple[Callable[..., Awaitable[None]], AsyncBoltRequest]

# set while a deferred dispatch runs: the lazy listeners it starts are collected here, not queued
_STARTED: ContextVar[list[Lazy] | None] = ContextVar("slack_work_started", default=None)


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
        self._acks = 0  # requests being acknowledged right now (HTTP mode)
        self._no_acks = asyncio.Event()
        self._no_acks.set()
        self._turn = asyncio.Lock()
        self._acked = 0  # requests acknowledged so far (HTTP mode)

    def start(self, function: Callable[..., Awaitable[None]], request: AsyncBoltRequest) -> None:
        started = _STARTED.get()
        if started is not None:  # inside a deferred dispatch: its job runs this next
            started.append((function, request))
            return

        async def job() -> None:
            await to_runnable_function(internal_func=function, logger=self.logger, request=request)

        self._put(job, lambda: request)

    def defer(self, dispatch: Callable[[], Awaitable[object]], request: Callable[[], AsyncBoltRequest]) -> None:
        """Queue a whole dispatch of a request already acknowledged; its lazy listeners run in the same job.

        `request` builds the bolt request only if the queue is full (to tell its user "busy")."""
        async def job() -> None:
            started: list[Lazy] = []
            token = _STARTED.set(started)
            try:
                await dispatch()
            finally:
                _STARTED.reset(token)
            for function, lazy_request in started:
                await to_runnable_function(internal_func=function, logger=self.logger, request=lazy_request)

        self._put(job, request)

    def _put(self, job: Job, request: Callable[[], AsyncBoltRequest]) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self.size)
            self._tasks = [asyncio.create_task(self._work(), name=f"slack-work-{i}") for i in range(self.workers)]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._refuse(request)
            return
        self._refusing = False
        self._busy += 1
        self._idle.clear()

    def _refuse(self, request: Callable[[], AsyncBoltRequest]) -> None:
        self.refused += 1
        if not self._refusing:
            log.warning("Slack work queue full (%d waiting): telling users to try again", self.size)
            self._refusing = True
        if self.on_full is not None and len(self._notices) < BUSY_NOTICES:
            try:
                refused = request()
            except Exception as exc:  # bolt could not read the payload: there is no one to tell
                log.warning("could not tell the sender of a refused Slack request (%s)", type(exc).__name__)
                return
            task = asyncio.create_task(self.on_full(refused))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    def acking(self) -> _Acking:
        """Context manager around one request's acknowledgement: work waits while any is in flight."""
        return _Acking(self)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            await self._no_acks.wait()
            job = await self._queue.get()
            if self._acked:  # HTTP mode: one job starts per loop turn, so acks arriving meanwhile are read first
                async with self._turn:
                    await asyncio.sleep(0)
                    await self._no_acks.wait()
            try:
                await job()
            except Exception:  # noqa: BLE001 - one request's failure must not stop a worker
                log.exception("Slack work failed")
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

    async def drain(self, seconds: float) -> int:
        """Shutdown: let queued and running jobs finish (Slack had its 200 for each and will not resend
        them), for at most `seconds`; returns how many were left unfinished, after one log line."""
        if self._busy == 0:
            return 0
        waiting = asyncio.ensure_future(self.idle())
        try:
            await asyncio.wait({waiting}, timeout=seconds)
        finally:
            waiting.cancel()
        if self._busy:
            log.warning("stopping with %d acknowledged Slack requests not worked off (waited %.0f s)",
                        self._busy, seconds)
        return self._busy

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._notices, return_exceptions=True)
        self._tasks, self._queue = [], None


class _Acking:
    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue

    def __enter__(self) -> None:
        self.queue._acks += 1
        self.queue._acked += 1
        self.queue._no_acks.clear()

    def __exit__(self, *exc: object) -> None:
        self.queue._acks -= 1
        if self.queue._acks == 0:
            self.queue._no_acks.set()
