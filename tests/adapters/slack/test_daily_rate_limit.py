"""Daily posts in bulk: the lean posting path against the loopback fake Slack (bodies, error classes),
pacing just under the configured rate, and a 429 that pauses only its route; one HTTP session."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import aiohttp
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

from adapters.slack.daily import RATE_LIMIT_WAITS, SlackDailyPoster
from adapters.slack.pacing import SHARE, Pacer, route_of
from adapters.slack.web import make_client
from bot.platform_errors import Permanent, Transient
from bot.replies import Choice, DailyPost

SET = "daily set <#C0DAILY|ml-daily> 09:00 Europe/Berlin"
POST = "chat.postMessage"


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


class ParkedTime:
    """A monotonic clock that sleepers cannot move: each sleep parks until the test moves time on."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []
        self.moved = asyncio.Condition()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        until = self.t + seconds
        async with self.moved:
            await self.moved.wait_for(lambda: self.t >= until)

    async def move_to(self, t: float) -> None:
        self.t = t
        async with self.moved:
            self.moved.notify_all()
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
def time_(app) -> FakeTime:
    t = FakeTime()
    app.quiz.daily.pacer = Pacer(now=t.now, sleep=t.sleep)
    return t


def daily_post(post_id: str = "p1", channel: str = "C0DAILY", tenant: str = "T0TEST") -> DailyPost:
    return DailyPost(post_id, "slack", tenant, channel, "2026-01-05", "q1", "data", "easy", 'Say "hi" & <go>',
                     None, (Choice("A", "one"), Choice("B", "two")), datetime(2026, 1, 6, 9, tzinfo=UTC))


# -- the lean path against the fake Slack ------------------------------------------------------------

async def test_the_lean_body_is_the_rendered_message_with_only_id_and_channel_spliced_in(app, fake):
    poster = app.quiz.daily
    first = daily_post("p1", "C0ONE")
    second = dataclasses.replace(daily_post("p2", "C0TWO"), choices=(Choice("A", "two & <b>"), Choice("B", 'one "1"')))
    ref1, ref2 = await poster.post(first), await poster.post(second)
    one, two = fake.calls_for(POST)
    assert ref1 == f"C0ONE:{one.response['ts']}" and ref2 == f"C0TWO:{two.response['ts']}"
    for call, post in ((one, first), (two, second)):
        assert call.token == app.client.token
        assert call.args == {"channel": post.channel, **app.quiz.render.daily_post(post),
                             "metadata": {"event_type": "mldebt_daily_post", "event_payload": {"post_id": post.post_id}}}
    assert len(poster._templates) == 1  # one serialisation for both: same question and window, any order


async def test_a_post_answer_in_another_shape_is_read_in_full(app, fake):
    """The answer's channel and ts are read from its start when Slack's order holds (ok, channel, ts);
    an answer in any other order, or with the channel Slack normalised, is parsed in full."""
    post_message = fake._m_chat_postMessage

    def reordered(a: dict):
        body, headers = post_message(a)
        return {"message": body["message"], "ts": body["ts"], "channel": "C0MOVED", "ok": True}, headers

    ref1 = await app.quiz.daily.post(daily_post("p1", "C0ONE"))
    fake._m_chat_postMessage = reordered
    ref2 = await app.quiz.daily.post(daily_post("p2", "C0TWO"))
    one, two = fake.calls_for(POST)
    assert ref1 == f"C0ONE:{one.response['ts']}"
    assert ref2 == f"C0MOVED:{two.response['ts']}" and two.response["ts"] != one.response["ts"]


@pytest.mark.parametrize(("status", "body", "ctype", "reason"), [
    (502, "<html><body>Bad Gateway</body></html>", "text/html", "http_502"),
    (503, "", "text/plain", "http_503"),
    (500, "upstream failed", "text/plain", "http_500"),
])
async def test_lean_path_non_json_answers_are_transient(app, fake, time_, status, body, ctype, reason):
    fake.fail_http(POST, status, body=body, content_type=ctype)
    with pytest.raises(Transient) as caught:
        await app.quiz.daily.post(daily_post())
    assert caught.value.reason == reason and time_.sleeps == []


async def test_lean_path_error_codes_keep_their_class_scope_and_fix(app, fake, time_):
    fake.fail(POST, "not_in_channel")
    with pytest.raises(Permanent) as caught:
        await app.quiz.daily.post(daily_post())
    assert (caught.value.reason, caught.value.scope) == ("not_in_channel", "target")
    assert caught.value.fix == "Invite the bot to <#C0DAILY>: type /invite @mldebt there."
    fake.fail(POST, "internal_error")
    with pytest.raises(Transient, match="internal_error"):
        await app.quiz.daily.post(daily_post())
    fake.fail(POST, "ratelimited")  # an error body with HTTP 200 is not a 429: no pause, classified
    with pytest.raises(Transient, match="ratelimited"):
        await app.quiz.daily.post(daily_post())
    assert time_.sleeps == [] and len(fake.calls_for(POST)) == 3


