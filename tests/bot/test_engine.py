from __future__ import annotations

import asyncio

import pytest

from bot import errors
from bot.replies import (
    ActiveSession,
    BadgeAwarded,
    Feedback,
    Hint,
    QuestionCard,
    SessionStarted,
    Skipped,
    Summary,
    TimeUp,
)
from bot.scoring import BASE_POINTS
from tests.fakes.bank import correct_letter, wrong_letter


async def rows(store, sql, params=()):
    async with store.transaction() as tx:
        await tx.apply_scores()  # aggregates as of now (PostgreSQL folds them in the background)
        return await tx._all(sql, params)


def card_of(replies) -> QuestionCard:
    cards = [r for r in replies if isinstance(r, QuestionCard)]
    assert len(cards) == 1, replies
    return cards[0]


async def play_correct(engine, bank, player, card, n=5, event_prefix="e"):
    replies = []
    for i in range(n):
        replies = await engine.answer(player, card.session_id, card.question_id, correct_letter(bank, card),
                                      f"{event_prefix}{i}")
        assert isinstance(replies[0], Feedback) and replies[0].correct
        if i < n - 1:
            card = card_of(replies)
    return replies


async def test_full_challenge_awards_badge_once(engine, bank, alice, store):
    started = await engine.start(alice, "challenge")
    assert isinstance(started[0], SessionStarted) and started[0].total == 5
    card = card_of(started)
    assert card.progress == "1/5" and card.deadline is not None and card.time_limit == 120
    assert {c.type for c in [bank.question(q) for s in bank.challenge_sets for q in s.question_ids]} >= {card.type}
    replies = await play_correct(engine, bank, alice, card)
    summary = next(r for r in replies if isinstance(r, Summary))
    assert (summary.correct, summary.total, summary.status) == (5, 5, "finished")
    expected = sum(BASE_POINTS[it.difficulty] for it in summary.items)
    assert summary.points == expected
    badge = [r for r in replies if isinstance(r, BadgeAwarded)]
    assert len(badge) == 1 and badge[0].badge == "Technical Debt Mastery" and not badge[0].private
    assert await rows(store, "SELECT badge FROM badges") == [("Technical Debt Mastery",)]

    # a second perfect challenge does not award the badge again
    card = card_of(await engine.start(alice, "challenge"))
    replies = await play_correct(engine, bank, alice, card, event_prefix="second")
    assert not [r for r in replies if isinstance(r, BadgeAwarded)]
    assert await rows(store, "SELECT COUNT(*) FROM badges") == [(1,)]


async def test_questions_rise_in_difficulty_one_of_each_type(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    seen = []
    for i in range(5):
        seen.append(card)
        replies = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), f"x{i}")
        if i < 4:
            card = card_of(replies)
    assert sorted(c.type for c in seen) == sorted(["conceptual", "command_output", "workflow", "troubleshoot",
                                                    "best_practice"])
    assert [c.difficulty for c in seen] == ["intermediate", "intermediate", "advanced", "advanced", "expert"]
    assert seen[-1].time_limit == 180


async def test_wrong_then_right_scores_half(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    first = await engine.answer(alice, card.session_id, card.question_id, wrong_letter(bank, card), "w1")
    assert len(first) == 1
    fb = first[0]
    assert isinstance(fb, Feedback) and not fb.correct and not fb.final and fb.attempts_left == 1
    assert fb.answer_letter is None and fb.explanation is None  # nothing revealed before the last attempt
    second = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "w2")
    assert second[0].correct and second[0].points == BASE_POINTS[card.difficulty] // 2
    assert second[0].explanation == bank.question(card.question_id).explanation
    assert card_of(second).progress == "2/5"
    assert await rows(store, "SELECT attempt, outcome FROM answers ORDER BY attempt") == [(1, "wrong"), (2, "correct")]


async def test_two_wrong_answers_reveal_and_move_on(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    first = wrong_letter(bank, card)
    await engine.answer(alice, card.session_id, card.question_id, first, "a")
    replies = await engine.answer(alice, card.session_id, card.question_id, wrong_letter(bank, card, but=first), "b")
    fb = replies[0]
    assert fb.final and not fb.correct and fb.answer_letter == correct_letter(bank, card)
    assert fb.points == 0
    assert card_of(replies).position == 2
    with pytest.raises(errors.QuestionClosed):
        await engine.answer(alice, card.session_id, card.question_id, "A", "c")


async def test_hint_costs_a_quarter(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    hint = await engine.hint(alice, card.session_id, card.question_id)
    assert isinstance(hint[0], Hint) and hint[0].hint == bank.question(card.question_id).hint and hint[0].costs_points
    replies = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "h1")
    assert replies[0].points == round(BASE_POINTS[card.difficulty] * 0.75)
    assert card_of(replies).hint_used is False


async def test_late_answer_counts_as_timeout(engine, bank, alice, clock, store):
    card = card_of(await engine.start(alice, "challenge"))
    clock.advance(card.time_limit)  # exactly at the deadline is late
    replies = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "late")
    assert isinstance(replies[0], TimeUp) and replies[0].answer_letter == correct_letter(bank, card)
    assert card_of(replies).position == 2
    assert await rows(store, "SELECT outcome, points FROM answers") == [("late", 0)]
    assert await rows(store, "SELECT status FROM session_items WHERE position = 0") == [("timeout",)]


