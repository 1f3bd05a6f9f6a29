"""Daily posts queued in bulk (bot/store/daily_sql.py), on both stores: exactly once per channel and
day, safe to run again and from two engines at once, the previous window ended, paused targets kept."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

import bot.community
import bot.store.daily_sql
from bot.engine import QuizEngine
from bot.store import DailyChannelRow
from bot.store.outbox import NewOutboxEntry, TargetState

T = "T1"
CHANNELS = [f"C{n:03d}" for n in range(23)]
DAY1 = datetime(2026, 6, 2, 8, 30, tzinfo=UTC)  # 08:30 UTC on June 2nd: June 1st's 09:00 post is the latest due
DAY2 = datetime(2026, 6, 2, 9, 0, 30, tzinfo=UTC)  # June 2nd's post is due; June 1st's window is still open


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Several chunks and several slices per statement, with a few channels."""
    monkeypatch.setattr(bot.community, "DAILY_QUEUE_CHUNK", 10)
    monkeypatch.setattr(bot.store.daily_sql, "SLICE", 4)


async def add_channels(store, now: float, channels=CHANNELS) -> None:
    async with store.transaction() as tx:
        for channel in channels:
            await tx.set_daily_channel(DailyChannelRow("slack", T, channel, "09:00", "UTC", True), now)


async def rows(store, sql: str) -> list[tuple]:
    async with store.transaction() as tx:
        return [tuple(r) for r in await tx._all(sql)]


async def test_each_channel_gets_one_post_a_day_however_often_it_runs(engine, store, clock):
    clock.set(DAY1)
    await add_channels(store, clock.now().timestamp())
    posts = await engine.queue_daily_posts({"slack"})
    assert sorted(p.channel for p in posts) == CHANNELS and {p.local_date for p in posts} == {"2026-06-01"}
    assert await engine.queue_daily_posts({"slack"}) == []  # run again: nothing new
    assert await engine.queue_daily_posts({"discord"}) == []  # a platform this process cannot post to
    stored = await rows(store, "SELECT p.id, p.channel, p.status, p.closes_at, o.key, o.status, o.expires_at, o.payload "
                               "FROM daily_posts p JOIN outbox o ON o.target = p.channel ORDER BY p.channel")
    assert len(stored) == len(CHANNELS)
    by_id = {p.post_id: p for p in posts}
    for post_id, channel, status, closes, key, entry_status, expires, payload in stored:
        assert (status, key, entry_status, expires) == ("queued", f"daily_post:{channel}:2026-06-01", "pending", closes)
        assert f'"post_id":"{post_id}"' in payload and by_id[post_id].channel == channel
    # June 1st's 09:00 post queued at 08:30 on June 2nd: its window closes an hour later, at 09:30
    assert {r[3] for r in stored} == {DAY1.timestamp() + 3600}


async def test_the_next_days_post_ends_the_open_window_and_picks_an_unseen_question(engine, store, clock):
    clock.set(DAY1)
    await add_channels(store, clock.now().timestamp())
    first = {p.channel: p for p in await engine.queue_daily_posts({"slack"})}
    clock.set(DAY2)
    second = {p.channel: p for p in await engine.queue_daily_posts({"slack"})}
    assert sorted(second) == CHANNELS and {p.local_date for p in second.values()} == {"2026-06-02"}
    assert all(second[c].question_id != first[c].question_id for c in CHANNELS)
    closes = await rows(store, "SELECT local_date, closes_at FROM daily_posts ORDER BY local_date, channel")
    assert {c for d, c in closes if d == "2026-06-01"} == {DAY2.timestamp()}  # ended when the next one was queued
    assert {c for d, c in closes if d == "2026-06-02"} == {datetime(2026, 6, 3, 9, tzinfo=UTC).timestamp()}


async def test_a_whole_pass_through_the_bank_before_a_question_repeats(store, bank, clock):
    engine = QuizEngine(store, bank, clock, rng=random.Random(3))
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    await add_channels(store, clock.now().timestamp(), ["C1"])
    seen = []
    for _ in range(len(bank.questions) + 1):
        [post] = await engine.queue_daily_posts({"slack"})
        seen.append(post.question_id)
        clock.advance(hours=24)
    assert sorted(seen[:-1]) == sorted(bank.questions)  # every question once, then the next pass begins


