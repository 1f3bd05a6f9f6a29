"""The outbox worker: claims with leases, sends once, retries transient failures, stops on permanent
ones (pausing the target or tenant), drops stale entries, and takes over a dead worker's claims."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime

import pytest

from bot import outbox
from bot.outbox import PAUSE_AFTER, KindSender, OutboxWorker
from bot.platform_errors import Permanent, Transient
from bot.replies import BadgeAwarded, Choice, DailyPost, Player

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def rows(store, sql, params=()):
    async with store.transaction() as tx:
        return await tx._all(sql, params)


async def enqueue(store, key, *, target="C1", tenant="T1", kind="celebration", payload=None, now=None,
                  expires_at=None, platform="slack"):
    async with store.transaction() as tx:
        return await tx.enqueue(platform, tenant, kind, key, target, outbox.dumps(payload or {"key": key}),
                                now if now is not None else T0.timestamp(), expires_at=expires_at)


class Platform:
    """A fake platform: records what was sent; `fail` maps a key to the errors its next sends raise."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail: dict[str, list[Exception]] = {}
        self.delivered: set[str] = set()  # what the platform shows (for find)
        self.finds: list[str] = []

    async def send(self, entry) -> str:
        errors = self.fail.get(entry.key)
        if errors:
            raise errors.pop(0)
        self.sent.append(entry.key)
        self.delivered.add(entry.key)
        return f"ref-{entry.key}"

    async def find(self, entry) -> str | None:
        self.finds.append(entry.key)
        return f"found-{entry.key}" if entry.key in self.delivered else None


def worker_for(store, clock, platform: Platform, **kw) -> OutboxWorker:
    worker = OutboxWorker(store, clock, rng=random.Random(1), **kw)
    sender = KindSender()
    for kind in outbox.KINDS:
        sender.on(kind, platform.send, platform.find)
    worker.register("slack", sender)
    return worker


@pytest.fixture
def fake() -> Platform:
    return Platform()


async def status(store, key):
    [(st, attempts, err)] = await rows(store, "SELECT status, attempts, last_error FROM outbox WHERE key = ?", (key,))
    return st, attempts, err


def test_payloads_round_trip_replies_and_datetimes():
    post = DailyPost("p1", "slack", "T1", "C1", "2026-06-01", "q1", "t", "easy", "Why?", None,
                     (Choice("A", "x"), Choice("B", "y")), T0)
    badge = BadgeAwarded(Player("slack", "T1", "U1", "Ann"), "Technical Debt Mastery", "s1")
    data = outbox.loads(outbox.dumps({"post": post, "badge": badge, "n": [1, 2]}))
    assert data == {"post": post, "badge": badge, "n": (1, 2)}
    with pytest.raises(ValueError, match="unknown reply type 'Nope'"):
        outbox.loads('{"__type__": "Nope"}')


async def test_an_intent_is_written_once_and_sent_once(store, clock, fake):
    clock.set(T0)
    assert await enqueue(store, "celebration:1:b") is True
    assert await enqueue(store, "celebration:1:b") is False  # a replay never enqueues twice
    worker = worker_for(store, clock, fake)
    settled = await worker.run_once()
    assert [(e.key, e.status, e.sent_ref) for e in settled] == [("celebration:1:b", "sent", "ref-celebration:1:b")]
    assert await worker.run_once() == []
    assert fake.sent == ["celebration:1:b"]
    assert await rows(store, "SELECT status, sent_ref, attempts FROM outbox") == [("sent", "ref-celebration:1:b", 1)]


async def test_transient_failures_back_off_with_jitter_and_honour_retry_after(store, clock, fake, caplog):
    clock.set(T0)
    await enqueue(store, "k")
    fake.fail["k"] = [Transient("http_503", "HTML error page"), Transient("http_503", "again"),
                      Transient("ratelimited", "429", retry_after=900)]
    worker = worker_for(store, clock, fake)
    caplog.set_level(logging.INFO)
    await worker.run_once()
    [(st, nb, err, first)] = await rows(store, "SELECT status, not_before, last_error, first_error_at FROM outbox")
    assert (st, err, first) == ("pending", "http_503", T0.timestamp())
    assert 15 <= nb - T0.timestamp() <= 45  # 30 s times a jitter of 0.5..1.5
    await worker.run_once()
    assert fake.sent == []  # not due yet
    clock.advance(46)
    await worker.run_once()
    [(nb2,)] = await rows(store, "SELECT not_before FROM outbox")
    assert 30 <= nb2 - clock.now().timestamp() <= 90  # doubled
    clock.advance(91)
    await worker.run_once()
    [(nb3, err3)] = await rows(store, "SELECT not_before, last_error FROM outbox")
    assert err3 == "ratelimited" and nb3 - clock.now().timestamp() >= 900
    clock.advance(901)
    await worker.run_once()
    assert fake.sent == ["k"] and await status(store, "k") == ("sent", 4, "ratelimited")
    # one line per state change: the first 503, then the switch to the rate limit; not one per retry
    assert caplog.text.count("outbox k: http_503") == 1 and caplog.text.count("outbox k: ratelimited") == 1