async def test_expire_due_closes_and_reports(engine, bank, alice, clock):
    card = card_of(await engine.start(alice, "challenge", route="chan-1"))
    assert await engine.expire_due() == []
    clock.advance(card.time_limit - 1)
    assert await engine.expire_due() == []
    clock.advance(1)
    deliveries = await engine.expire_due()
    assert len(deliveries) == 1
    d = deliveries[0]
    assert d.player.user == "alice" and d.route == "chan-1"
    assert isinstance(d.replies[0], TimeUp) and isinstance(d.replies[1], QuestionCard)
    assert await engine.expire_due() == []  # closed once
    with pytest.raises(errors.QuestionClosed):
        await engine.answer(alice, card.session_id, card.question_id, "A", "after")


async def test_no_badge_after_a_timeout(engine, bank, alice, clock):
    card = card_of(await engine.start(alice, "challenge"))
    clock.advance(card.time_limit)
    card = card_of([r for d in await engine.expire_due() for r in d.replies])
    replies = await play_correct(engine, bank, alice, card, n=4)
    summary = next(r for r in replies if isinstance(r, Summary))
    assert summary.correct == 4 and not [r for r in replies if isinstance(r, BadgeAwarded)]


async def test_start_while_active_offers_resume(engine, bank, alice, store):
    first = card_of(await engine.start(alice, "challenge"))
    again = await engine.start(alice, "test")
    assert isinstance(again[0], ActiveSession) and again[0].mode == "challenge" and again[0].requested_mode == "test"
    assert card_of(again) == first
    assert await rows(store, "SELECT COUNT(*) FROM sessions") == [(1,)]
    resumed = await engine.resume(alice)
    assert resumed == [first]