async def test_two_engines_queueing_at_once_post_each_channel_once(new_store, bank, clock):
    stores = [new_store(), new_store()]
    for s in stores:
        await s.open()
    try:
        clock.set(DAY2)
        await add_channels(stores[0], clock.now().timestamp())
        engines = [QuizEngine(s, bank, clock, rng=random.Random(i)) for i, s in enumerate(stores)]
        queued = await asyncio.gather(*(e.queue_daily_posts({"slack"}) for e in engines))
        assert sorted(p.channel for posts in queued for p in posts) == CHANNELS
        assert await rows(stores[1], "SELECT COUNT(*), COUNT(DISTINCT channel) FROM daily_posts") == [(23, 23)]
        assert await rows(stores[1], "SELECT COUNT(*) FROM outbox WHERE kind = 'daily_post'") == [(23,)]
    finally:
        for s in stores:
            await s.close()


async def test_paused_channels_get_no_post_and_bulk_entries_of_paused_targets_wait(engine, store, clock):
    clock.set(DAY2)
    now = clock.now().timestamp()
    await add_channels(store, now)
    async with store.transaction() as tx:
        await tx.set_target_state(TargetState("slack", T, "C001", "paused", "channel_not_found", "gone", None, now, now))
    posts = await engine.queue_daily_posts({"slack"})
    assert "C001" not in {p.channel for p in posts} and len(posts) == len(CHANNELS) - 1
    async with store.transaction() as tx:  # the bulk insert pauses an entry whose target is paused, as enqueue does
        new = await tx.enqueue_many([NewOutboxEntry("slack", T, "daily_reveal", "k1", "C001", "{}"),
                                     NewOutboxEntry("slack", T, "daily_reveal", "k2", "C002", "{}", not_before=now + 5),
                                     NewOutboxEntry("slack", T, "daily_reveal", "k2", "C002", "{}")], now)
    assert new == 2  # the second k2 is a duplicate key
    assert await rows(store, "SELECT key, status, not_before FROM outbox WHERE key IN ('k1', 'k2') ORDER BY key") == [
        ("k1", "paused", now), ("k2", "pending", now + 5)]


async def test_daily_recent_returns_the_newest_and_every_open_post(engine, store, clock):
    clock.set(datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC))
    await add_channels(store, clock.now().timestamp(), ["C1", "C2"])
    for _ in range(4):
        await engine.queue_daily_posts({"slack"})
        clock.advance(hours=24)
    now = clock.now().timestamp()
    async with store.transaction() as tx:
        await tx._run("UPDATE daily_posts SET closes_at = ? WHERE channel = 'C1' AND local_date = '2026-06-01'",
                      (now + 60,))  # an old post whose window is still open
        recent = await tx.daily_recent([("slack", T, "C1"), ("slack", T, "C2"), ("slack", T, "C3")], 2, now)
    assert sorted(recent) == [("slack", T, "C1"), ("slack", T, "C2")]  # C3 has no posts
    assert [p.local_date for p in recent[("slack", T, "C1")]] == ["2026-06-04", "2026-06-03", "2026-06-01"]
    assert [p.local_date for p in recent[("slack", T, "C2")]] == ["2026-06-04", "2026-06-03"]


async def test_settling_in_bulk_writes_only_claims_still_held_and_marks_posts_posted(engine, store, clock):
    clock.set(DAY2)
    await add_channels(store, clock.now().timestamp(), ["C1", "C2", "C3"])
    posts = {p.channel: p for p in await engine.queue_daily_posts({"slack"})}
    now = clock.now().timestamp()
    async with store.transaction() as tx:
        claimed = {e.target: e for e in await tx.outbox_claim(["slack:daily_post"], now, now + 60, 10)}
    async with store.transaction() as tx:  # C3's lease ran out and another worker took it over
        await tx._run("UPDATE outbox SET lease_until = ? WHERE target = 'C3'", (now + 999,))
    claimed["C1"].status, claimed["C1"].sent_ref = "sent", "C1:1.0"
    claimed["C2"].status, claimed["C2"].not_before, claimed["C2"].last_error = "pending", now + 30, "ratelimited"
    claimed["C3"].status, claimed["C3"].sent_ref = "sent", "C3:9.0"
    async with store.transaction() as tx:
        assert await tx.outbox_settle_many(list(claimed.values()), now) == {claimed["C1"].id, claimed["C2"].id}
        await tx.daily_posts_posted([(posts["C1"].post_id, "C1:1.0"), (posts["C3"].post_id, None)], now)
    assert await rows(store, "SELECT target, status, not_before, last_error, sent_ref, lease_until FROM outbox "
                             "ORDER BY target") == [("C1", "sent", now, None, "C1:1.0", None),
                                                    ("C2", "pending", now + 30, "ratelimited", None, None),
                                                    ("C3", "sending", now, None, None, now + 999)]
    assert await rows(store, "SELECT channel, status, message_ref, posted_at FROM daily_posts ORDER BY channel") == [
        ("C1", "posted", "C1:1.0", now), ("C2", "queued", None, None), ("C3", "posted", None, now)]