async def test_a_permanent_entry_error_fails_only_that_entry(store, clock, fake):
    clock.set(T0)
    await enqueue(store, "a")
    await enqueue(store, "b")
    fake.fail["a"] = [Permanent("message_too_long", "too long", None)]
    await worker_for(store, clock, fake).run_once()
    assert await status(store, "a") == ("failed", 1, "message_too_long") and fake.sent == ["b"]
    assert await rows(store, "SELECT * FROM outbox_targets") == []


async def test_a_missing_permission_is_tried_per_entry_then_pauses_the_target_after_three_days(store, clock, fake):
    clock.set(T0)
    worker = worker_for(store, clock, fake)
    denied = Permanent("not_in_channel", "The bot is not in #quiz.", "Invite the bot: /invite @mldebt", scope="target")
    await enqueue(store, "day1", expires_at=T0.timestamp() + 86400)
    fake.fail["day1"] = [denied]
    await worker.run_once()
    assert await rows(store, "SELECT target, state, reason, fix, since FROM outbox_targets") == [
        ("C1", "failing", "not_in_channel", "Invite the bot: /invite @mldebt", T0.timestamp())]
    clock.advance(PAUSE_AFTER)
    await enqueue(store, "day4", now=clock.now().timestamp())
    await enqueue(store, "other-channel", target="C2", now=clock.now().timestamp())
    await enqueue(store, "day4-reveal", now=clock.now().timestamp() + 60)
    fake.fail["day4"] = [denied]
    await worker.run_once()
    assert await rows(store, "SELECT state, since FROM outbox_targets") == [("paused", T0.timestamp())]
    assert await status(store, "day4-reveal") == ("paused", 0, None)  # waits for the fix, never retried
    assert fake.sent == ["other-channel"]
    # a new intent for a paused target is paused from the start
    await enqueue(store, "day5", now=clock.now().timestamp())
    assert (await status(store, "day5"))[0] == "paused"
    clock.advance(3600)
    await worker.run_once()
    assert fake.sent == ["other-channel"]
    async with store.transaction() as tx:  # the admin fixes it (e.g. `daily set` after a good probe)
        assert await outbox.resume(tx, "slack", "T1", "C1", clock.now().timestamp()) == 3
    await worker.run_once()
    assert sorted(fake.sent) == ["day4", "day4-reveal", "day5", "other-channel"]
    assert await rows(store, "SELECT * FROM outbox_targets") == []


async def test_a_target_that_is_gone_pauses_at_once_and_a_success_clears_a_failing_one(store, clock, fake):
    clock.set(T0)
    worker = worker_for(store, clock, fake)
    await enqueue(store, "x", target="C9")
    await enqueue(store, "y", target="C8")
    fake.fail["x"] = [Permanent("channel_not_found", "gone", "Pick another channel", scope="target", gone=True)]
    fake.fail["y"] = [Permanent("not_in_channel", "not in", "Invite", scope="target")]
    await worker.run_once()
    assert await rows(store, "SELECT target, state FROM outbox_targets ORDER BY target") == [
        ("C8", "failing"), ("C9", "paused")]
    await enqueue(store, "y2", target="C8", now=clock.now().timestamp())
    await worker.run_once()  # the permission came back: the next post goes out and the problem is gone
    assert await rows(store, "SELECT target, state FROM outbox_targets") == [("C9", "paused")]


async def test_a_revoked_token_pauses_the_whole_tenant(store, clock, fake):
    clock.set(T0)
    for key, target in (("a", "C1"), ("b", "C2"), ("c", "C3")):
        await enqueue(store, key, target=target)
    await enqueue(store, "elsewhere", tenant="T2")
    fake.fail["a"] = [Permanent("token_revoked", "revoked", "Reinstall the app", scope="tenant")]
    worker = worker_for(store, clock, fake, concurrency=1)
    await worker.run_once()
    assert await rows(store, "SELECT tenant, target, state FROM outbox_targets") == [("T1", "", "paused")]
    assert await rows(store, "SELECT key, status FROM outbox ORDER BY key") == [
        ("a", "failed"), ("b", "sent"), ("c", "sent"), ("elsewhere", "sent")]
    # the in-flight run had already claimed b and c; what comes later waits
    await enqueue(store, "d", now=clock.now().timestamp())
    await worker.run_once()
    assert (await status(store, "d"))[0] == "paused"


async def test_a_stale_entry_is_dropped_never_sent(store, clock, fake, caplog):
    clock.set(T0)
    await enqueue(store, "daily_post:C1:2026-06-01", expires_at=T0.timestamp() + 3600)
    fake.fail["daily_post:C1:2026-06-01"] = [Transient("http_500", "down")]
    worker = worker_for(store, clock, fake)
    await worker.run_once()
    clock.advance(3600)
    caplog.set_level(logging.INFO)
    settled = await worker.run_once()
    assert [(e.key, e.status) for e in settled] == [("daily_post:C1:2026-06-01", "dropped")]
    assert fake.sent == [] and "dropped: expired" in caplog.text