async def test_duplicate_event_recorded_once_same_reply(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    letter = wrong_letter(bank, card)
    one = await engine.answer(alice, card.session_id, card.question_id, letter, "evt-1")
    two = await engine.answer(alice, card.session_id, card.question_id, letter, "evt-1")
    assert one == two
    assert await rows(store, "SELECT COUNT(*) FROM answers") == [(1,)]


async def test_ten_concurrent_identical_answers_one_row(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    letter = correct_letter(bank, card)
    results = await asyncio.gather(*[
        engine.answer(alice, card.session_id, card.question_id, letter, "same-click") for _ in range(10)])
    assert all(r[0] == results[0][0] for r in results)
    assert all(r[0].correct for r in results)
    assert await rows(store, "SELECT COUNT(*) FROM answers") == [(1,)]
    assert await rows(store, "SELECT points FROM player_totals") == [(BASE_POINTS[card.difficulty],)]


async def test_other_player_cannot_answer(engine, bank, alice, bob, store):
    card = card_of(await engine.start(alice, "challenge"))
    with pytest.raises(errors.NotYourSession) as exc:
        await engine.answer(bob, card.session_id, card.question_id, "A", "bob-1")
    assert exc.value.message == "This is not your challenge. Start your own with `/mldebt challenge`."
    with pytest.raises(errors.NotYourSession):
        await engine.hint(bob, card.session_id, card.question_id)
    assert await rows(store, "SELECT COUNT(*) FROM answers") == [(0,)]
    assert await rows(store, "SELECT hint_used FROM session_items WHERE position = 0") == [(0,)]


async def test_unknown_choice_and_unknown_session(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    with pytest.raises(errors.UnknownChoice):
        await engine.answer(alice, card.session_id, card.question_id, "E", "u1")
    with pytest.raises(errors.SessionNotFound):
        await engine.answer(alice, "nope", card.question_id, "A", "u2")
    with pytest.raises(errors.QuestionClosed):
        await engine.answer(alice, card.session_id, "alpha-99", "A", "u3")


async def test_practice_is_untimed_with_worked_solution(engine, bank, alice):
    replies = await engine.start(alice, "practice", topic="alpha")
    card = card_of(replies)
    assert card.deadline is None and card.mode == "practice" and card.topic == "alpha"
    wrong = wrong_letter(bank, card)
    await engine.answer(alice, card.session_id, card.question_id, wrong, "p1")
    fb = (await engine.answer(alice, card.session_id, card.question_id, wrong_letter(bank, card, but=wrong), "p2"))[0]
    q = bank.question(card.question_id)
    assert fb.final and fb.points == 0
    assert fb.solution is not None and fb.solution.steps == q.solution.steps
    assert fb.solution.mistake is not None and fb.solution.mistake.startswith("This pick")


async def test_practice_filters(engine, alice):
    with pytest.raises(errors.BadRequest) as exc:
        await engine.start(alice, "practice", topic="gamma")
    assert exc.value.message == "Unknown topic 'gamma'. Topics: alpha, beta."
    with pytest.raises(errors.BadRequest) as exc:
        await engine.start(alice, "practice", difficulty="impossible")
    assert exc.value.message.startswith("Unknown difficulty 'impossible'")
    card = card_of(await engine.start(alice, "practice", difficulty="easy"))
    assert card.difficulty == "easy"


async def test_test_mode_ten_across_bands_with_report(engine, bank, alice):
    replies = await engine.start(alice, "test")
    card = card_of(replies)
    assert replies[0].total == 10
    diffs = []
    for i in range(10):
        diffs.append(card.difficulty)
        assert card.attempts_left == 1
        letter = correct_letter(bank, card) if i % 2 == 0 else wrong_letter(bank, card)
        replies = await engine.answer(alice, card.session_id, card.question_id, letter, f"t{i}")
        assert replies[0].final
        if i < 9:
            card = card_of(replies)
    summary = next(r for r in replies if isinstance(r, Summary))
    assert summary.correct == 5 and summary.total == 10
    bands = {"easy": 0, "medium": 0, "hard": 0}
    for d in diffs:
        bands["easy" if d == "easy" else "medium" if d in ("medium", "intermediate") else "hard"] += 1
    assert bands == {"easy": 3, "medium": 4, "hard": 3}
    assert sum(b.total for b in summary.by_topic) == 10
    assert sum(b.total for b in summary.by_difficulty) == 10


async def test_skip_and_quit(engine, bank, alice, store):
    card_of(await engine.start(alice, "challenge"))
    replies = await engine.skip(alice)
    assert isinstance(replies[0], Skipped) and card_of(replies).position == 2
    summary = (await engine.quit(alice))[0]
    assert isinstance(summary, Summary) and summary.status == "abandoned"
    assert [i.outcome for i in summary.items][:3] == ["skipped", "quit", "unanswered"]  # quitting is no skip
    with pytest.raises(errors.NoActiveSession):
        await engine.resume(alice)


async def test_retry_gets_a_set_not_failed_before(engine, bank, alice):
    first = card_of(await engine.start(alice, "challenge"))
    await engine.quit(alice)
    first_set = next(s.id for s in bank.challenge_sets if first.question_id in s.question_ids)
    second = card_of(await engine.start(alice, "challenge"))
    assert second.question_id not in next(s for s in bank.challenge_sets if s.id == first_set).question_ids
    await engine.quit(alice)
    # every set failed once: any set again, rather than no challenge at all
    third = card_of(await engine.start(alice, "challenge"))
    assert third.position == 1


async def test_concurrent_starts_make_one_session(engine, alice, store):
    await asyncio.gather(*[engine.start(alice, "challenge") for _ in range(20)])
    assert await rows(store, "SELECT COUNT(*) FROM sessions") == [(1,)]


async def test_stats(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    await play_correct(engine, bank, alice, card)
    stats = (await engine.stats(alice))[0]
    assert stats.points > 0 and stats.answered == 5 and stats.correct == 5
    assert stats.badges == ("Technical Debt Mastery",)
    assert stats.challenges_played == 1
    assert sum(b.total for b in stats.by_topic) == 5


async def test_learn_shows_concept_card(engine):
    card = engine.learn("alpha")[0]
    assert card.title == "Alpha" and card.practice_count == 5
    with pytest.raises(errors.BadRequest):
        engine.learn("gamma")
    topics = engine.learn()[0]
    assert [t.id for t in topics.topics] == ["alpha", "beta"]


async def test_platform_grant_pending_until_the_outbox_delivers_it(engine, bank, store, clock):
    from bot.commands import handle_text
    from bot.outbox import KindSender, OutboxWorker
    from bot.platform_errors import Permanent
    from bot.replies import AdminStatus, Player, Rejected

    dana = Player("discord", "G1", "U9", "Dana")
    engine.grant_platforms.add("discord")
    card = card_of(await engine.start(dana, "challenge"))
    await play_correct(engine, bank, dana, card)
    [pending] = await engine.pending_grants("discord", "G1")
    assert pending.player.user == "U9" and pending.badge == "Technical Debt Mastery" and pending.attempts == 0

    refused = True

    async def grant(entry):
        if refused:
            raise Permanent("missing_permission", "missing Manage Roles", "turn on Manage Roles", scope="entry")
        return "role-1"

    sender = KindSender()
    sender.on("grant", grant)
    worker = OutboxWorker(store, clock)
    worker.register("discord", sender)
    await worker.run_once()
    status = (await handle_text(engine, dana, "admin status", is_admin=True))[0]
    assert isinstance(status, AdminStatus) and status.celebrate is True
    assert [(g.reason, g.attempts) for g in status.pending] == [("missing_permission: turn on Manage Roles", 1)]
    refused = False
    await engine.retry_deliveries(dana, celebrate_default=True)
    await worker.run_once()
    assert await engine.pending_grants("discord") == []
    denied = await handle_text(engine, dana, "admin celebrate off")
    assert denied == [Rejected("Only workspace or server admins can use `admin` commands.", "NotAdmin")]
    off = (await handle_text(engine, dana, "admin celebrate off", is_admin=True))[0]
    assert off.celebrate is False
    assert await engine.tenant_flag("discord", "G1", "celebrate", True) is False
    assert await engine.tenant_flag("discord", "G2", "celebrate", True) is True


async def test_console_badge_needs_no_grant(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    await play_correct(engine, bank, alice, card)
    assert await engine.pending_grants("console") == []


async def test_set_route_only_for_the_open_question(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    assert await engine.set_route(card.session_id, card.question_id, "route-1") is True
    assert await rows(store, "SELECT route FROM sessions") == [("route-1",)]
    await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "sr1")
    assert await engine.set_route(card.session_id, card.question_id, "stale") is False
    assert await rows(store, "SELECT route FROM sessions") == [("route-1",)]


async def test_a_duplicate_found_by_the_insert_is_replayed(engine, bank, alice, store, monkeypatch):
    """A store whose read can miss a concurrent duplicate (several processes without a write lock)
    still stores one answer: the insert's unique key decides and the call replays the stored one."""
    card = card_of(await engine.start(alice, "challenge"))
    first = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "ev1")
    real = type(await _tx_of(store)).answer_context
    misses = []

    async def miss_once(self, event_key, session_id):
        ctx = await real(self, event_key, session_id)
        if not misses:
            misses.append(event_key)
            # as if read before the other process committed: no prior answer, the question still open
            ctx.prior, ctx.session.position = None, 0
            ctx.item, ctx.next_item = await self.get_item(session_id, 0), await self.get_item(session_id, 1)
            ctx.item.status, ctx.item.attempts_used, ctx.next_item.status = "open", 0, "pending"
        return ctx

    monkeypatch.setattr(type(await _tx_of(store)), "answer_context", miss_once)
    again = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "ev1")
    assert misses == ["console:ev1"] and again == first
    assert await rows(store, "SELECT event_key FROM answers") == [("console:ev1",)]


async def _tx_of(store):
    async with store.transaction() as tx:
        return tx


async def test_acknowledged_means_committed_for_every_caller_of_a_batch(engine, bank, store, new_store):
    """Forty players answer at once (their answers share COMMITs): when a call returns, its answer is
    already visible to another connection, and the scores read right after include it."""
    from bot.replies import Player

    players = [Player("console", "local", f"p{i}", f"P{i}") for i in range(40)]
    cards = [card_of(await engine.start(p, "challenge")) for p in players]
    async with new_store() as other:

        async def answer(p, card) -> bool:
            await engine.answer(p, card.session_id, card.question_id, correct_letter(bank, card), f"b-{p.user}")
            async with other.transaction() as tx:
                return await tx.find_answer(f"console:b-{p.user}") is not None

        seen = await asyncio.gather(*(answer(p, c) for p, c in zip(players, cards, strict=True)))
    assert all(seen)
    [board] = await engine.leaderboard(players[0], "players", "all", limit=50)
    assert len(board.entries) == 40 and {e.points for e in board.entries} == {
        BASE_POINTS[bank.question(c.question_id).difficulty] for c in cards}


@pytest.mark.parametrize("zone_name", ["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kathmandu"])
def test_period_keys_hold_over_their_window(zone_name):
    """The engine reuses a week/month key pair within the window period_keys_window gives; every
    instant of the window (sampled each 50 minutes over a year, across daylight-saving changes,
    including zones that switch at midnight) has exactly those keys."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from bot.periods import period_keys, period_keys_window

    tz = ZoneInfo(zone_name)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    windows = 0
    while t < datetime(2027, 1, 1, tzinfo=UTC):
        keys, start, end = period_keys_window(t, tz)
        assert end - start >= 20 * 3600, (zone_name, t)  # long enough to be worth caching
        probe = datetime.fromtimestamp(start, UTC)
        while probe.timestamp() < end:
            assert period_keys(probe, tz) == keys, (zone_name, probe)
            probe += timedelta(minutes=50)
        windows += 1
        t += timedelta(days=1)
    assert windows == 365
