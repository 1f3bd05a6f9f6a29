"""The aiosqlite implementation of Store: WAL, a busy timeout, foreign keys, versioned migrations.

One connection per process; transactions are serialised on it with an asyncio lock and opened with
BEGIN IMMEDIATE, so that a second process on the same file waits (busy timeout) instead of failing
half-way through a read-then-write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from ..text import fold_key
from .base import (
    AnswerRow,
    DailyChannelRow,
    DailyPostRow,
    ItemRow,
    PlayerRow,
    RankRow,
    SessionRow,
    Store,
    StoreBusy,
    TeamRow,
    Totals,
    Tx,
)
from .migrations import MIGRATIONS
from .sqlite_outbox import SqliteOutboxTx

_SESSION_COLS = ("id, player_id, mode, status, position, total, created_at, challenge_set, route, "
                 "finished_at, correct, points")
_ITEM_COLS = ("session_id, position, question_id, choice_order, status, deadline, attempts_used, "
              "hint_used, points, closed_at")
_POST_COLS = ("id, platform, tenant, channel, local_date, question_id, choice_order, status, message_ref, "
              "lease_until, posted_at, closes_at")
_ANSWER_COLS = ("session_id, position, attempt, question_id, player_id, choice, shown_choice, outcome, "
                "points, event_key, answered_at")


def split_statements(script: str) -> list[str]:
    """Split a migration into statements; a trigger body's inner semicolons stay inside its statement."""
    statements, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip(" \n;"):
        statements.append(buf.strip())
    return statements


class StoreUnavailable(Exception):
    """The database cannot be opened or written (path, permissions, a lock held too long)."""


def _item(row: sqlite3.Row | tuple) -> ItemRow:
    r = tuple(row)
    return ItemRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])


