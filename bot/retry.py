"""Whole-call retry for engine calls whose transaction lost a race with another transaction."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import errors
from .store.base import WriteConflict

MAX_RUNS = 8  # a call that keeps colliding with other transactions gives up as Busy after this many runs
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def retried(call: F) -> F:
    """Run the whole call again when its transaction lost a race (errors.Busy caused by a
    WriteConflict: a guarded write found its row changed, a duplicate answer to replay instead,
    PostgreSQL's serialization failure or deadlock).

    Safe because a call's body reads and writes only in its transaction, which rolled back whole;
    the in-process state it touches is a cache of committed rows or is set after the commit.
    """
    @functools.wraps(call)
    async def run(*args: Any, **kwargs: Any) -> Any:
        attempt = 1
        while True:
            try:
                return await call(*args, **kwargs)
            except errors.Busy as exc:
                if not isinstance(exc.__cause__, WriteConflict) or attempt == MAX_RUNS:
                    raise
            await asyncio.sleep(random.uniform(0, 0.001 * 2 ** attempt))  # spread the colliders apart
            attempt += 1
    return run  # type: ignore[return-value]
