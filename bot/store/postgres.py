"""The asyncpg implementation of Store, for several bot processes on one PostgreSQL database.

Why it looks the way it does:

- **Isolation: REPEATABLE READ, whole-call retry.** The engine's calls are read-then-write (read
  the session and its open item, then close it, move on, score), and every rule they keep lives in a
  row they write: the item they close (a compare-and-set on its status), the session they move on,
  the daily post they claim, or a unique key (answer event key and attempt, badge, one open session
  per player, one post per channel and day, team membership). Under REPEATABLE READ, two
  transactions that write the same row cannot both commit (the second gets a serialization failure),
  and a unique key taken by a concurrent transaction fails the insert; the store raises
  `Serialization` (a WriteConflict) for both, and for deadlocks, and the engine runs the whole call
  again (bot/retry.py), which then sees the winner's row: a duplicate answer is replayed, a second
  `start` finds the open session. SERIALIZABLE was measured first: its read locks sit on index
  pages, and every answer looks its event key up in the answers index and then inserts into it, so
  on a young database (one leaf page) concurrent answers of different players aborted each other
  (303 aborts for 20 players' 100 answers); REPEATABLE READ aborts only real collisions.
- **Few round trips.** Writes that return nothing are queued and sent together as ONE statement (a
  chain of data-modifying CTEs) with the transaction's next read or before COMMIT, so an answer is
  BEGIN, one joined read, one write statement, COMMIT. Two queued writes to the same row are never
  sent in one statement (a statement cannot change a row twice): the queue is sent first.
- **Scores from facts, off the hot path.** An answer inserts a scoring fact; the aggregates (totals,
  per-period rows, per-score counts, team rows) are folded in per batch by one statement that marks
  the facts it folds (`applied`). PostgreSQL ids do not commit in id order, so an id watermark could
  skip a fact committed late; a per-fact mark cannot. After every commit that wrote facts, a
  background task folds whatever is pending (one at a time per database: an advisory lock), and
  reads that need exact totals fold first in their own transaction.
- **LISTEN/NOTIFY.** A transaction that stores a deadline or a daily schedule notifies
  `mldebt_notices` ("wakeup") on commit, and one that changes a tenant setting notifies "settings":
  every process listening wakes its scheduler, or drops its cached settings, instead of polling.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ..text import fold_key
from .base import (
    AnswerContext,
    AnswerRow,
    DailyChannelRow,
    DailyPostRow,
    DuplicateAnswer,
    ItemAnswerRow,
    ItemRow,
    PlayerRow,
    RankRow,
    SessionRow,
    Store,
    StoreBusy,
    TeamRow,
    Totals,
    Tx,
    WriteConflict,
)
from .daily_sql import DailySql
from .installations_sql import InstallationsSql
from .migrations import MIGRATIONS, sql_for
from .outbox_sql import OutboxSql
from .sqlite import StoreUnavailable

log = logging.getLogger(__name__)

NOTICE_CHANNEL = "mldebt_notices"
_MIGRATE_LOCK = 0x6D6C6462  # advisory lock keys: migrations, score folding
_APPLY_LOCK = 0x6D6C6463

_SESSION_COLS = ("id, player_id, mode, status, position, total, created_at, challenge_set, route, "
                 "finished_at, correct, points")
_ITEM_COLS = ("session_id, position, question_id, choice_order, status, deadline, attempts_used, "
              "hint_used, points, closed_at")
_POST_COLS = ("id, platform, tenant, channel, local_date, question_id, choice_order, status, message_ref, "
              "lease_until, posted_at, closes_at")
_ANSWER_COLS = ("session_id, position, attempt, question_id, player_id, choice, shown_choice, outcome, "
                "points, event_key, answered_at")

# one read: the answer already stored under the event key, the session, its owner, the current item
# and the next one (an outer join from a one-row VALUES, so a missing session still returns the answer)
_CONTEXT_SQL = (
    "SELECT " + ", ".join(f"a.{c}" for c in _ANSWER_COLS.split(", ")) + ", "
    + ", ".join(f"s.{c}" for c in _SESSION_COLS.split(", ")) + ", "
    "p.id, p.platform, p.tenant, p.user_id, p.display_name, "
    + ", ".join(f"i.{c}" for c in _ITEM_COLS.split(", ")) + ", "
    + ", ".join(f"n.{c}" for c in _ITEM_COLS.split(", "))
    + " FROM (VALUES (1)) AS one(x) "
    "LEFT JOIN answers a ON a.event_key = $1 "
    "LEFT JOIN sessions s ON s.id = $2 "
    "LEFT JOIN players p ON p.id = s.player_id "
    "LEFT JOIN session_items i ON i.session_id = s.id AND i.position = s.position "
    "LEFT JOIN session_items n ON n.session_id = s.id AND n.position = s.position + 1"
)

# fold every pending fact into the aggregates, in one statement; see the module docstring
_APPLY = """
WITH f AS (
    UPDATE score_facts SET applied = true WHERE NOT applied
    RETURNING scope, week, month, in_all, player_id, team_id, points, answered, correct, at
), per AS (
    SELECT scope, week AS period, player_id, team_id, points, answered, correct, at FROM f WHERE week IS NOT NULL
    UNION ALL SELECT scope, month, player_id, team_id, points, answered, correct, at FROM f WHERE month IS NOT NULL
    UNION ALL SELECT scope, 'all', player_id, team_id, points, answered, correct, at FROM f WHERE in_all = 1
), totals AS (
    INSERT INTO player_totals (player_id, points, answered, correct)
    SELECT player_id, SUM(points), SUM(answered), SUM(correct) FROM f
    WHERE in_all = 1 AND player_id IS NOT NULL GROUP BY player_id
    ON CONFLICT (player_id) DO UPDATE SET points = player_totals.points + excluded.points,
        answered = player_totals.answered + excluded.answered, correct = player_totals.correct + excluded.correct
    RETURNING 1
), periods AS (
    INSERT INTO score_periods (scope, period, player_id, points, answered, correct, reached_at)
    SELECT scope, period, player_id, SUM(points), SUM(answered), SUM(correct),
           COALESCE(MAX(CASE WHEN points > 0 THEN at END), MIN(at))
    FROM per WHERE player_id IS NOT NULL GROUP BY scope, period, player_id
    ON CONFLICT (scope, period, player_id) DO UPDATE SET points = score_periods.points + excluded.points,
        answered = score_periods.answered + excluded.answered, correct = score_periods.correct + excluded.correct,
        reached_at = CASE WHEN excluded.points > 0 THEN excluded.reached_at ELSE score_periods.reached_at END
    RETURNING 1
), teams AS (
    INSERT INTO team_periods (scope, period, team_id, points, reached_at)
    SELECT scope, period, team_id, SUM(points), MAX(at)
    FROM per WHERE team_id IS NOT NULL AND points != 0 AND team_id IN (SELECT id FROM teams)
    GROUP BY scope, period, team_id
    ON CONFLICT (scope, period, team_id) DO UPDATE SET points = team_periods.points + excluded.points,
        reached_at = excluded.reached_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM f) + (SELECT count(*) FROM totals) * 0 + (SELECT count(*) FROM periods) * 0
     + (SELECT count(*) FROM teams) * 0