async def test_each_workspace_posts_with_its_own_token(fake, app):
    clients = {"T0ONE": make_client("xoxb-one", base_url=fake.base_url),
               "T0TWO": make_client("xoxb-two", base_url=fake.base_url)}

    async def client_for(team: str):
        return clients[team]

    poster = SlackDailyPoster(app.client, app.quiz.render, client_for=client_for)
    async with poster.batch():
        await poster.post(daily_post("p1", "C1", tenant="T0ONE"))
        await poster.post(daily_post("p2", "C2", tenant="T0TWO"))
    assert [(c.token, c.args["channel"]) for c in fake.calls_for(POST)] == [("xoxb-one", "C1"), ("xoxb-two", "C2")]


# -- a 429 through the scheduler -----------------------------------------------------------------------

async def test_a_429_pauses_for_retry_after_and_the_post_goes_out_once(slack, fake, db, scheduler, time_,
                                                                        recorded_sleeps):
    await slack.user("U0ADMIN", "ada").command(SET)
    fake.rate_limit(POST, times=2, retry_after=3)
    await scheduler.tick()
    calls = fake.calls_for(POST)
    assert [c.status for c in calls] == [429, 429, 200]
    assert time_.sleeps == [3, 3]  # exactly Retry-After, no jitter
    assert recorded_sleeps == []  # slack_sdk's own 429 handler is not in this path
    assert db.rows("SELECT status, message_ref FROM daily_posts") == [("posted", f"C0DAILY:{calls[-1].response['ts']}")]


async def test_after_too_many_429s_the_post_fails_and_its_claim_is_retried_later(slack, fake, db, scheduler, clock,
                                                                                   time_):
    await slack.user("U0ADMIN", "ada").command(SET)
    fake.rate_limit(POST, times=RATE_LIMIT_WAITS + 1, retry_after=1)
    await scheduler.tick()
    assert len(fake.calls_for(POST)) == RATE_LIMIT_WAITS + 1
    assert db.rows("SELECT status FROM daily_posts") == [("queued",)]
    assert db.rows("SELECT status, last_error FROM outbox") == [("pending", "ratelimited")]
    clock.advance(61)  # after its backoff the outbox tries again: it looks first, finds nothing, posts
    await scheduler.tick()
    assert [c.status for c in fake.calls_for(POST)][-1] == 200
    assert db.rows("SELECT status FROM daily_posts") == [("posted",)]


async def test_other_errors_are_not_retried(app, fake, time_):
    poster = app.quiz.daily
    fake.fail("conversations.history", "ratelimited")  # an error body with HTTP 200 is not a 429
    with pytest.raises(Transient, match="ratelimited"):
        await poster._call(lambda: poster.client.conversations_history(channel="C1"),
                           route=route_of("T0TEST", "conversations.history"), channel="C1", what="test")
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
    assert len(posts) == 6 and len(fake.calls_for(POST)) == 6
    assert len(opened) == 1 and opened[0].closed  # one session (and its connections) for all six
    assert app.quiz.daily.client.session is None and app.quiz.daily._session is None


# -- the pacer, on a fake clock --------------------------------------------------------------------

async def test_pacing_holds_each_workspace_just_under_its_rate():
    t = FakeTime()
    pacer = Pacer({POST: 10.0}, now=t.now, sleep=t.sleep)
    for n in range(30):  # one second's worth (9.5 calls) goes at once, then one call per 1 / 9.5 s
        await pacer.acquire(route_of("T1", POST, f"C{n}"))
    assert t.t - 100.0 == pytest.approx((30 - 10 * SHARE) / (10 * SHARE))
    sleeps_before = len(t.sleeps)
    await pacer.acquire(route_of("T2", POST, "C0"))  # another workspace has its own bucket
    await pacer.acquire(route_of("T1", "conversations.history"))  # a method without a rate is not paced
    assert len(t.sleeps) == sleeps_before


