"""Database contention: another connection holds SQLite's write lock.

Within the busy timeout the engine waits and the player gets a normal reply; beyond it the player
gets the Busy error's message as a private Rejected reply, never an exception and never SQLite's
"database is locked". These tests hold a real lock, so they wait for real (about 2.5 s in all).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot import errors
from bot.bank import Bank
from bot.clock import FakeClock
from bot.commands import Action, handle_action, handle_text
from bot.engine import QuizEngine
from bot.replies import Feedback, Leaderboard, Player, QuestionCard, Rejected, SessionStarted, Stats
from bot.store import SqliteStore
from tests.fakes.bank import correct_letter

HOLD = 2.0
ALICE = Player("slack", "T1", "U001", "Alice")
BOB = Player("slack", "T1", "U002", "Bob")


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's writer: BEGIN IMMEDIATE on a second connection, released on exit."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE players SET display_name = display_name")
        yield con
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def texts(replies: list) -> str:
    return " ".join(r.text() for r in replies)


async def test_engine_waits_for_a_two_second_lock_and_succeeds(tmp_path: Path, bank: Bank, clock: FakeClock):
    path = tmp_path / "quiz.sqlite3"
    store = SqliteStore(path)  # the default busy timeout (10 s)
    await store.open()
    engine = QuizEngine(store, bank, clock, rng=random.Random(1))
    try:
        [_, card] = await engine.start(BOB, "challenge")
        action = Action("a", card.session_id, card.question_id, correct_letter(bank, card)).encode()
        with write_lock(path) as con:
            loop = asyncio.get_running_loop()
            loop.call_later(HOLD, con.execute, "COMMIT")
            t0 = time.monotonic()
            started, answered, board, stats = await asyncio.gather(
                handle_text(engine, ALICE, "challenge"),
                handle_action(engine, BOB, action, "ev-1"),
                handle_text(engine, ALICE, "leaderboard"),
                handle_text(engine, BOB, "stats"),
            )
            waited = time.monotonic() - t0
        assert HOLD * 0.9 <= waited < 9, waited
        assert [type(r) for r in started] == [SessionStarted, QuestionCard]
        assert isinstance(answered[0], Feedback) and answered[0].correct
        assert isinstance(board[0], Leaderboard) and isinstance(stats[0], Stats)
        assert stats[0].points == answered[0].points > 0
        for replies in (started, answered, board, stats):
            assert not [r for r in replies if isinstance(r, Rejected)]
            assert "locked" not in texts(replies)
    finally:
        await store.close()


async def test_lock_held_past_the_busy_timeout_gives_the_busy_message(tmp_path: Path, bank: Bank,
                                                                       clock: FakeClock):
    path = tmp_path / "quiz.sqlite3"
    store = SqliteStore(path, busy_timeout_ms=200)
    await store.open()
    engine = QuizEngine(store, bank, clock, rng=random.Random(1))
    busy = Rejected(errors.Busy.message, "Busy")
    try:
        [_, card] = await engine.start(BOB, "challenge")
        action = Action("a", card.session_id, card.question_id, correct_letter(bank, card)).encode()
        with write_lock(path):
            # typed commands and button clicks, each a friendly private reply
            assert await handle_text(engine, ALICE, "challenge") == [busy]
            assert await handle_action(engine, BOB, action, "ev-1") == [busy]
            assert await handle_text(engine, BOB, "skip") == [busy]
            assert await handle_text(engine, ALICE, "team create Owls") == [busy]
            # the scheduler's path gets the domain error too, not sqlite3's
            try:
                await engine.expire_due()
            except errors.Busy as exc:
                assert "locked" not in exc.message
            else:
                raise AssertionError("expire_due should report Busy")
        assert "database is locked" not in errors.Busy.message
        # nothing was written by the refused calls, and the same clicks work once the lock is gone
        async with store.transaction() as tx:
            assert await tx._all("SELECT COUNT(*) FROM sessions") == [(1,)]
            assert await tx._all("SELECT COUNT(*) FROM answers") == [(0,)]
        [started, _] = await handle_text(engine, ALICE, "challenge")
        assert isinstance(started, SessionStarted)
        [feedback, _] = await handle_action(engine, BOB, action, "ev-1")
        assert isinstance(feedback, Feedback) and feedback.correct
    finally:
        await store.close()