"""


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: its transaction already ended (asyncpg rolls back
    one left open) and the store sets no session state, so the default reset (a round trip of
    UNLISTEN, RESET ALL, ... per transaction) is skipped."""


FOLD_DELAY = 0.05  # s: facts committed meanwhile are folded together, in one transaction


class Serialization(WriteConflict):
    """PostgreSQL aborted the transaction (serialization failure or deadlock): run the whole call again."""


# a unique or foreign key that another transaction took first: the engine checks before it inserts
# (an open session, a team membership), so this means "someone was faster": run the call again
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError,
              asyncpg.ForeignKeyViolationError)
_UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


@functools.lru_cache(maxsize=1024)
def _q(sql: str, start: int = 0) -> str:
    """`?` placeholders (the SQLite spelling the two stores share) as $1, $2, ... from start + 1."""
    counter = iter(range(start + 1, start + 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _item(r: Any) -> ItemRow:
    return ItemRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])


class _Write:
    __slots__ = ("sql", "args", "key", "guard", "returning")

    def __init__(self, sql: str, args: tuple, key: tuple, guard: Exception | None, returning: bool) -> None:
        self.sql, self.args, self.key, self.guard, self.returning = sql, args, key, guard, returning


class PostgresTx(OutboxSql, InstallationsSql, DailySql, Tx):
    """One REPEATABLE READ transaction on one pooled connection; writes queued as described above."""

    _LOCK = " FOR UPDATE SKIP LOCKED"  # outbox claims: two processes take different entries

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._queue: list[_Write] = []
        self._keys: set[tuple] = set()
        self.wrote_facts = False
        self.notices: set[str] = set()  # notices queued for the commit

    # -- plumbing -------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Send the queued writes: one statement, however many there are."""
        queue, self._queue = self._queue, []
        self._keys.clear()
        if not queue:
            return
        if len(queue) == 1 and queue[0].guard is None:
            w = queue[0]
            await self._conn.execute(_q(w.sql), *w.args)
            return
        parts, params = [], []
        for n, w in enumerate(queue):
            tail = " RETURNING 1" if w.returning else ""
            parts.append(f"w{n} AS ({_q(w.sql, len(params))}{tail})")
            params += w.args
        counts = ", ".join(f"(SELECT count(*) FROM w{n})" for n in range(len(queue)))
        row = await self._conn.fetchrow(f"WITH {', '.join(parts)} SELECT {counts}", *params)
        for n, w in enumerate(queue):
            if w.guard is not None and row[n] == 0:
                raise w.guard

    async def _write(self, sql: str, args: tuple, key: tuple, guard: Exception | None = None,
                     returning: bool = True) -> None:
        """Queue a write; `key` names the row it changes (a second write to it sends the queue first)."""
        if key in self._keys:
            await self._flush()
        self._keys.add(key)
        self._queue.append(_Write(sql, args, key, guard, returning))

    async def _all(self, sql: str, args: tuple = ()) -> list[asyncpg.Record]:
        await self._flush()
        return await self._conn.fetch(_q(sql), *args)

    async def _one(self, sql: str, args: tuple = ()) -> asyncpg.Record | None:
        await self._flush()
        return await self._conn.fetchrow(_q(sql), *args)

    async def _run(self, sql: str, args: tuple = ()) -> int:
        """A write whose effect the caller needs now; returns how many rows it changed."""
        await self._flush()
        rows = await self._conn.fetch(_q(sql) + " RETURNING 1", *args)
        return len(rows)

    def _notify(self, kind: str) -> None:
        """Tell every process on commit (NOTIFY is transactional) that `kind` changed: see Store.on_notice."""
        if kind not in self.notices:
            self.notices.add(kind)
            self._queue.append(_Write(f"SELECT pg_notify('{NOTICE_CHANNEL}', '{kind}')", (), ("notify", kind),
                                      None, False))

    def _wake(self) -> None:
        self._notify("wakeup")

    # -- sessions and answers -------------------------------------------------------------------

    async def answer_context(self, event_key: str, session_id: str) -> AnswerContext:
        await self._flush()
        r = await self._conn.fetchrow(_CONTEXT_SQL, event_key, session_id)
        assert r is not None
        r = tuple(r)
        a, s, p, i, n = r[:11], r[11:23], r[23:28], r[28:38], r[38:48]
        prior = AnswerRow(*a) if a[0] is not None else None
        if s[0] is None:
            return AnswerContext(prior, None, None, None, None)
        return AnswerContext(prior, SessionRow(*s), PlayerRow(*p) if p[0] is not None else None,
                             _item(i) if i[0] is not None else None, _item(n) if n[0] is not None else None)

    async def record_answer(self, answer: AnswerRow) -> None:
        a = answer
        await self._write(
            f"INSERT INTO answers ({_ANSWER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (a.session_id, a.position, a.attempt, a.question_id, a.player_id, a.choice, a.shown_choice,
             a.outcome, a.points, a.event_key, a.answered_at),
            ("answers", a.event_key), DuplicateAnswer(a.event_key))

    async def close_item(self, item: ItemRow) -> None:
        i = item
        await self._write(
            "UPDATE session_items SET status = ?, attempts_used = ?, hint_used = ?, points = ?, closed_at = ? "
            "WHERE session_id = ? AND position = ? AND status = 'open'",
            (i.status, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id, i.position),
            ("item", i.session_id, i.position), WriteConflict(f"item {i.session_id}/{i.position} is no longer open"))

    async def upsert_player(self, platform: str, tenant: str, user_id: str, display_name: str, now: float) -> int:
        row = await self._one(
            "INSERT INTO players (platform, tenant, user_id, display_name, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, tenant, user_id) DO UPDATE SET display_name = "
            "CASE WHEN excluded.display_name != '' THEN excluded.display_name ELSE players.display_name END "
            "RETURNING id",
            (platform, tenant, user_id, display_name, now))
        assert row is not None
        return row[0]

    async def get_player(self, player_id: int) -> PlayerRow | None:
        row = await self._one("SELECT id, platform, tenant, user_id, display_name FROM players WHERE id = ?",
                              (player_id,))
        return PlayerRow(*row) if row else None

    async def open_session_for(self, player_id: int) -> SessionRow | None:
        row = await self._one(f"SELECT {_SESSION_COLS} FROM sessions WHERE player_id = ? AND status = 'open'",
                              (player_id,))
        return SessionRow(*row) if row else None

    async def get_session(self, session_id: str) -> SessionRow | None:
        row = await self._one(f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ?", (session_id,))
        return SessionRow(*row) if row else None

    async def insert_session(self, session: SessionRow, items: list[ItemRow]) -> None:
        s = session
        await self._write(
            f"INSERT INTO sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.player_id, s.mode, s.status, s.position, s.total, s.created_at, s.challenge_set,
             s.route, s.finished_at, s.correct, s.points), ("session", s.id))
        await self._write(
            f"INSERT INTO session_items ({_ITEM_COLS}) SELECT * FROM unnest(?::text[], ?::int[], ?::text[], "
            "?::text[], ?::text[], ?::float8[], ?::int[], ?::int[], ?::int[], ?::float8[])",
            ([i.session_id for i in items], [i.position for i in items], [i.question_id for i in items],
             [i.choice_order for i in items], [i.status for i in items], [i.deadline for i in items],
             [i.attempts_used for i in items], [int(i.hint_used) for i in items], [i.points for i in items],
             [i.closed_at for i in items]), ("items", s.id))
        if any(i.deadline is not None for i in items):
            self._wake()

    async def update_session(self, session: SessionRow) -> None:
        s = session
        await self._write(
            "UPDATE sessions SET status = ?, position = ?, route = ?, finished_at = ?, correct = ?, points = ? "
            "WHERE id = ?", (s.status, s.position, s.route, s.finished_at, s.correct, s.points, s.id),
            ("session", s.id))

    async def get_item(self, session_id: str, position: int) -> ItemRow | None:
        row = await self._one(f"SELECT {_ITEM_COLS} FROM session_items WHERE session_id = ? AND position = ?",
                              (session_id, position))
        return _item(row) if row else None

    async def get_items(self, session_id: str) -> list[ItemRow]:
        rows = await self._all(f"SELECT {_ITEM_COLS} FROM session_items WHERE session_id = ? ORDER BY position",
                               (session_id,))
        return [_item(r) for r in rows]

    async def update_item(self, item: ItemRow) -> None:
        i = item
        await self._write(
            "UPDATE session_items SET status = ?, deadline = ?, attempts_used = ?, hint_used = ?, points = ?, "
            "closed_at = ? WHERE session_id = ? AND position = ?",
            (i.status, i.deadline, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id,
             i.position), ("item", i.session_id, i.position))
        if i.status == "open" and i.deadline is not None:
            self._wake()

    async def close_item_if_open(self, item: ItemRow) -> bool:
        i = item
        return await self._run(
            "UPDATE session_items SET status = ?, attempts_used = ?, hint_used = ?, points = ?, closed_at = ? "
            "WHERE session_id = ? AND position = ? AND status = 'open'",
            (i.status, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id, i.position)) == 1

    async def find_answer(self, event_key: str) -> AnswerRow | None:
        row = await self._one(f"SELECT {_ANSWER_COLS} FROM answers WHERE event_key = ?", (event_key,))
        return AnswerRow(*row) if row else None

    async def insert_answer(self, answer: AnswerRow) -> bool:
        a = answer
        return await self._run(
            f"INSERT INTO answers ({_ANSWER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (a.session_id, a.position, a.attempt, a.question_id, a.player_id, a.choice, a.shown_choice,
             a.outcome, a.points, a.event_key, a.answered_at)) == 1

    async def totals(self, player_id: int) -> Totals:
        row = await self._one("SELECT points, answered, correct FROM player_totals WHERE player_id = ?", (player_id,))
        return Totals(*row) if row else Totals()

    async def award_badge(self, player_id: int, badge: str, session_id: str, now: float) -> bool:
        return await self._run(
            "INSERT INTO badges (player_id, badge, session_id, awarded_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (player_id, badge, session_id, now)) == 1

    async def badges(self, player_id: int) -> list[str]:
        rows = await self._all("SELECT badge FROM badges WHERE player_id = ? ORDER BY awarded_at", (player_id,))
        return [r[0] for r in rows]

    async def get_setting(self, platform: str, tenant: str, key: str) -> str | None:
        row = await self._one("SELECT value FROM tenant_settings WHERE platform = ? AND tenant = ? AND key = ?",
                              (platform, tenant, key))
        return row[0] if row else None

    async def set_setting(self, platform: str, tenant: str, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO tenant_settings (platform, tenant, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, tenant, key) DO UPDATE SET value = excluded.value",
            (platform, tenant, key, value), ("setting", platform, tenant, key))
        self._notify("settings")

    async def due_items(self, now: float, limit: int) -> list[tuple[str, int]]:
        # rows another process is closing right now are skipped, not waited for
        rows = await self._all(
            "SELECT session_id, position FROM session_items WHERE status = 'open' AND deadline IS NOT NULL "
            "AND deadline <= ? ORDER BY deadline LIMIT ? FOR UPDATE SKIP LOCKED", (now, limit))
        return [(r[0], r[1]) for r in rows]

    async def next_deadline(self) -> float | None:
        row = await self._one("SELECT MIN(deadline) FROM session_items WHERE status = 'open' AND deadline IS NOT NULL")
        return row[0] if row else None

    async def challenge_sets_played(self, player_id: int) -> dict[str, bool]:
        rows = await self._all(
            "SELECT challenge_set, MAX(CASE WHEN status = 'finished' AND correct = total THEN 1 ELSE 0 END) "
            "FROM sessions WHERE player_id = ? AND mode = 'challenge' AND status != 'open' "
            "AND challenge_set IS NOT NULL GROUP BY challenge_set", (player_id,))
        return {r[0]: bool(r[1]) for r in rows}

    async def topic_accuracy(self, player_id: int) -> list[tuple[str, int, int]]:
        rows = await self._all(
            "SELECT question_id, COUNT(*), SUM(first_ok) FROM ("
            " SELECT i.question_id, CASE WHEN i.status = 'correct' AND i.attempts_used <= 1 THEN 1 ELSE 0 END"
            " AS first_ok FROM session_items i JOIN sessions s ON s.id = i.session_id"
            " WHERE s.player_id = ? AND i.status IN ('correct', 'wrong', 'timeout')"
            " UNION ALL SELECT p.question_id, a.correct FROM daily_answers a JOIN daily_posts p ON p.id = a.post_id"
            " WHERE a.player_id = ?) x GROUP BY question_id",
            (player_id, player_id))
        return [(r[0], r[1], r[2]) for r in rows]

    # -- teams ----------------------------------------------------------------------------------

    async def create_team(self, scope: str, name: str, name_key: str, player_id: int, now: float) -> int | None:
        row = await self._one(
            "INSERT INTO teams (scope, name, name_key, created_by, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING id", (scope, name, name_key, player_id, now))
        return row[0] if row else None

    async def team_by_key(self, scope: str, name_key: str) -> TeamRow | None:
        row = await self._one("SELECT id, scope, name FROM teams WHERE scope = ? AND name_key = ?", (scope, name_key))
        return TeamRow(*row) if row else None

    async def team_of(self, player_id: int) -> TeamRow | None:
        row = await self._one(
            "SELECT t.id, t.scope, t.name FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.player_id = ?",
            (player_id,))
        return TeamRow(*row) if row else None

    async def _touch_team(self, team_id: int) -> None:
        """Write the team's row, so that joins and leaves of one team cannot run side by side: the
        last member leaving deletes the team, and under snapshot isolation a count of members read
        beside another leave or join would be stale (the second writer is aborted and runs again)."""
        await self._run("UPDATE teams SET id = id WHERE id = ?", (team_id,))

    async def join_team(self, player_id: int, team_id: int, now: float) -> None:
        await self._touch_team(team_id)
        await self._run("INSERT INTO team_members (player_id, team_id, joined_at) VALUES (?, ?, ?)",
                        (player_id, team_id, now))

    async def leave_team(self, player_id: int) -> None:
        team = await self.team_of(player_id)
        if team is None:
            return
        await self._touch_team(team.id)
        await self._run("DELETE FROM team_members WHERE player_id = ?", (player_id,))
        left = await self._one("SELECT COUNT(*) FROM team_members WHERE team_id = ?", (team.id,))
        if left and left[0] == 0:
            # as in the SQLite store: fold what the team earned, then forget the team everywhere
            await self.apply_scores()
            await self._run("UPDATE score_facts SET team_id = NULL WHERE team_id = ?", (team.id,))
            await self._run("DELETE FROM team_periods WHERE team_id = ?", (team.id,))
            await self._run("DELETE FROM teams WHERE id = ?", (team.id,))

    async def list_teams(self, scope: str) -> list[RankRow]:
        rows = await self._all(
            "SELECT t.id, t.name, COALESCE(tp.points, 0), "
            "(SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members "
            "FROM teams t LEFT JOIN team_periods tp ON tp.team_id = t.id AND tp.scope = t.scope AND tp.period = 'all' "
            "WHERE t.scope = ? ORDER BY members DESC, t.name_key", (scope,))
        return [RankRow(*r) for r in rows]

    # -- leaderboards ---------------------------------------------------------------------------

    async def add_score(self, scope: str, week: str, month: str, player_id: int, points: int, answered: int,
                        correct: int, now: float) -> None:
        self.wrote_facts = True
        await self._write(
            "INSERT INTO score_facts (scope, week, month, in_all, player_id, team_id, points, answered, correct, at) "
            "VALUES (?, ?, ?, 1, ?, (SELECT team_id FROM team_members WHERE player_id = ?), ?, ?, ?, ?)",
            (scope, week, month, player_id, player_id, points, answered, correct, now), ("fact", object()))

    async def apply_scores(self) -> None:
        await self._flush()
        await self._conn.fetchval(_APPLY)

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
        ahead = await self._one(
            "SELECT COALESCE((SELECT SUM(players) FROM score_counts WHERE scope = ? AND period = ? AND points > ?), 0)"
            " + (SELECT COUNT(*) FROM score_periods WHERE scope = ? AND period = ? AND points = ? AND reached_at < ?)"
            " + (SELECT COUNT(*) FROM score_periods WHERE scope = ? AND period = ? AND points = ? AND reached_at = ? "
            "AND player_id < ?)",
            (scope, period, points, scope, period, points, reached, scope, period, points, reached, player_id))
        assert ahead is not None
        return int(ahead[0]) + 1, points

    async def top_teams(self, scope: str, period: str, per_member: bool, limit: int) -> list[RankRow]:
        order = "CAST(tp.points AS DOUBLE PRECISION) / GREATEST(members, 1)" if per_member else "tp.points"
        rows = await self._all(
            "SELECT * FROM (SELECT t.id, t.name, tp.points, "
            "(SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members, tp.reached_at "
            "FROM team_periods tp JOIN teams t ON t.id = tp.team_id WHERE tp.scope = ? AND tp.period = ?) tp "
            f"ORDER BY {order} DESC, tp.reached_at, tp.id LIMIT ?", (scope, period, limit))
        return [RankRow(r[0], r[1], r[2], r[3]) for r in rows]

    # -- daily posts ----------------------------------------------------------------------------

    async def set_daily_channel(self, row: DailyChannelRow, now: float) -> None:
        await self._run(
            "INSERT INTO daily_channels (platform, tenant, channel, post_time, timezone, enabled, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (platform, tenant, channel) DO UPDATE SET "
            "post_time = excluded.post_time, timezone = excluded.timezone, enabled = excluded.enabled, "
            "updated_at = excluded.updated_at",
            (row.platform, row.tenant, row.channel, row.post_time, row.timezone, int(row.enabled), now))
        self._wake()

    async def daily_channels(self, platform: str | None, tenant: str | None) -> list[DailyChannelRow]:
        rows = await self._all(
            "SELECT platform, tenant, channel, post_time, timezone, enabled FROM daily_channels "
            "WHERE (?::text IS NULL OR platform = ?) AND (?::text IS NULL OR tenant = ?) "
            "ORDER BY platform, tenant, channel", (platform, platform, tenant, tenant))
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
        return await self._run(
            f"INSERT INTO daily_posts ({_POST_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (r.id, r.platform, r.tenant, r.channel, r.local_date, r.question_id, r.choice_order, r.status,
             r.message_ref, r.lease_until, r.posted_at, r.closes_at)) == 1

    async def update_daily_post(self, row: DailyPostRow, expect_status: str) -> bool:
        r = row
        return await self._run(
            "UPDATE daily_posts SET status = ?, message_ref = ?, lease_until = ?, posted_at = ?, closes_at = ? "
            "WHERE id = ? AND status = ?",
            (r.status, r.message_ref, r.lease_until, r.posted_at, r.closes_at, r.id, expect_status)) == 1

    async def close_daily_windows(self, platform: str, tenant: str, channel: str, except_id: str, now: float) -> None:
        await self._run(
            "UPDATE daily_posts SET closes_at = ? WHERE platform = ? AND tenant = ? AND channel = ? AND id != ? "
            "AND status IN ('queued', 'posted') AND closes_at > ?",
            (now, platform, tenant, channel, except_id, now))

    async def daily_posts_due(self, status: str, now: float, field: str) -> list[DailyPostRow]:
        assert field in ("lease_until", "closes_at")
        rows = await self._all(
            f"SELECT {_POST_COLS} FROM daily_posts WHERE status = ? AND {field} <= ? ORDER BY {field} "
            "FOR UPDATE SKIP LOCKED", (status, now))
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
        return await self._run(
            "INSERT INTO daily_answers (post_id, player_id, choice, shown_choice, correct, points, event_key, "
            "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (post_id, player_id, choice, shown, int(correct), points, event_key, now)) == 1

    async def daily_answer(self, post_id: str, player_id: int) -> tuple[str, bool, int, str] | None:
        row = await self._one(
            "SELECT shown_choice, correct, points, event_key FROM daily_answers WHERE post_id = ? AND player_id = ?",
            (post_id, player_id))
        return (row[0], bool(row[1]), row[2], row[3]) if row else None

    async def daily_counts(self, post_id: str) -> tuple[int, int]:
        row = await self._one("SELECT COUNT(*), COALESCE(SUM(correct), 0) FROM daily_answers WHERE post_id = ?",
                              (post_id,))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    # -- streaks and review ---------------------------------------------------------------------

    async def add_activity(self, player_id: int, local_date: str) -> None:
        await self._write("INSERT INTO activity_days (player_id, local_date) VALUES (?, ?) ON CONFLICT DO NOTHING",
                          (player_id, local_date), ("activity", player_id, local_date))

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
        await self._write(
            "INSERT INTO review_items (player_id, question_id, box, due_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id, question_id) DO UPDATE SET box = excluded.box, due_at = excluded.due_at",
            (player_id, question_id, box, due_at), ("review", player_id, question_id))

    async def drop_review(self, player_id: int, question_id: str) -> None:
        await self._write("DELETE FROM review_items WHERE player_id = ? AND question_id = ?",
                          (player_id, question_id), ("review", player_id, question_id))

    async def due_reviews(self, player_id: int, now: float, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT question_id FROM review_items WHERE player_id = ? AND due_at <= ? ORDER BY due_at, question_id "
            "LIMIT ?", (player_id, now, limit))
        return [r[0] for r in rows]

    async def next_review(self, player_id: int) -> tuple[float, int] | None:
        row = await self._one("SELECT MIN(due_at), COUNT(*) FROM review_items WHERE player_id = ?", (player_id,))
        return (row[0], int(row[1])) if row and row[1] else None

    async def answers_to_item(self, session_id: str, position: int) -> list[AnswerRow]:
        rows = await self._all(f"SELECT {_ANSWER_COLS} FROM answers WHERE session_id = ? AND position = ? "
                               "ORDER BY attempt", (session_id, position))
        return [AnswerRow(*r) for r in rows]

    async def item_answers(self, platform: str | None, tenant: str | None) -> list[ItemAnswerRow]:
        rows = await self._all(
            "SELECT * FROM (SELECT s.player_id, i.question_id, i.session_id, i.position, i.status, i.hint_used, "
            "a.choice, a.outcome, COALESCE(LAG(i.closed_at) OVER (PARTITION BY i.session_id ORDER BY i.position), "
            "s.created_at) AS opened_at, a.answered_at, i.closed_at "
            "FROM session_items i JOIN sessions s ON s.id = i.session_id JOIN players p ON p.id = s.player_id "
            "LEFT JOIN answers a ON a.session_id = i.session_id AND a.position = i.position AND a.attempt = 1 "
            "WHERE (?::text IS NULL OR p.platform = ?) AND (?::text IS NULL OR p.tenant = ?)) x "
            "WHERE choice IS NOT NULL OR status = 'timeout' ORDER BY player_id, opened_at, session_id, position",
            (platform, platform, tenant, tenant))
        return [ItemAnswerRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), *r[6:]) for r in rows]

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