async def test_a_dead_workers_claim_is_taken_over_after_its_lease_and_reconciled(store, clock, fake):
    clock.set(T0)
    await enqueue(store, "k")
    dead = worker_for(store, clock, fake)
    [claimed] = await dead._claim()  # the process dies right after the platform took the message
    fake.delivered.add(claimed.key)
    alive = worker_for(store, clock, fake)
    assert await alive.run_once() == []  # still leased
    clock.advance(61)
    [entry] = await alive.run_once()
    assert (entry.status, entry.sent_ref, entry.reconcile) == ("sent", "found-k", True)
    assert fake.finds == ["k"] and fake.sent == []  # looked before reposting; not sent twice
    # the dead worker's late outcome no longer counts: its lease was taken over
    claimed.status = "failed"
    async with store.transaction() as tx:
        assert await tx.outbox_settle_many([claimed], clock.now().timestamp()) == set()


async def test_chunks_are_sent_while_the_next_is_claimed_and_two_workers_never_double_send(new_store, clock):
    clock.set(T0)
    stores = [new_store(), new_store()]  # two processes' stores on one database (SKIP LOCKED on PostgreSQL)
    for s in stores:
        await s.open()
    try:
        for i in range(100):
            await enqueue(stores[0], f"e{i:03d}", target=f"C{i}")
        fake = Platform()
        started_before_claim: list[bool] = []
        workers = [worker_for(s, clock, fake, chunk=25, concurrency=4) for s in stores]
        claim = workers[0]._claim

        async def counting_claim(routes=None):
            started_before_claim.append(bool(fake.sent))
            return await claim(routes)

        workers[0]._claim = counting_claim  # type: ignore[method-assign]
        await workers[0].run_once()
        # four full chunks and the empty claim that ends the run; sending began before the last chunk's claim
        assert len(started_before_claim) == 5 and not started_before_claim[0] and any(started_before_claim[1:4])
        for i in range(100, 300):
            await enqueue(stores[0], f"e{i:03d}", target=f"C{i}")
        await asyncio.gather(*(w.run_once() for w in workers))
        assert sorted(fake.sent) == [f"e{i:03d}" for i in range(300)]  # each exactly once
        assert await rows(stores[0], "SELECT DISTINCT status FROM outbox") == [("sent",)]
    finally:
        for s in stores:
            await s.close()


async def test_few_claimed_entries_wait_unsent(store, clock, fake):
    """The next chunk is claimed only when the previous one is almost sent (a short queue between the
    claims and the senders), so few claimed entries wait unsent: what a dead process leaves to be
    looked up, and what another process sharing the work waits for at the end."""
    clock.set(T0)
    for n in range(60):
        await enqueue(store, f"k{n:02d}", target=f"C{n}")
    unsent_at_claim: list[int] = []
    claimed: list[int] = []
    worker = worker_for(store, clock, fake, chunk=10, concurrency=2)
    claim = worker._claim

    async def counted_claim(*args):
        unsent_at_claim.append(sum(claimed) - len(fake.sent))
        batch = await claim(*args)
        claimed.append(len(batch))
        return batch

    worker._claim = counted_claim  # type: ignore[method-assign]
    await worker.run_once()
    assert sorted(fake.sent) == [f"k{n:02d}" for n in range(60)] and claimed == [10] * 6 + [0]
    # at most the queue (2) and the two in flight; a queue as long as the chunk held all 10
    assert unsent_at_claim[0] == 0 and max(unsent_at_claim[1:]) <= 4


async def test_only_kinds_a_process_delivers_are_claimed(store, clock, fake):
    clock.set(T0)
    await enqueue(store, "g", kind="grant")
    worker = OutboxWorker(store, clock)
    sender = KindSender()
    sender.on("celebration", fake.send)
    worker.register("slack", sender)
    assert await worker.run_once() == [] and await status(store, "g") == ("pending", 0, None)


async def test_unexpected_exceptions_are_retried_and_logged_once(store, clock, fake, caplog):
    clock.set(T0)
    await enqueue(store, "k")
    fake.fail["k"] = [RuntimeError("bug"), RuntimeError("bug")]
    worker = worker_for(store, clock, fake)
    await worker.run_once()
    clock.advance(3600)
    await worker.run_once()
    assert await status(store, "k") == ("pending", 2, "internal_error")
    assert caplog.text.count("Traceback") == 1


def test_permanent_scope_is_checked():
    with pytest.raises(ValueError, match="scope must be one of"):
        Permanent("x", scope="planet")
    err = Transient("http_502", retry_after=3)
    assert (err.reason, err.detail, err.fix, err.retry_after) == ("http_502", "http_502", None, 3)