class SqliteTx(SqliteOutboxTx, Tx):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    # Each statement is one trip to aiosqlite's thread (execute_fetchall), not three (execute, fetch,
    # close): the trips, not SQLite, were most of an answer's time (see bench/engine.py).

    async def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        rows = await self._db.execute_fetchall(sql, params)
        return tuple(rows[0]) if rows else None

    async def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        return [tuple(r) for r in await self._db.execute_fetchall(sql, params)]

    async def _run(self, sql: str, params: tuple = ()) -> int:
        """A write; returns how many rows it changed (counted with RETURNING, in the same trip)."""
        return len(await self._db.execute_fetchall(f"{sql} RETURNING 1", params))

    async def upsert_player(self, platform: str, tenant: str, user_id: str, display_name: str, now: float) -> int:
        row = await self._one(
            "INSERT INTO players (platform, tenant, user_id, display_name, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, tenant, user_id) DO UPDATE SET display_name = "
            "CASE WHEN excluded.display_name != '' THEN excluded.display_name ELSE players.display_name END "
            "RETURNING id",
            (platform, tenant, user_id, display_name, now),
        )
        assert row is not None
        return row[0]

    async def get_player(self, player_id: int) -> PlayerRow | None:
        row = await self._one(
            "SELECT id, platform, tenant, user_id, display_name FROM players WHERE id = ?", (player_id,))
        return PlayerRow(*row) if row else None

    async def open_session_for(self, player_id: int) -> SessionRow | None:
        row = await self._one(
            f"SELECT {_SESSION_COLS} FROM sessions WHERE player_id = ? AND status = 'open'", (player_id,))
        return SessionRow(*row) if row else None

    async def get_session(self, session_id: str) -> SessionRow | None:
        row = await self._one(f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ?", (session_id,))
        return SessionRow(*row) if row else None

    async def insert_session(self, session: SessionRow, items: list[ItemRow]) -> None:
        s = session
        await self._run(
            f"INSERT INTO sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.player_id, s.mode, s.status, s.position, s.total, s.created_at, s.challenge_set,
             s.route, s.finished_at, s.correct, s.points),
        )
        await self._db.executemany(
            f"INSERT INTO session_items ({_ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i.session_id, i.position, i.question_id, i.choice_order, i.status, i.deadline,
              i.attempts_used, int(i.hint_used), i.points, i.closed_at) for i in items],
        )

    async def update_session(self, session: SessionRow) -> None:
        s = session
        await self._run(
            "UPDATE sessions SET status = ?, position = ?, route = ?, finished_at = ?, correct = ?, points = ? "
            "WHERE id = ?",
            (s.status, s.position, s.route, s.finished_at, s.correct, s.points, s.id),
        )

    async def get_item(self, session_id: str, position: int) -> ItemRow | None:
        row = await self._one(
            f"SELECT {_ITEM_COLS} FROM session_items WHERE session_id = ? AND position = ?", (session_id, position))
        return _item(row) if row else None

    async def get_items(self, session_id: str) -> list[ItemRow]:
        rows = await self._all(
            f"SELECT {_ITEM_COLS} FROM session_items WHERE session_id = ? ORDER BY position", (session_id,))
        return [_item(r) for r in rows]

    async def update_item(self, item: ItemRow) -> None:
        i = item
        await self._run(
            "UPDATE session_items SET status = ?, deadline = ?, attempts_used = ?, hint_used = ?, points = ?, "
            "closed_at = ? WHERE session_id = ? AND position = ?",
            (i.status, i.deadline, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id,
             i.position),
        )

    async def close_item_if_open(self, item: ItemRow) -> bool:
        i = item
        changed = await self._run(
            "UPDATE session_items SET status = ?, attempts_used = ?, hint_used = ?, points = ?, closed_at = ? "
            "WHERE session_id = ? AND position = ? AND status = 'open'",
            (i.status, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id, i.position),
        )
        return changed == 1

    async def find_answer(self, event_key: str) -> AnswerRow | None:
        row = await self._one(f"SELECT {_ANSWER_COLS} FROM answers WHERE event_key = ?", (event_key,))
        return AnswerRow(*row) if row else None

    async def insert_answer(self, answer: AnswerRow) -> bool:
        a = answer
        changed = await self._run(
            f"INSERT INTO answers ({_ANSWER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (a.session_id, a.position, a.attempt, a.question_id, a.player_id, a.choice, a.shown_choice,
             a.outcome, a.points, a.event_key, a.answered_at),
        )
        return changed == 1

    async def add_to_totals(self, player_id: int, points: int, answered: int, correct: int) -> None:
        await self._run(
            "INSERT INTO player_totals (player_id, points, answered, correct) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id) DO UPDATE SET points = player_totals.points + excluded.points, "
            "answered = player_totals.answered + excluded.answered, "
            "correct = player_totals.correct + excluded.correct",
            (player_id, points, answered, correct),
        )

    async def totals(self, player_id: int) -> Totals:
        row = await self._one(
            "SELECT points, answered, correct FROM player_totals WHERE player_id = ?", (player_id,))
        return Totals(*row) if row else Totals()

    async def award_badge(self, player_id: int, badge: str, session_id: str, now: float) -> bool:
        changed = await self._run(
            "INSERT INTO badges (player_id, badge, session_id, awarded_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (player_id, badge, session_id, now),
        )
        return changed == 1

    async def badges(self, player_id: int) -> list[str]:
        rows = await self._all("SELECT badge FROM badges WHERE player_id = ? ORDER BY awarded_at", (player_id,))
        return [r[0] for r in rows]

    async def get_setting(self, platform: str, tenant: str, key: str) -> str | None:
        row = await self._one(
            "SELECT value FROM tenant_settings WHERE platform = ? AND tenant = ? AND key = ?", (platform, tenant, key))
        return row[0] if row else None

    async def set_setting(self, platform: str, tenant: str, key: str, value: str) -> None:
        await self._run(
            "INSERT INTO tenant_settings (platform, tenant, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, tenant, key) DO UPDATE SET value = excluded.value",
            (platform, tenant, key, value),
        )

    async def due_items(self, now: float, limit: int) -> list[tuple[str, int]]:
        rows = await self._all(
            "SELECT session_id, position FROM session_items WHERE status = 'open' AND deadline IS NOT NULL "
            "AND deadline <= ? ORDER BY deadline LIMIT ?",
            (now, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def next_deadline(self) -> float | None:
        row = await self._one(
            "SELECT MIN(deadline) FROM session_items WHERE status = 'open' AND deadline IS NOT NULL")
        return row[0] if row else None

    async def challenge_sets_played(self, player_id: int) -> dict[str, bool]:
        rows = await self._all(
            "SELECT challenge_set, MAX(CASE WHEN status = 'finished' AND correct = total THEN 1 ELSE 0 END) "
            "FROM sessions WHERE player_id = ? AND mode = 'challenge' AND status != 'open' "
            "AND challenge_set IS NOT NULL GROUP BY challenge_set",
            (player_id,),
        )
        return {r[0]: bool(r[1]) for r in rows}

    async def topic_accuracy(self, player_id: int) -> list[tuple[str, int, int]]:
        return await self._all(
            "SELECT i.question_id, COUNT(*), SUM(CASE WHEN i.status = 'correct' THEN 1 ELSE 0 END) "
            "FROM session_items i JOIN sessions s ON s.id = i.session_id "
            "WHERE s.player_id = ? AND i.status IN ('correct', 'wrong', 'timeout') GROUP BY i.question_id",
            (player_id,),
        )

    # -- teams ----------------------------------------------------------------------------------

    async def create_team(self, scope: str, name: str, name_key: str, player_id: int, now: float) -> int | None:
        row = await self._one(
            "INSERT INTO teams (scope, name, name_key, created_by, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING id",
            (scope, name, name_key, player_id, now),
        )
        return row[0] if row else None

    async def team_by_key(self, scope: str, name_key: str) -> TeamRow | None:
        row = await self._one("SELECT id, scope, name FROM teams WHERE scope = ? AND name_key = ?", (scope, name_key))
        return TeamRow(*row) if row else None

    async def team_of(self, player_id: int) -> TeamRow | None:
        row = await self._one(
            "SELECT t.id, t.scope, t.name FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.player_id = ?",
            (player_id,))
        return TeamRow(*row) if row else None

    async def join_team(self, player_id: int, team_id: int, now: float) -> None:
        await self._run("INSERT INTO team_members (player_id, team_id, joined_at) VALUES (?, ?, ?)",
                        (player_id, team_id, now))

    async def leave_team(self, player_id: int) -> None:
        team = await self.team_of(player_id)
        if team is None:
            return
        await self._run("DELETE FROM team_members WHERE player_id = ?", (player_id,))
        left = await self._one("SELECT COUNT(*) FROM team_members WHERE team_id = ?", (team.id,))
        if left and left[0] == 0:
            await self._run("DELETE FROM team_periods WHERE team_id = ?", (team.id,))
            await self._run("DELETE FROM teams WHERE id = ?", (team.id,))

    async def list_teams(self, scope: str) -> list[RankRow]:
        rows = await self._all(
            "SELECT t.id, t.name, COALESCE(tp.points, 0), "
            "(SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members "
            "FROM teams t LEFT JOIN team_periods tp ON tp.team_id = t.id AND tp.scope = t.scope AND tp.period = 'all' "
            "WHERE t.scope = ? ORDER BY members DESC, t.name_key",
            (scope,))
        return [RankRow(*r) for r in rows]

    # -- leaderboards ---------------------------------------------------------------------------

    async def add_period_scores(self, scope: str, periods: list[str], player_id: int, team_id: int | None,
                                points: int, answered: int, correct: int, now: float) -> None:
        await self._db.executemany(
            "INSERT INTO score_periods (scope, period, player_id, points, answered, correct, reached_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, period, player_id) DO UPDATE SET "
            "points = score_periods.points + excluded.points, answered = score_periods.answered + excluded.answered, "
            "correct = score_periods.correct + excluded.correct, "
            "reached_at = CASE WHEN excluded.points > 0 THEN excluded.reached_at ELSE score_periods.reached_at END",
            [(scope, p, player_id, points, answered, correct, now) for p in periods],
        )
        if team_id is not None and points:
            await self._db.executemany(
                "INSERT INTO team_periods (scope, period, team_id, points, reached_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, period, team_id) DO UPDATE SET points = team_periods.points + excluded.points, "
                "reached_at = excluded.reached_at",
                [(scope, p, team_id, points, now) for p in periods],
            )

    async def top_players(self, scope: str, period: str, limit: int) -> list[RankRow]:
        rows = await self._all(
            "SELECT s.player_id, CASE WHEN p.display_name != '' THEN p.display_name ELSE p.user_id END, s.points "
            "FROM score_periods s JOIN players p ON p.id = s.player_id "
            "WHERE s.scope = ? AND s.period = ? ORDER BY s.points DESC, s.reached_at, s.player_id LIMIT ?",
            (scope, period, limit))
        return [RankRow(*r) for r in rows]

    async def player_rank(self, scope: str, period: str, player_id: int) -> tuple[int, int] | None:
        me = await self._one(
            "SELECT points, reached_at FROM score_periods WHERE scope = ? AND period = ? AND player_id = ?",
            (scope, period, player_id))
        if me is None:
            return None
        points, reached = me
        # players with more points come from the per-score counts (a few hundred rows at most);
        # only the tie group at exactly this score is counted row by row, on the rank index
        ahead = await self._one(
            "SELECT COALESCE((SELECT SUM(players) FROM score_counts WHERE scope = ? AND period = ? AND points > ?), 0)"
            " + (SELECT COUNT(*) FROM score_periods WHERE scope = ? AND period = ? AND points = ? AND reached_at < ?)"
            " + (SELECT COUNT(*) FROM score_periods WHERE scope = ? AND period = ? AND points = ? AND reached_at = ? "
            "AND player_id < ?)",
            (scope, period, points, scope, period, points, reached, scope, period, points, reached, player_id))
        return ahead[0] + 1, points

    async def top_teams(self, scope: str, period: str, per_member: bool, limit: int) -> list[RankRow]:
        order = "CAST(tp.points AS REAL) / MAX(members, 1)" if per_member else "tp.points"
        rows = await self._all(
            "SELECT * FROM (SELECT t.id, t.name, tp.points, "
            "(SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members, tp.reached_at "
            "FROM team_periods tp JOIN teams t ON t.id = tp.team_id WHERE tp.scope = ? AND tp.period = ?) tp "
            f"ORDER BY {order} DESC, tp.reached_at, tp.id LIMIT ?",
            (scope, period, limit))
        return [RankRow(r[0], r[1], r[2], r[3]) for r in rows]

    # -- daily posts ----------------------------------------------------------------------------

    async def set_daily_channel(self, row: DailyChannelRow, now: float) -> None:
        await self._run(
            "INSERT INTO daily_channels (platform, tenant, channel, post_time, timezone, enabled, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (platform, tenant, channel) DO UPDATE SET "
            "post_time = excluded.post_time, timezone = excluded.timezone, enabled = excluded.enabled, "
            "updated_at = excluded.updated_at",
            (row.platform, row.tenant, row.channel, row.post_time, row.timezone, int(row.enabled), now))

    async def daily_channels(self, platform: str | None, tenant: str | None) -> list[DailyChannelRow]:
        rows = await self._all(
            "SELECT platform, tenant, channel, post_time, timezone, enabled FROM daily_channels "
            "WHERE (? IS NULL OR platform = ?) AND (? IS NULL OR tenant = ?) ORDER BY platform, tenant, channel",
            (platform, platform, tenant, tenant))
        return [DailyChannelRow(*r[:5], bool(r[5])) for r in rows]

    async def get_daily_post(self, post_id: str) -> DailyPostRow | None:
        row = await self._one(f"SELECT {_POST_COLS} FROM daily_posts WHERE id = ?", (post_id,))
        return DailyPostRow(*row) if row else None

    async def daily_post_on(self, platform: str, tenant: str, channel: str, local_date: str) -> DailyPostRow | None:
        row = await self._one(
            f"SELECT {_POST_COLS} FROM daily_posts WHERE platform = ? AND tenant = ? AND channel = ? "
            "AND local_date = ?", (platform, tenant, channel, local_date))
        return DailyPostRow(*row) if row else None

    async def insert_daily_post(self, row: DailyPostRow) -> bool:
        r = row
        changed = await self._run(
            f"INSERT INTO daily_posts ({_POST_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (r.id, r.platform, r.tenant, r.channel, r.local_date, r.question_id, r.choice_order, r.status,
             r.message_ref, r.lease_until, r.posted_at, r.closes_at))
        return changed == 1

    async def update_daily_post(self, row: DailyPostRow, expect_status: str) -> bool:
        r = row
        changed = await self._run(
            "UPDATE daily_posts SET status = ?, message_ref = ?, lease_until = ?, posted_at = ?, closes_at = ? "
            "WHERE id = ? AND status = ?",
            (r.status, r.message_ref, r.lease_until, r.posted_at, r.closes_at, r.id, expect_status))
        return changed == 1

    async def close_daily_windows(self, platform: str, tenant: str, channel: str, except_id: str, now: float) -> None:
        await self._run(
            "UPDATE daily_posts SET closes_at = ? WHERE platform = ? AND tenant = ? AND channel = ? AND id != ? "
            "AND status IN ('queued', 'posted') AND closes_at > ?",
            (now, platform, tenant, channel, except_id, now))

    async def daily_posts_due(self, status: str, now: float, field: str) -> list[DailyPostRow]:
        assert field in ("lease_until", "closes_at")
        rows = await self._all(
            f"SELECT {_POST_COLS} FROM daily_posts WHERE status = ? AND {field} <= ? ORDER BY {field}",
            (status, now))
        return [DailyPostRow(*r) for r in rows]

    async def daily_history(self, platform: str, tenant: str, channel: str) -> list[str]:
        rows = await self._all(
            "SELECT question_id FROM daily_posts WHERE platform = ? AND tenant = ? AND channel = ? "
            "ORDER BY local_date DESC", (platform, tenant, channel))
        return [r[0] for r in rows]

    async def next_daily_event(self) -> float | None:
        row = await self._one("SELECT MIN(closes_at) FROM daily_posts WHERE status IN ('queued', 'posted')")
        return row[0] if row else None

    async def insert_daily_answer(self, post_id: str, player_id: int, choice: str, shown: str, correct: bool,
                                  points: int, event_key: str, now: float) -> bool:
        changed = await self._run(
            "INSERT INTO daily_answers (post_id, player_id, choice, shown_choice, correct, points, event_key, "
            "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (post_id, player_id, choice, shown, int(correct), points, event_key, now))
        return changed == 1

    async def daily_answer(self, post_id: str, player_id: int) -> tuple[str, bool, int, str] | None:
        row = await self._one(
            "SELECT shown_choice, correct, points, event_key FROM daily_answers WHERE post_id = ? AND player_id = ?",
            (post_id, player_id))
        return (row[0], bool(row[1]), row[2], row[3]) if row else None

    async def daily_counts(self, post_id: str) -> tuple[int, int]:
        row = await self._one(
            "SELECT COUNT(*), COALESCE(SUM(correct), 0) FROM daily_answers WHERE post_id = ?", (post_id,))
        return (row[0], row[1]) if row else (0, 0)

    # -- streaks and review ---------------------------------------------------------------------

    async def add_activity(self, player_id: int, local_date: str) -> None:
        await self._run("INSERT INTO activity_days (player_id, local_date) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (player_id, local_date))

    async def activity_dates(self, player_id: int, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT local_date FROM activity_days WHERE player_id = ? ORDER BY local_date DESC LIMIT ?",
            (player_id, limit))
        return [r[0] for r in rows]

    async def review_box(self, player_id: int, question_id: str) -> int | None:
        row = await self._one("SELECT box FROM review_items WHERE player_id = ? AND question_id = ?",
                              (player_id, question_id))
        return row[0] if row else None

    async def set_review(self, player_id: int, question_id: str, box: int, due_at: float) -> None:
        await self._run(
            "INSERT INTO review_items (player_id, question_id, box, due_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id, question_id) DO UPDATE SET box = excluded.box, due_at = excluded.due_at",
            (player_id, question_id, box, due_at))

    async def drop_review(self, player_id: int, question_id: str) -> None:
        await self._run("DELETE FROM review_items WHERE player_id = ? AND question_id = ?", (player_id, question_id))

    async def due_reviews(self, player_id: int, now: float, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT question_id FROM review_items WHERE player_id = ? AND due_at <= ? ORDER BY due_at, question_id "
            "LIMIT ?", (player_id, now, limit))
        return [r[0] for r in rows]

    async def next_review(self, player_id: int) -> tuple[float, int] | None:
        row = await self._one("SELECT MIN(due_at), COUNT(*) FROM review_items WHERE player_id = ?", (player_id,))
        return (row[0], row[1]) if row and row[1] else None

    async def item_answers(self, session_id: str, position: int) -> list[AnswerRow]:
        rows = await self._all(f"SELECT {_ANSWER_COLS} FROM answers WHERE session_id = ? AND position = ? "
                               "ORDER BY attempt", (session_id, position))
        return [AnswerRow(*r) for r in rows]

    async def set_unseen(self, player_id: int, session_id: str, question_id: str, now: float) -> None:
        await self._run(
            "INSERT INTO unseen_results (player_id, session_id, question_id, noted_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id) DO UPDATE SET session_id = excluded.session_id, "
            "question_id = excluded.question_id, noted_at = excluded.noted_at",
            (player_id, session_id, question_id, now))

    async def unseen_players(self) -> list[tuple[str, str, str]]:
        rows = await self._all("SELECT p.platform, p.tenant, p.user_id FROM unseen_results u "
                               "JOIN players p ON p.id = u.player_id")
        return [(r[0], r[1], r[2]) for r in rows]

    async def take_unseen(self, player_id: int) -> tuple[str, str] | None:
        row = await self._one("DELETE FROM unseen_results WHERE player_id = ? RETURNING session_id, question_id",
                              (player_id,))
        return (row[0], row[1]) if row else None


class SqliteStore(Store):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.exists():
                raise StoreUnavailable(f"folder {parent} does not exist")
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute(f"PRAGMA synchronous = {self.synchronous}")
            await self._db.execute("PRAGMA foreign_keys = ON")
            await self._db.create_function("mldebt_fold", 1, fold_key, deterministic=True)  # migration 7
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        assert self._db is not None
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
            async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
                current = (await cur.fetchone())[0]
            for version, name, sql in sorted(MIGRATIONS):
                if version <= current:
                    continue
                for statement in split_statements(sql):
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def schema_version(self) -> int:
        assert self._db is not None
        async with self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
            return (await cur.fetchone())[0]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        if self._db is None:
            raise StoreUnavailable("the store is not open")
        db = self._db
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreBusy(str(exc)) from exc
            try:
                yield SqliteTx(db)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            try:
                await db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                await db.execute("ROLLBACK")
                raise StoreBusy(str(exc)) from exc
