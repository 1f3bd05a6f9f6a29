import asyncio
from datetime import timedelta

import pytest

from bot.clock import SystemClock


async def test_a_cancel_is_never_lost_when_the_wake_event_fires_in_the_same_turn():
    """A sleeper woken and cancelled in one loop turn must end cancelled (the scheduler's shutdown)."""
    clock = SystemClock()
    for _ in range(20):
        wake = asyncio.Event()
        task = asyncio.create_task(clock.sleep_until(clock.now() + timedelta(hours=1), wake))
        for _ in range(3):
            await asyncio.sleep(0)  # the sleeper is now waiting on the event
        wake.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