async def test_waiters_reserve_their_slots_instead_of_stampeding():
    t = ParkedTime()
    pacer = Pacer({POST: 2.0 / SHARE}, now=t.now, sleep=t.sleep)  # 2 calls/s, a bucket of 2
    gone: list[int] = []

    async def call(n: int) -> None:
        await pacer.acquire(route_of("T1", POST, f"C{n}"))
        gone.append(n)

    tasks = [asyncio.create_task(call(n)) for n in range(6)]
    await t.move_to(100.0)
    assert gone == [0, 1] and t.sleeps == pytest.approx([0.5, 1.0, 1.5, 2.0])  # one sleep each, in turn
    await t.move_to(101.0)
    assert gone == [0, 1, 2, 3]
    await t.move_to(102.0)
    await asyncio.gather(*tasks)
    assert gone == list(range(6)) and len(t.sleeps) == 4


async def test_a_workspace_429_pauses_that_method_in_that_workspace_only():
    t = ParkedTime()
    pacer = Pacer(now=t.now, sleep=t.sleep)
    since = await pacer.acquire(route_of("T1", POST, "C1"))
    assert since is None  # nothing posted to C1 within the last second: the workspace's limit
    assert pacer.limited(route_of("T1", POST, "C1"), 5, since) == ("T1", POST)
    held = [asyncio.create_task(pacer.acquire(route_of("T1", POST, c))) for c in ("C1", "C2")]
    await asyncio.sleep(0)
    await pacer.acquire(route_of("T2", POST, "C1"))  # another workspace keeps sending
    await pacer.acquire(route_of("T1", "chat.update"))  # and so does another method
    assert not any(h.done() for h in held) and t.sleeps == [5, 5]
    pacer.limited(route_of("T1", POST, "C9"), 2, None)  # a shorter Retry-After never shortens a pause
    await t.move_to(105.0)
    await asyncio.wait_for(asyncio.gather(*held), 1)


async def test_a_channel_429_pauses_only_that_channel():
    t = ParkedTime()
    pacer = Pacer(now=t.now, sleep=t.sleep)
    await pacer.acquire(route_of("T1", POST, "C1"))
    await t.move_to(100.4)
    since = await pacer.acquire(route_of("T1", POST, "C1"))  # C1 again 0.4 s later: its own limit
    assert since == pytest.approx(0.4)
    assert pacer.limited(route_of("T1", POST, "C1"), 3, since) == ("T1", POST, "C1")
    held = asyncio.create_task(pacer.acquire(route_of("T1", POST, "C1")))
    await asyncio.sleep(0)
    for channel in ("C2", "C3"):  # the other channels of the workspace keep sending
        await pacer.acquire(route_of("T1", POST, channel))
    assert not held.done() and t.sleeps == [pytest.approx(3)]
    await t.move_to(103.4)
    await asyncio.wait_for(held, 1)


async def test_one_channel_rate_limited_while_the_others_post(app, fake, time_):
    """Through the fake: a 429 for a channel posted to a moment ago holds back that channel alone."""
    poster = app.quiz.daily
    async with poster.batch():
        await poster.post(daily_post("p1", "C1"))
        fake.rate_limit(POST, times=1, retry_after=2)
        await poster.post(daily_post("p2", "C1"))  # C1 again at once: its own limit, it waits 2 s
        paused_at = dict(poster.pacer.paused)
        await poster.post(daily_post("p3", "C2"))
    assert paused_at == {("T0TEST", POST, "C1"): pytest.approx(102.0)} and time_.sleeps == [2]
    assert [(c.args["channel"], c.status) for c in fake.calls_for(POST)] == [
        ("C1", 200), ("C1", 429), ("C1", 200), ("C2", 200)]
    assert fake.calls_for(POST)[-1].args["metadata"]["event_payload"] == {"post_id": "p3"}


async def test_slack_post_rate_paces_the_apps_daily_posts(settings, engine, scheduler, client):
    from adapters.slack.app import build_app

    paced = build_app(dataclasses.replace(settings, slack_post_rate=50.0), engine, scheduler=scheduler, client=client)
    assert paced.quiz.daily.pacer.rates == {POST: 50.0}


async def test_a_pause_that_starts_while_a_call_waits_its_turn_holds_it_too():
    t = ParkedTime()
    pacer = Pacer({POST: 1.0 / SHARE}, now=t.now, sleep=t.sleep)  # one call a second
    await pacer.acquire(route_of("T1", POST, "C1"))
    waiting = asyncio.create_task(pacer.acquire(route_of("T1", POST, "C2")))  # its turn comes at 101
    await asyncio.sleep(0)
    pacer.limited(route_of("T1", POST, "C3"), 5, None)  # meanwhile a 429 pauses the workspace until 105
    await t.move_to(101.0)
    assert not waiting.done() and t.sleeps == [pytest.approx(1.0), pytest.approx(4.0)]
    await t.move_to(105.0)
    await asyncio.wait_for(waiting, 1)


def test_a_rate_must_be_positive():
    with pytest.raises(ValueError, match="must be above 0"):
        Pacer({POST: 0})
