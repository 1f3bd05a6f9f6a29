"""Store variants for the engine benchmark, run beside the shipped store in the same bench run.

- BaselineStore: the store as it was before group commit (bot/store/sqlite.py at 6dcacfe), kept so
  that every run measures the gain against it on the same machine at the same moment: one
  transaction at a time (BEGIN IMMEDIATE ... COMMIT each), every statement its own trip to
  aiosqlite's thread, the answer's reads one by one (answer, session, item; the next item read when
  the question closes), and the leaderboard aggregates (totals, three period rows with their
  per-score count triggers, the team's rows) updated inside every answer's transaction.
  synchronous = NORMAL, its default then. It reuses the shipped SQL text of each Tx method; only the
  way statements reach SQLite and the aggregate updates differ.
- The shipped SqliteStore with synchronous = NORMAL: the price of the FULL default.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from bot.store import SqliteStore
from bot.store.base import AnswerContext, AnswerRow, ItemRow, PlayerRow, SessionRow, StoreBusy, Tx
from bot.store.sqlite import SqliteTx, _apply, _Batch


class BaselineTx(SqliteTx):
    """Every statement is sent when it is called, one aiosqlite trip each."""

    def __init__(self, store: BaselineStore) -> None:
        super().__init__(store, _Batch())  # a batch of one; never committed as a batch
        self._baseline = store

    @property
    def _db(self) -> Any:
        assert self._baseline._db is not None
        return self._baseline._db

    async def _reads(self, reads: list[tuple[str, tuple]]) -> list[list]:
        return [await self._db.execute_fetchall(sql, params) for sql, params in reads]

    async def _write(self, sql: str, params: tuple = ()) -> None:
        await self._db.execute_fetchall(sql, params)

    async def _write_many(self, sql: str, rows: list[tuple]) -> None:
        await self._db.executemany(sql, rows)

    async def _write_fn(self, fn: Callable[..., object]) -> None:
        await self._db._execute(fn, self._db._conn)

    async def _send_queued(self) -> None:
        """The shipped store's answer writes queue themselves (tuples on `_writes`, no `_write` call):
        here each is sent at once, its own trip, as before."""
        writes, self._writes = self._writes, []
        for write in writes:
            await self._db._execute(_apply, self._db._conn, [write])

    async def record_answer(self, answer: AnswerRow) -> None:
        await super().record_answer(answer)
        await self._send_queued()

    async def close_item(self, item: ItemRow) -> None:
        await super().close_item(item)
        await self._send_queued()

    async def update_item(self, item: ItemRow) -> None:
        await super().update_item(item)
        await self._send_queued()

    async def update_session(self, session: SessionRow) -> None:
        await super().update_session(session)
        await self._send_queued()

    async def answer_context(self, event_key: str, session_id: str) -> AnswerContext:
        prior = await self.find_answer(event_key)
        session = await self.get_session(session_id)
        if session is None:
            return AnswerContext(prior, None, None, None, None)
        # the old engine knew the owner from its player-id cache: no read
        player = self._baseline.players.get(session.player_id) or await self.get_player(session.player_id)
        assert player is not None
        self._baseline.players[player.id] = player
        return AnswerContext(prior, session, player, await self.get_item(session.id, session.position), None)

    async def add_score(self, scope: str, week: str, month: str, player_id: int, points: int, answered: int,
                        correct: int, now: float) -> None:
        await self._db.execute_fetchall(
            "INSERT INTO player_totals (player_id, points, answered, correct) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id) DO UPDATE SET points = player_totals.points + excluded.points, "
            "answered = player_totals.answered + excluded.answered, "
            "correct = player_totals.correct + excluded.correct RETURNING 1",
            (player_id, points, answered, correct))
        team = await self.team_of(player_id)
        periods = [week, month, "all"]
        await self._db.executemany(
            "INSERT INTO score_periods (scope, period, player_id, points, answered, correct, reached_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, period, player_id) DO UPDATE SET "
            "points = score_periods.points + excluded.points, answered = score_periods.answered + excluded.answered, "
            "correct = score_periods.correct + excluded.correct, "
            "reached_at = CASE WHEN excluded.points > 0 THEN excluded.reached_at ELSE score_periods.reached_at END",
            [(scope, p, player_id, points, answered, correct, now) for p in periods])
        if team is not None and points:
            await self._db.executemany(
                "INSERT INTO team_periods (scope, period, team_id, points, reached_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, period, team_id) DO UPDATE SET points = team_periods.points + excluded.points, "
                "reached_at = excluded.reached_at",
                [(scope, p, team.id, points, now) for p in periods])

    async def apply_scores(self) -> None:
        return None  # the aggregates were updated by every answer


class BaselineStore(SqliteStore):
    """One transaction per COMMIT, serialised by an asyncio lock, as before group commit."""

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **{"synchronous": "NORMAL", **kwargs})
        self.lock = asyncio.Lock()
        self.players: dict[int, PlayerRow] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        db = self._db
        assert db is not None
        async with self.lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
            except Exception as exc:
                raise StoreBusy(str(exc)) from exc
            tx = BaselineTx(self)
            try:
                yield tx
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
        tx.committed()


VARIANTS: dict[str, Callable[..., SqliteStore]] = {
    "baseline (before group commit)": BaselineStore,
    "group commit, synchronous NORMAL": functools.partial(SqliteStore, synchronous="NORMAL"),
}
