"""Daily posts in bulk: one shared pause for a 429's Retry-After, then the call again; one HTTP session."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

from adapters.slack.daily import RATE_LIMIT_WAITS, RateGate
from bot.platform_errors import Transient

SET = "daily set <#C0DAILY|ml-daily> 09:00 Europe/Berlin"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


@pytest.fixture
def time_(app) -> FakeTime:
    t = FakeTime()
    app.quiz.daily.gate = RateGate(now=t.now, sleep=t.sleep)
    return t


async def test_a_429_pauses_for_retry_after_and_the_post_goes_out_once(slack, fake, db, scheduler, time_,
                                                                        recorded_sleeps):
    await slack.user("U0ADMIN", "ada").command(SET)
    fake.rate_limit("chat.postMessage", times=2, retry_after=3)
    await scheduler.tick()
    calls = fake.calls_for("chat.postMessage")
    assert [c.status for c in calls] == [429, 429, 200]
    assert time_.sleeps == [3, 3]  # exactly Retry-After, no jitter
    assert recorded_sleeps == []  # slack_sdk's own 429 handler is not in this path
    assert db.rows("SELECT status, message_ref FROM daily_posts") == [("posted", f"C0DAILY:{calls[-1].response['ts']}")]


async def test_the_pause_holds_back_every_daily_call():
    t = 100.0
    sleeps: list[float] = []
    over = asyncio.Event()

    async def parked(seconds: float) -> None:  # parks until the test moves time on
        sleeps.append(seconds)
        await over.wait()

    gate = RateGate(now=lambda: t, sleep=parked)
    gate.limited(5)
    gate.limited(2)  # a shorter Retry-After never shortens a pause already running
    waiters = [asyncio.create_task(gate.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert sleeps == [5, 5, 5] and not any(w.done() for w in waiters)  # all three held back
    t = 105.0
    over.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    await gate.wait()  # open again: passes at once
    assert sleeps == [5, 5, 5]


async def test_after_too_many_429s_the_post_fails_and_its_claim_is_retried_later(slack, fake, db, scheduler, clock,
                                                                                   time_):
    await slack.user("U0ADMIN", "ada").command(SET)
    fake.rate_limit("chat.postMessage", times=RATE_LIMIT_WAITS + 1, retry_after=1)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == RATE_LIMIT_WAITS + 1
    assert db.rows("SELECT status FROM daily_posts") == [("queued",)]
    assert db.rows("SELECT status, last_error FROM outbox") == [("pending", "ratelimited")]
    clock.advance(61)  # after its backoff the outbox tries again: it looks first, finds nothing, posts
    await scheduler.tick()
    assert [c.status for c in fake.calls_for("chat.postMessage")][-1] == 200
    assert db.rows("SELECT status FROM daily_posts") == [("posted",)]


async def test_other_errors_are_not_retried(app, fake, time_):
    poster = app.quiz.daily
    fake.fail("chat.update", "cant_update_message")
    fake.fail("conversations.history", "ratelimited")  # an error body with HTTP 200 is not a 429
    with pytest.raises(Transient, match="ratelimited"):
        await poster._call(lambda: poster.client.conversations_history(channel="C1"), channel="C1", what="test")
    assert len(fake.calls_for("conversations.history")) == 1 and time_.sleeps == []


async def test_only_the_daily_calls_leave_out_slack_sdks_429_handler(app, client):
    daily = app.quiz.daily.client
    assert any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers)
    assert not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in daily.retry_handlers)
    assert len(daily.retry_handlers) == len(client.retry_handlers) - 1  # connection errors still retried
    assert (daily.token, daily.base_url) == (client.token, client.base_url)


async def test_a_ticks_posts_share_one_http_session(slack, fake, app, scheduler, monkeypatch):
    ada = slack.user("U0ADMIN", "ada")
    for n in range(6):
        await ada.command(f"daily set <#C0DAILY{n}|daily-{n}> 09:00 Europe/Berlin")
    opened: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def counted(*args: object, **kwargs: object) -> aiohttp.ClientSession:
        opened.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return opened[-1]

    monkeypatch.setattr(aiohttp, "ClientSession", counted)  # slack_sdk's own sessions are counted too
    posts, _ = await scheduler.daily_tick()
    assert len(posts) == 6 and len(fake.calls_for("chat.postMessage")) == 6
    assert len(opened) == 1 and opened[0].closed  # one session (and its connections) for all six
    assert app.quiz.daily.client.session is None
