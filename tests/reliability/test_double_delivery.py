"""Double delivery: a platform retry or a double click delivers the same event many times at once.

Each test fires 50 copies concurrently, once through one engine (one connection, the asyncio lock)
and once through five engines on five connections to the same SQLite file (as five bot processes
would: SQLite's own write lock and busy timeout decide the order). Exactly one row is written and
every copy gets the same reply.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.bank import Bank
from bot.clock import FakeClock
from bot.commands import Action, handle_action, handle_text
from bot.engine import QuizEngine
from bot.replies import (
    ActiveSession,
    BadgeAwarded,
    DailyPost,
    Feedback,
    Player,
    QuestionCard,
    Rejected,
    SessionStarted,
    Summary,
)
from bot.scoring import BASE_POINTS
from bot.store import SqliteStore
from tests.fakes.bank import correct_letter, wrong_letter

COPIES = 50
PLAYER = Player("slack", "T1", "U042", "Dana")


@pytest.fixture(params=["one engine", "five engines"])
async def engines(request, tmp_path: Path, bank: Bank, clock: FakeClock) -> AsyncIterator[list[QuizEngine]]:
    """The engines the copies go through: 1, or 5 on their own connections to one database file."""
    stores = [SqliteStore(tmp_path / "quiz.sqlite3") for _ in range(1 if request.param == "one engine" else 5)]
    for s in stores:
        await s.open()
    yield [QuizEngine(s, bank, clock, rng=random.Random(i)) for i, s in enumerate(stores)]
    for s in stores:
        await s.close()


async def rows(engine: QuizEngine, sql: str, params: tuple = ()) -> list[tuple]:
    async with engine.store.transaction() as tx:
        return await tx._all(sql, params)


def spread(engines: list[QuizEngine], n: int = COPIES) -> list[QuizEngine]:
    return [engines[i % len(engines)] for i in range(n)]


def card_of(replies: list) -> QuestionCard:
    [card] = [r for r in replies if isinstance(r, QuestionCard)]
    return card


async def test_fifty_copies_of_one_answer_record_one_row(engines, bank):
    card = card_of(await engines[0].start(PLAYER, "challenge"))
    # a right answer: it closes the question and opens the next one
    right = correct_letter(bank, card)
    replies = await asyncio.gather(*(e.answer(PLAYER, card.session_id, card.question_id, right, "ev-1")
                                     for e in spread(engines)))
    assert all(r == replies[0] for r in replies)
    feedback, nxt = replies[0]
    assert isinstance(feedback, Feedback) and feedback.correct and isinstance(nxt, QuestionCard)
    assert await rows(engines[0], "SELECT COUNT(*) FROM answers WHERE event_key = 'slack:ev-1'") == [(1,)]

    # a wrong first attempt, clicked through the button: it leaves the question open with one attempt left
    action = Action("a", nxt.session_id, nxt.question_id, wrong_letter(bank, nxt)).encode()
    replies = await asyncio.gather(*(handle_action(e, PLAYER, action, "ev-2") for e in spread(engines)))
    assert all(r == replies[0] for r in replies)
    [feedback] = replies[0]
    assert isinstance(feedback, Feedback) and not feedback.correct and feedback.attempts_left == 1
    assert await rows(engines[0], "SELECT attempt, outcome FROM answers WHERE session_id = ? ORDER BY id",
                      (card.session_id,)) == [(1, "correct"), (1, "wrong")]
    assert await rows(engines[0], "SELECT points, answered FROM player_totals") == [(BASE_POINTS[card.difficulty], 1)]


async def test_fifty_copies_of_the_badge_answer_award_it_once(engines, bank):
    card = card_of(await engines[0].start(PLAYER, "challenge"))
    for i in range(4):
        card = card_of(await engines[0].answer(PLAYER, card.session_id, card.question_id,
                                               correct_letter(bank, card), f"warm-{i}"))
    right = correct_letter(bank, card)
    replies = await asyncio.gather(*(e.answer(PLAYER, card.session_id, card.question_id, right, "ev-last")
                                     for e in spread(engines)))
    # the copy that changed the row sends the badge; every copy gets the same feedback and summary
    with_badge = [r for r in replies if any(isinstance(x, BadgeAwarded) for x in r)]
    assert len(with_badge) == 1
    plain = [[x for x in r if not isinstance(x, BadgeAwarded)] for r in replies]
    assert all(p == plain[0] for p in plain)
    assert [type(x) for x in plain[0]] == [Feedback, Summary] and plain[0][1].correct == 5
    assert await rows(engines[0], "SELECT COUNT(*) FROM badges") == [(1,)]
    assert await rows(engines[0], "SELECT COUNT(*) FROM answers WHERE event_key = 'slack:ev-last'") == [(1,)]
    [(points,)] = await rows(engines[0], "SELECT points FROM player_totals")
    assert points == plain[0][1].points == sum(x.points for x in plain[0][1].items)


async def test_fifty_concurrent_starts_open_one_session(engines):
    replies = await asyncio.gather(*(handle_text(e, PLAYER, "challenge") for e in spread(engines)))
    assert not [r for r in replies if isinstance(r[0], Rejected)]
    started = [r for r in replies if isinstance(r[0], SessionStarted)]
    again = [r for r in replies if isinstance(r[0], ActiveSession)]
    assert len(started) == 1 and len(again) == COPIES - 1
    session_id = started[0][0].session_id
    assert {r[0].session_id for r in again} == {session_id}
    # everyone is shown the same first question
    assert {card_of(r) for r in replies} == {card_of(started[0])}
    assert await rows(engines[0], "SELECT id, status FROM sessions") == [(session_id, "open")]
    assert await rows(engines[0], "SELECT COUNT(*) FROM session_items WHERE session_id = ?", (session_id,)) == [(5,)]


async def test_fifty_copies_of_one_daily_answer_record_one_row(engines, bank, clock):
    admin = Player("slack", "T1", "UADMIN", "Admin")
    await handle_text(engines[0], admin, "daily set <#C1|quiz> 09:00 UTC", is_admin=True)
    [post] = await engines[0].queue_daily_posts(["slack"])
    assert isinstance(post, DailyPost)
    await engines[0].daily_posted(post.post_id, "msg-1")
    answer = bank.question(post.question_id).answer_text
    right = next(c.letter for c in post.choices if c.text == answer)
    action = Action("d", post.post_id, post.question_id, right).encode()
    replies = await asyncio.gather(*(handle_action(e, PLAYER, action, "daily-ev") for e in spread(engines)))
    assert all(r == replies[0] for r in replies)
    [feedback] = replies[0]
    assert isinstance(feedback, Feedback) and feedback.correct and feedback.points > 0
    assert await rows(engines[0], "SELECT event_key FROM daily_answers") == [("slack:daily-ev",)]
    assert await rows(engines[0], "SELECT points, answered FROM player_totals") == [(feedback.points, 1)]
    assert await rows(engines[0], "SELECT points FROM score_periods WHERE period = 'all'") == [(feedback.points,)]

    # a double click on Discord is two interactions with two ids: one answer, the others are told so
    other = Player("slack", "T1", "U043", "Eli")
    replies = await asyncio.gather(*(handle_action(e, other, action, f"click-{i}")
                                     for i, e in enumerate(spread(engines))))
    answered = [r for r in replies if isinstance(r[0], Feedback)]
    refused = [r for r in replies if isinstance(r[0], Rejected)]
    assert len(answered) == 1 and len(refused) == COPIES - 1
    assert {r[0].reason for r in refused} == {"NoAttemptsLeft"}
    assert await rows(engines[0], "SELECT COUNT(*) FROM daily_answers") == [(2,)]