class PostgresStore(Store):
    """A pool of connections to one PostgreSQL database; see the module docstring."""

    def __init__(self, dsn: str, *, max_connections: int = 10, fold_in_background: bool = True) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self.fold_in_background = fold_in_background
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._folding: asyncio.Task[None] | None = None
        self._fold_again = False

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_connections,
                                                   reset=_keep_session)
            async with self._pool.acquire() as conn:
                await migrate(conn)
        except (*_UNREACHABLE, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open the PostgreSQL database: {exc}") from exc

    async def close(self) -> None:
        if self._folding is not None:
            await asyncio.gather(self._folding, return_exceptions=True)
            self._folding = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def on_notice(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    async def listen(self) -> None:
        if self._listener is not None:
            return
        self._listener = await asyncpg.connect(self.dsn)

        def notice(_conn: object, _pid: int, _channel: str, kind: str) -> None:
            for callback in self._listeners:
                callback(kind)
        await self._listener.add_listener(NOTICE_CHANNEL, notice)

    async def schema_version(self) -> int:
        assert self._pool is not None
        return await self._pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")

    async def rebuild_scores(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPLY_LOCK)
            await conn.execute("TRUNCATE player_totals, score_counts, score_periods, team_periods")
            await conn.execute("UPDATE score_facts SET applied = false WHERE applied")
            await conn.fetchval(_APPLY)

    async def fold_scores(self) -> None:
        """Fold every committed, pending fact into the aggregates, one process at a time."""
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPLY_LOCK)
            await conn.fetchval(_APPLY)

    def _fold_soon(self) -> None:
        """After a commit with facts: fold them in the background, batching whatever comes meanwhile."""
        if self._folding is not None and not self._folding.done():
            self._fold_again = True
            return

        async def run() -> None:
            while True:
                await asyncio.sleep(FOLD_DELAY)
                self._fold_again = False
                try:
                    await self.fold_scores()
                except Exception as exc:  # noqa: BLE001 - the facts stay pending; the next fold takes them
                    log.warning("folding scores failed (%r); they stay pending", exc, exc_info=True)
                    return
                if not self._fold_again or self._pool is None:
                    return

        self._folding = asyncio.ensure_future(run())

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Across every process on the database: a session advisory lock on the name's hash, held on a
        connection of its own (PostgreSQL drops it if the process dies)."""
        async with super().exclusive(name):  # one waiting connection per name and process at most
            pool, conn = await self._acquire()
            try:
                await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", name)
                try:
                    yield
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)
            finally:
                await pool.release(conn)

    async def _acquire(self) -> tuple[asyncpg.Pool, asyncpg.Connection]:
        """A connection and the pool it goes back to (even if the store is closing meanwhile)."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            return pool, await pool.acquire()
        except _UNREACHABLE as exc:
            raise StoreBusy(f"database unreachable: {exc}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        pool, conn = await self._acquire()
        tx = PostgresTx(conn)
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try:
                yield tx
                await tx._flush()
                await conn.execute("COMMIT")
            except BaseException:
                if not conn.is_closed():
                    try:
                        await conn.execute("ROLLBACK")
                    except _UNREACHABLE:
                        pass
                raise
        except _RETRYABLE as exc:
            raise Serialization(str(exc)) from exc
        except _UNREACHABLE as exc:
            raise StoreBusy(f"database unreachable: {exc}") from exc
        finally:
            await pool.release(conn)
        if tx.wrote_facts and self.fold_in_background and self._pool is not None:
            self._fold_soon()
        tx.committed()


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the missing steps, each in its own transaction, under an advisory lock; the version."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATE_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        for version, name, sql in sorted(MIGRATIONS):
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql_for(sql, "postgresql"))
                if version == REFOLD_TEAMS:
                    await _refold_team_keys(conn)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            current = version
        return current
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATE_LOCK)


REFOLD_TEAMS = 7  # the step whose SQLite script re-keys teams with mldebt_fold (see bot/store/migrations.py)


async def _refold_team_keys(conn: asyncpg.Connection) -> None:
    """Step 7's team re-keying, in Python (PostgreSQL has no case folding): each team, oldest first,
    takes the folded key of its name unless another team of its server holds that key already, in
    which case it keeps its old key (SQLite's UPDATE OR IGNORE), so no team becomes unreachable."""
    rows = await conn.fetch("SELECT id, scope, name, name_key FROM teams ORDER BY id")
    taken = {(r["scope"], r["name_key"]) for r in rows}
    for r in rows:
        key = fold_key(r["name"])
        if key == r["name_key"] or (r["scope"], key) in taken:
            continue
        await conn.execute("UPDATE teams SET name_key = $1 WHERE id = $2", key, r["id"])
        taken.discard((r["scope"], r["name_key"]))
        taken.add((r["scope"], key))
