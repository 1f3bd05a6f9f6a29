"""The aiosqlite implementation of Store: WAL, a busy timeout, foreign keys, versioned migrations,
and group commit.

One aiosqlite connection per process. A trip to its thread costs more than most statements inside
SQLite, so transactions are batched: callers take turns (one transaction body runs at a time, in
arrival order); the first of a batch opens BEGIN IMMEDIATE, each transaction runs inside its own
SAVEPOINT, and the batch ends with one COMMIT when nobody is waiting or MAX_BATCH transactions
joined. A transaction's writes are queued and sent, with its RELEASE, as it ends, without waiting;
answers waiting for their turn have their context read ahead (SqliteTx._touch drops a read-ahead
context as soon as any transaction writes to its session). Leaving `transaction()` returns only
after the batch's COMMIT: nothing is acknowledged before it is committed. A failing transaction
rolls back to its savepoint and fails alone; a failing COMMIT fails every caller of the batch.

Durability: synchronous=FULL by default, so the COMMIT has synced the WAL before any caller of the
batch returns; what a caller was told survives a process crash, an OS crash or a power cut (given a
disk that honours fsync). A crash before the COMMIT loses the batch, none of which was acknowledged.
With one sync per batch, FULL costs about what NORMAL does (bench/README.md).

The scoring aggregates (player_totals, score_periods with their score_counts, team_periods) are
derived from score_facts: each batch folds its facts in just before its COMMIT, moving a watermark
in the same transaction (apply_scores); rebuild_scores recomputes them all from the facts.

A second process on the same file takes the write lock with its own BEGIN IMMEDIATE and waits
(busy timeout) while a batch of the first holds it, so reads inside a batch are never stale.

Private parts of aiosqlite are used on purpose: its connection thread's queue (`_tx`) and the raw
sqlite3 connection (`_conn`), to run a function of ours on that thread (there is no public call for
it; this is what its own methods do). pyproject pins the versions this was checked against.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

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

log = logging.getLogger(__name__)

_SESSION_COLS = ("id, player_id, mode, status, position, total, created_at, challenge_set, route, "
                 "finished_at, correct, points")
_ITEM_COLS = ("session_id, position, question_id, choice_order, status, deadline, attempts_used, "
              "hint_used, points, closed_at")
_POST_COLS = ("id, platform, tenant, channel, local_date, question_id, choice_order, status, message_ref, "
              "lease_until, posted_at, closes_at")
_ANSWER_COLS = ("session_id, position, attempt, question_id, player_id, choice, shown_choice, outcome, "
                "points, event_key, answered_at")
# the statements of every answer, built once
_INSERT_ANSWER = f"INSERT INTO answers ({_ANSWER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
_CLOSE_ITEM = ("UPDATE session_items SET status = ?, attempts_used = ?, hint_used = ?, points = ?, closed_at = ? "
               "WHERE session_id = ? AND position = ? AND status = 'open'")
_UPDATE_ITEM = ("UPDATE session_items SET status = ?, deadline = ?, attempts_used = ?, hint_used = ?, points = ?, "
                "closed_at = ? WHERE session_id = ? AND position = ?")
_UPDATE_SESSION = "UPDATE sessions SET status = ?, position = ?, route = ?, finished_at = ?, correct = ?, points = ? WHERE id = ?"
_ADD_SCORE = ("INSERT INTO score_facts (scope, week, month, in_all, player_id, team_id, points, answered, correct, at) "
              "VALUES (?, ?, ?, 1, ?, (SELECT team_id FROM team_members WHERE player_id = ?), ?, ?, ?, ?)")


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


MAX_BATCH = 256  # transactions per COMMIT at most (~50 ms of work), so a batch never holds the write lock long
READ_AHEAD = 8  # answer contexts per read-ahead call
SWITCH_INTERVAL = 0.001  # seconds: see SqliteStore.open

# One statement, always one row: the answer already stored under the event key, the session, its
# owner, the current and the next item (each NULLs when absent), and the letters already tried on
# the current item (read only when it has attempts: a second attempt needs no trip of its own) and,
# when the current item is the last, every item as JSON (the summary of a finishing answer). The one-row driving table makes
# every part a LEFT JOIN on a unique key, so a replayed answer is found even if its session is not.
_CONTEXT_SQL = (
    "SELECT " + ", ".join(f"a.{c}" for c in _ANSWER_COLS.split(", ")) + ", "
    "s.id, s.player_id, s.mode, s.status, s.position, s.total, s.created_at, s.challenge_set, s.route, "
    "s.finished_at, s.correct, s.points, p.id, p.platform, p.tenant, p.user_id, p.display_name, "
    + ", ".join(f"i.{c}" for c in _ITEM_COLS.split(", ")) + ", "
    + ", ".join(f"n.{c}" for c in _ITEM_COLS.split(", "))
    + ", CASE WHEN i.attempts_used > 0 THEN (SELECT group_concat(t.shown_choice, '') FROM answers t "
    "WHERE t.session_id = i.session_id AND t.position = i.position AND t.outcome != 'late') END, "
    "CASE WHEN s.position = s.total - 1 THEN (SELECT json_group_array(json_array("
    # JSON would round the REAL times to 15 digits: they travel as exact text
    + ", ".join(f"CASE WHEN e.{c} IS NOT NULL THEN printf('%!.17g', e.{c}) END" if c in ("deadline", "closed_at")
                else f"e.{c}"
                for c in _ITEM_COLS.split(", "))
    + ")) FROM session_items e WHERE e.session_id = s.id) END"
    " FROM (SELECT ? AS event_key, ? AS session_id) k "
    "LEFT JOIN answers a ON a.event_key = k.event_key "
    "LEFT JOIN sessions s ON s.id = k.session_id LEFT JOIN players p ON p.id = s.player_id "
    "LEFT JOIN session_items i ON i.session_id = s.id AND i.position = s.position "
    "LEFT JOIN session_items n ON n.session_id = s.id AND n.position = s.position + 1"
)


def _json_items(text: str) -> tuple[ItemRow, ...]:
    items = []
    for e in json.loads(text):
        for time in (5, 9):  # deadline, closed_at
            if e[time] is not None:
                e[time] = float(e[time])
        items.append(_item(e))
    return tuple(sorted(items, key=lambda item: item.position))


def _context(rows: list) -> AnswerContext:
    r = rows[0]
    answer = AnswerRow(*r[:11]) if r[0] is not None else None
    if r[11] is None:
        return AnswerContext(answer, None, None, None, None)
    i, n = r[28:38], r[38:48]
    return AnswerContext(answer, SessionRow(*r[11:23]), PlayerRow(*r[23:28]), _item(i) if i[0] is not None else None,
                         _item(n) if n[0] is not None else None, tuple(r[48] or ""),
                         _json_items(r[49]) if r[49] is not None else None)


def _facts(cols: str, where: str) -> str:
    """The facts in (watermark, top] once per period they count in: week, month, all time."""
    src = f"FROM score_facts WHERE id > ? AND id <= ? AND {where}"
    return (f"SELECT scope, week AS period, {cols} {src} AND week IS NOT NULL "
            f"UNION ALL SELECT scope, month, {cols} {src} AND month IS NOT NULL "
            f"UNION ALL SELECT scope, 'all', {cols} {src} AND in_all = 1")


_APPLY_TOTALS = (
    "INSERT INTO player_totals (player_id, points, answered, correct) "
    "SELECT player_id, SUM(points), SUM(answered), SUM(correct) FROM score_facts "
    "WHERE id > ? AND id <= ? AND in_all = 1 AND player_id IS NOT NULL GROUP BY player_id "
    "ON CONFLICT (player_id) DO UPDATE SET points = player_totals.points + excluded.points, "
    "answered = player_totals.answered + excluded.answered, correct = player_totals.correct + excluded.correct")
# reached_at (the tie-break: who reached the score first) is the last fact that earned points, or,
# for a new row without points, its first fact: the same rule the per-answer upsert followed
_APPLY_PERIODS = (
    "INSERT INTO score_periods (scope, period, player_id, points, answered, correct, reached_at) "
    "SELECT scope, period, player_id, SUM(points), SUM(answered), SUM(correct), "
    "COALESCE(MAX(CASE WHEN points > 0 THEN at END), MIN(at)) "
    f"FROM ({_facts('player_id, points, answered, correct, at', 'player_id IS NOT NULL')}) "
    "WHERE true GROUP BY scope, period, player_id "
    "ON CONFLICT (scope, period, player_id) DO UPDATE SET points = score_periods.points + excluded.points, "
    "answered = score_periods.answered + excluded.answered, correct = score_periods.correct + excluded.correct, "
    "reached_at = CASE WHEN excluded.points > 0 THEN excluded.reached_at ELSE score_periods.reached_at END")
_APPLY_TEAMS = (
    "INSERT INTO team_periods (scope, period, team_id, points, reached_at) "
    "SELECT scope, period, team_id, SUM(points), MAX(at) "
    f"FROM ({_facts('team_id, points, at', 'team_id IS NOT NULL AND points != 0')}) "
    "WHERE team_id IN (SELECT id FROM teams) GROUP BY scope, period, team_id "
    "ON CONFLICT (scope, period, team_id) DO UPDATE SET points = team_periods.points + excluded.points, "
    "reached_at = excluded.reached_at")


def apply_scores(conn: sqlite3.Connection) -> None:
    """Fold the facts above the watermark into the aggregates and move the watermark, atomically
    (it runs inside the caller's transaction). SQLite has one writer at a time, so fact ids commit in
    order and nothing below the watermark can still appear."""
    (applied,) = conn.execute("SELECT applied_to FROM score_watermark").fetchone()
    (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM score_facts").fetchone()
    if top <= applied:
        return
    conn.execute(_APPLY_TOTALS, (applied, top))
    conn.execute(_APPLY_PERIODS, (applied, top) * 3)
    conn.execute(_APPLY_TEAMS, (applied, top) * 3)
    conn.execute("UPDATE score_watermark SET applied_to = ?", (top,))


def rebuild_scores(conn: sqlite3.Connection) -> None:
    """Every aggregate again from the facts: after a corruption, or to check them."""
    for table in ("player_totals", "score_counts", "score_periods", "team_periods"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("UPDATE score_watermark SET applied_to = 0")
    apply_scores(conn)


# A queued write: (sql, params, None) runs the statement; (sql, params, conflict) runs it with
# RETURNING 1 in its text and raises `conflict` if it changed no row; a callable gets the connection.
# Tuples rather than closures: no Python frame per statement on the connection's thread.
Write = tuple[str, Any, Exception | None] | Callable[[sqlite3.Connection], object]


def _apply(conn: sqlite3.Connection, writes: list[Write]) -> None:
    execute = conn.execute
    for write in writes:
        if type(write) is tuple:
            sql, params, conflict = write
            if conflict is None:
                execute(sql, params)
            elif not execute(sql, params).fetchall():
                raise conflict
        else:
            write(conn)  # type: ignore[operator]


class _Batch:
    """Transactions sharing one BEGIN IMMEDIATE ... COMMIT, each inside its own SAVEPOINT."""

    def __init__(self) -> None:
        self.begun = False  # BEGIN IMMEDIATE ran (set on the connection's thread)
        self.size = 0
        self.facts = False  # some transaction recorded scoring facts: apply them before COMMIT
        self.tails: list[_Tail] = []  # every finished transaction, to release after the COMMIT
        # answer contexts read ahead for callers waiting for their turn, by session id
        self.ahead: dict[str, _Ahead] = {}


class _Ahead:
    """An answer context read ahead in this batch: still valid while no transaction of the batch
    wrote to its session (every write to a session drops its entry: SqliteTx._touch)."""

    __slots__ = ("key", "rows", "index")

    def __init__(self, key: str, rows: asyncio.Future, index: int) -> None:
        self.key, self.rows, self.index = key, rows, index


class _Tail:
    """What is left of a finished transaction: its queued writes and its RELEASE, or, for one that
    raised (done is None), its ROLLBACK TO. Sent to the connection's thread as the transaction ends,
    without waiting; its outcome is handed to its caller after the batch's COMMIT."""

    __slots__ = ("tx", "writes", "done", "error")

    def __init__(self, tx: SqliteTx, writes: list, done: asyncio.Future[None] | None) -> None:
        self.tx, self.writes, self.done = tx, writes, done
        self.error: BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        tx = self.tx
        try:
            if self.done is not None:
                if self.writes and not tx.opened:
                    conn.execute("SAVEPOINT tx")
                    tx.opened = True
                _apply(conn, self.writes)
                if tx.opened:
                    conn.execute("RELEASE tx")
                    tx.opened = False
                return
        except Exception as exc:  # noqa: BLE001 - this transaction fails alone; the batch goes on
            self.error = exc
        if tx.opened:
            conn.execute("ROLLBACK TO tx")
            conn.execute("RELEASE tx")
            tx.opened = False


class _Pipe:
    """Calls for aiosqlite's connection thread, sent in order and in bulk.

    Every put on aiosqlite's queue wakes its thread (a futex wake and, on a busy machine, a context
    switch that costs the event loop far more than the call itself); every result wakes the event
    loop. So calls are appended to a deque, and only the first call after the thread went idle puts
    one drain function on aiosqlite's queue: the drain runs every call present, in order; only calls
    somebody waits for (reads, the COMMIT) wake the event loop, not the tails sent without waiting.
    The same holds the other way: results go to a deque, and only the first result after the event
    loop took the last ones sends a wake-up (a write to the loop's self-pipe, which took a quarter
    of the thread's busy time when every result sent its own). aiosqlite has no public call for
    running a function on its thread; `_tx.put_nowait((future, fn))` is what its own `_execute` does.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._calls: deque[tuple[Callable[..., Any], tuple, asyncio.Future | None]] = deque()
        self._queued = False
        self._loop = asyncio.get_running_loop()
        # results for the event loop, and whether a wake-up to settle them is already on its way
        self._ready: deque[tuple[asyncio.Future, bool, Any]] = deque()
        self._waking = False

    def submit(self, fn: Callable[..., Any], *args: Any, wait: bool = True) -> asyncio.Future | None:
        future = self._loop.create_future() if wait else None
        self._calls.append((fn, args, future))
        if not self._queued:
            self._queued = True
            self._db._tx.put_nowait((None, self._drain))
        return future

    def _drain(self) -> None:
        """On the connection's thread: run the queued calls until none is left."""
        while True:
            while self._calls:
                fn, args, future = self._calls.popleft()
                try:
                    result, ok = fn(*args), True
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    result, ok = exc, False
                if future is not None:  # somebody waits for it: wake the event loop now
                    self._ready.append((future, ok, result))
                    if not self._waking:
                        self._waking = True
                        self._loop.call_soon_threadsafe(self._settle_ready)
            self._queued = False
            if not self._calls:
                return
            self._queued = True  # calls arrived after the check: keep going (a second drain would too)

    def _settle_ready(self) -> None:
        """On the event loop: hand every result that arrived since the wake-up to its caller. The flag
        is cleared before the results are taken, so a result appended after this point either is
        taken here or sends a wake-up of its own."""
        self._waking = False
        ready = self._ready
        while ready:
            _settle(*ready.popleft())


def _settle(future: asyncio.Future, ok: bool, result: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(result)
    else:
        future.set_exception(result)


def _begin(conn: sqlite3.Connection, batch: _Batch) -> None:
    if not batch.begun:
        conn.execute("BEGIN IMMEDIATE")
        batch.begun = True


def _trip(conn: sqlite3.Connection, batch: _Batch, tx: SqliteTx, writes: list,
          reads: list[tuple[str, tuple]]) -> list[list]:
    """On the connection's thread: this transaction's queued writes, then its reads."""
    _begin(conn, batch)
    if not tx.opened:
        conn.execute("SAVEPOINT tx")
        tx.opened = True
    _apply(conn, writes)
    return [conn.execute(sql, params).fetchall() for sql, params in reads]


def _end(conn: sqlite3.Connection, batch: _Batch, tail: _Tail, reads: list[tuple[str, tuple]]) -> list[list] | None:
    """On the connection's thread: a finished transaction's tail, then reads ahead for the callers
    waiting for their turn (only inside the batch's transaction, so nobody else wrote since)."""
    try:
        _begin(conn, batch)
    except sqlite3.Error as exc:
        tail.error = StoreBusy(str(exc))
        return None
    tail.run(conn)
    return [conn.execute(sql, params).fetchall() for sql, params in reads]


def _read(conn: sqlite3.Connection, batch: _Batch, reads: list[tuple[str, tuple]]) -> list[list] | None:
    """On the connection's thread: reads ahead, only inside the batch's transaction."""
    return [conn.execute(sql, params).fetchall() for sql, params in reads] if batch.begun else None


def _commit(conn: sqlite3.Connection, batch: _Batch) -> None:
    """On the connection's thread: the aggregates of the batch's facts, then COMMIT."""
    _begin(conn, batch)
    try:
        if batch.facts:
            conn.execute("SAVEPOINT scores")
            try:
                apply_scores(conn)
            except sqlite3.Error as exc:
                # the facts stay committed; the watermark did not move, so the next batch applies them
                log.warning("leaderboard aggregates not applied in this batch (retried with the next): %s", exc)
                conn.execute("ROLLBACK TO scores")
            conn.execute("RELEASE scores")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteTx(OutboxSql, InstallationsSql, DailySql, Tx):
    """One transaction of a batch: a SAVEPOINT inside the batch's BEGIN IMMEDIATE ... COMMIT.

    Writes that return nothing are queued (`_write`; the answer's own methods append their tuple
    directly) and go to SQLite with the transaction's next read or, when the block ends, as its
    tail, sent without waiting. Reads (`_reads`) run the queued writes first, so the transaction
    always reads its own writes. An answer whose context was read ahead while it waited for its
    turn makes no trip of its own that it waits for.
    """

    def __init__(self, store: SqliteStore, batch: _Batch) -> None:
        self._store = store
        self._batch = batch
        self._writes: list[Write] = []
        self.opened = False  # its SAVEPOINT is open (set on the connection's thread)
        self.wrote_facts = False

    async def _reads(self, reads: list[tuple[str, tuple]]) -> list[list]:
        """One trip: this transaction's queued writes, then `reads`."""
        return await self._store._trip(self, reads)

    def _touch(self, session_id: str | None = None) -> None:
        """This transaction writes to a session (None: to players): contexts read ahead of it are stale."""
        if session_id is None:
            self._batch.ahead.clear()
        else:
            self._batch.ahead.pop(session_id, None)

    async def _write(self, sql: str, params: tuple = ()) -> None:
        self._writes.append((sql, params, None))

    async def _write_many(self, sql: str, rows: list[tuple]) -> None:
        self._writes.append(lambda conn: conn.executemany(sql, rows))

    async def _write_fn(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self._writes.append(fn)

    def _guarded(self, sql: str, params: tuple, conflict: Exception) -> None:
        """A queued write that must change a row (`sql` ends in RETURNING 1); if it changes none,
        `conflict` is raised."""
        self._writes.append((sql, params, conflict))

    async def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        [rows] = await self._reads([(sql, params)])
        return tuple(rows[0]) if rows else None

    async def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        [rows] = await self._reads([(sql, params)])
        return [tuple(r) for r in rows]

    async def _run(self, sql: str, params: tuple = ()) -> int:
        """A write whose effect the caller needs now; returns how many rows it changed."""
        [rows] = await self._reads([(f"{sql} RETURNING 1", params)])
        return len(rows)

    async def answer_context(self, event_key: str, session_id: str) -> AnswerContext:
        if self._store._wanted.get(session_id) == event_key:
            del self._store._wanted[session_id]  # its turn came before anyone read it ahead
        ahead = self._batch.ahead.pop(session_id, None)
        rows = None
        if ahead is not None and ahead.key == event_key and not self._writes:
            try:
                results = await ahead.rows
            except sqlite3.Error:
                results = None  # read it again below, in this transaction's own trip
            if results is not None:
                rows = results[ahead.index]
        if rows is None:
            [rows] = await self._reads([(_CONTEXT_SQL, (event_key, session_id))])
        return _context(rows)

    async def record_answer(self, answer: AnswerRow) -> None:
        a = answer
        self._touch(a.session_id)
        self._guarded(
            _INSERT_ANSWER + " RETURNING 1",
            (a.session_id, a.position, a.attempt, a.question_id, a.player_id, a.choice, a.shown_choice,
             a.outcome, a.points, a.event_key, a.answered_at),
            DuplicateAnswer(a.event_key))

    async def close_item(self, item: ItemRow) -> None:
        i = item
        self._touch(i.session_id)
        self._guarded(
            _CLOSE_ITEM + " RETURNING 1",
            (i.status, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id, i.position),
            WriteConflict(f"item {i.session_id}/{i.position} is no longer open"))

    async def upsert_player(self, platform: str, tenant: str, user_id: str, display_name: str, now: float) -> int:
        self._touch()
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
        self._touch(s.id)
        await self._write(
            f"INSERT INTO sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.player_id, s.mode, s.status, s.position, s.total, s.created_at, s.challenge_set,
             s.route, s.finished_at, s.correct, s.points),
        )
        await self._write_many(
            f"INSERT INTO session_items ({_ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i.session_id, i.position, i.question_id, i.choice_order, i.status, i.deadline,
              i.attempts_used, int(i.hint_used), i.points, i.closed_at) for i in items],
        )

    async def update_session(self, session: SessionRow) -> None:
        s = session
        self._batch.ahead.pop(s.id, None)  # _touch, inline: this and the writes below are on every answer
        self._writes.append((_UPDATE_SESSION, (s.status, s.position, s.route, s.finished_at, s.correct, s.points,
                                               s.id), None))

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
        self._batch.ahead.pop(i.session_id, None)
        self._writes.append((_UPDATE_ITEM, (i.status, i.deadline, i.attempts_used, int(i.hint_used), i.points,
                                            i.closed_at, i.session_id, i.position), None))

    async def close_item_if_open(self, item: ItemRow) -> bool:
        i = item
        self._touch(i.session_id)
        changed = await self._run(
            _CLOSE_ITEM,
            (i.status, i.attempts_used, int(i.hint_used), i.points, i.closed_at, i.session_id, i.position),
        )
        return changed == 1

    async def find_answer(self, event_key: str) -> AnswerRow | None:
        row = await self._one(f"SELECT {_ANSWER_COLS} FROM answers WHERE event_key = ?", (event_key,))
        return AnswerRow(*row) if row else None

    async def insert_answer(self, answer: AnswerRow) -> bool:
        a = answer
        self._touch(a.session_id)
        changed = await self._run(
            _INSERT_ANSWER,
            (a.session_id, a.position, a.attempt, a.question_id, a.player_id, a.choice, a.shown_choice,
             a.outcome, a.points, a.event_key, a.answered_at),
        )
        return changed == 1

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
        await self._write(
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
        """Per question: times answered (a time-out counts, a skip does not; daily answers too) and
        times right at the first attempt."""
        return await self._all(
            "SELECT question_id, COUNT(*), SUM(first_ok) FROM ("
            " SELECT i.question_id, CASE WHEN i.status = 'correct' AND i.attempts_used <= 1 THEN 1 ELSE 0 END"
            " AS first_ok FROM session_items i JOIN sessions s ON s.id = i.session_id"
            " WHERE s.player_id = ? AND i.status IN ('correct', 'wrong', 'timeout')"
            " UNION ALL SELECT p.question_id, a.correct FROM daily_answers a JOIN daily_posts p ON p.id = a.post_id"
            " WHERE a.player_id = ?) GROUP BY question_id",
            (player_id, player_id),
        )

    async def item_answers(self, platform: str | None, tenant: str | None) -> list[ItemAnswerRow]:
        rows = await self._all(
            "SELECT * FROM (SELECT s.player_id, i.question_id, i.session_id, i.position, i.status, i.hint_used, "
            "a.choice, a.outcome, COALESCE(LAG(i.closed_at) OVER (PARTITION BY i.session_id ORDER BY i.position), "
            "s.created_at) AS opened_at, a.answered_at, i.closed_at "
            "FROM session_items i JOIN sessions s ON s.id = i.session_id JOIN players p ON p.id = s.player_id "
            "LEFT JOIN answers a ON a.session_id = i.session_id AND a.position = i.position AND a.attempt = 1 "
            "WHERE (? IS NULL OR p.platform = ?) AND (? IS NULL OR p.tenant = ?)) x "
            "WHERE choice IS NOT NULL OR status = 'timeout' ORDER BY player_id, opened_at, session_id, position",
            (platform, platform, tenant, tenant))
        return [ItemAnswerRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), *r[6:]) for r in rows]

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
            # the facts already earned go to the team's rows first; then the team and its points go,
            # and its facts no longer name it, so a rebuild agrees and a later team reusing the id
            # starts from nothing
            await self.apply_scores()
            await self._write("UPDATE score_facts SET team_id = NULL WHERE team_id = ?", (team.id,))
            await self._write("DELETE FROM team_periods WHERE team_id = ?", (team.id,))
            await self._write("DELETE FROM teams WHERE id = ?", (team.id,))

    async def list_teams(self, scope: str) -> list[RankRow]:
        rows = await self._all(
            "SELECT t.id, t.name, COALESCE(tp.points, 0), "
            "(SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members "
            "FROM teams t LEFT JOIN team_periods tp ON tp.team_id = t.id AND tp.scope = t.scope AND tp.period = 'all' "
            "WHERE t.scope = ? ORDER BY members DESC, t.name_key",
            (scope,))
        return [RankRow(*r) for r in rows]

    # -- leaderboards ---------------------------------------------------------------------------

    async def add_score(self, scope: str, week: str, month: str, player_id: int, points: int, answered: int,
                        correct: int, now: float) -> None:
        self.wrote_facts = True
        self._writes.append((_ADD_SCORE, (scope, week, month, player_id, player_id, points, answered, correct, now),
                             None))

    async def apply_scores(self) -> None:
        await self._write_fn(apply_scores)

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
        await self._write("INSERT INTO activity_days (player_id, local_date) VALUES (?, ?) ON CONFLICT DO NOTHING",
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
        await self._write(
            "INSERT INTO review_items (player_id, question_id, box, due_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (player_id, question_id) DO UPDATE SET box = excluded.box, due_at = excluded.due_at",
            (player_id, question_id, box, due_at))

    async def drop_review(self, player_id: int, question_id: str) -> None:
        await self._write("DELETE FROM review_items WHERE player_id = ? AND question_id = ?", (player_id, question_id))

    async def due_reviews(self, player_id: int, now: float, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT question_id FROM review_items WHERE player_id = ? AND due_at <= ? ORDER BY due_at, question_id "
            "LIMIT ?", (player_id, now, limit))
        return [r[0] for r in rows]

    async def next_review(self, player_id: int) -> tuple[float, int] | None:
        row = await self._one("SELECT MIN(due_at), COUNT(*) FROM review_items WHERE player_id = ?", (player_id,))
        return (row[0], row[1]) if row and row[1] else None

    async def answers_to_item(self, session_id: str, position: int) -> list[AnswerRow]:
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
    """See the module docstring: one connection, transactions grouped into batches, one COMMIT each."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000, synchronous: str = "FULL",
                 max_batch: int = MAX_BATCH) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self.max_batch = max_batch
        self._db: aiosqlite.Connection | None = None
        self._pipe: _Pipe  # set by open()
        self._batch: _Batch | None = None
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wanted: dict[str, str] = {}  # session id -> event key of answers waiting for their turn
        self._committing: set[asyncio.Future] = set()  # COMMITs queued, not yet done

    async def open(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.exists():
                raise StoreUnavailable(f"folder {parent} does not exist")
        # The event loop and aiosqlite's thread pass the GIL back and forth for every call; after
        # each wake-up it sends, the connection thread waits for the GIL up to the switch interval.
        # 1 ms instead of CPython's 5 ms measured +12-20% answers/s (bench/README.md). Never raised.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute(f"PRAGMA synchronous = {self.synchronous}")
            await self._db.execute("PRAGMA foreign_keys = ON")
            await self._db.create_function("mldebt_fold", 1, fold_key, deterministic=True)  # migration 7
            await self._migrate()
            self._pipe = _Pipe(self._db)
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._acquire()
            try:
                if self._batch is not None:  # handed the turn of an open batch: commit it first
                    batch, self._batch = self._batch, None
                    self._send_commit(batch)
                await asyncio.gather(*self._committing, return_exceptions=True)
                db, self._db = self._db, None
                await db.close()
            finally:
                self._release()

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
                for statement in split_statements(sql_for(sql, "sqlite")):
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

    async def rebuild_scores(self) -> None:
        async with self.transaction() as tx:
            await tx._write_fn(rebuild_scores)  # type: ignore[attr-defined]

    # -- the batch: whoever holds the turn runs its transaction; the last one of a batch commits it ---

    async def _acquire(self) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._pass_on()
            elif turn in self._waiters:  # _live_waiters may have dropped it already
                self._waiters.remove(turn)
            raise

    def _live_waiters(self) -> bool:
        """Somebody waits for the turn. Turns in the queue are done only if cancelled (a turn handed
        on leaves the queue first), so those at its head are dropped: one look, not a scan."""
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        return bool(waiters)

    def _pass_on(self) -> None:
        """A turn handed to a caller that was cancelled: pass it on, or commit the open batch."""
        if self._batch is not None and not self._live_waiters():
            batch, self._batch = self._batch, None
            self._send_commit(batch)
        self._release()

    def _release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the turn passes on; _held stays True
                return
        self._held = False

    def prefetch_answer_context(self, event_key: str, session_id: str) -> None:
        if self._held and len(self._wanted) < 4 * self.max_batch:
            self._wanted.setdefault(session_id, event_key)

    def _read_ahead(self, batch: _Batch) -> tuple[list[tuple[str, tuple]], list[tuple[str, str]]]:
        """The answer contexts wanted by callers waiting for their turn, as far as this batch takes them."""
        # a few at a time: the first answers can go on while the thread reads ahead for the rest
        room = min(self.max_batch - batch.size - len(batch.ahead), READ_AHEAD)
        reads: list[tuple[str, tuple]] = []
        taken: list[tuple[str, str]] = []
        while self._wanted and len(taken) < room:
            session_id = next(iter(self._wanted))
            event_key = self._wanted.pop(session_id)
            if session_id not in batch.ahead:
                taken.append((session_id, event_key))
                reads.append((_CONTEXT_SQL, (event_key, session_id)))
        return reads, taken

    async def _trip(self, tx: SqliteTx, reads: list[tuple[str, tuple]]) -> list[list]:
        if self._db is None:
            raise StoreUnavailable("the store is not open")
        batch = tx._batch
        writes, tx._writes = tx._writes, []
        db = self._db
        trip = self._pipe.submit(_trip, db._conn, batch, tx, writes, reads)
        assert trip is not None
        ahead, taken = self._read_ahead(batch)
        if taken:
            # queued behind this trip: runs while this transaction works on what it read
            self._expect(batch, self._pipe.submit(_read, db._conn, batch, ahead), taken)
        try:
            return await trip
        except sqlite3.OperationalError as exc:
            if not batch.begun:  # BEGIN IMMEDIATE waited out the busy timeout
                raise StoreBusy(str(exc)) from exc
            raise

    @staticmethod
    def _expect(batch: _Batch, rows: asyncio.Future | None, taken: list[tuple[str, str]]) -> None:
        assert rows is not None
        for index, (session_id, event_key) in enumerate(taken):
            batch.ahead[session_id] = _Ahead(event_key, rows, index)

    def _send(self, batch: _Batch, tail: _Tail) -> None:
        """Send a finished transaction's tail to the connection's thread without waiting, with the
        reads ahead for the callers waiting for their turn."""
        assert self._db is not None
        db = self._db
        ahead, taken = self._read_ahead(batch)
        rows = self._pipe.submit(_end, db._conn, batch, tail, ahead, wait=bool(taken))
        if taken:
            self._expect(batch, rows, taken)

    def _end_turn(self, batch: _Batch) -> None:
        """Hand the turn to the next transaction, or commit the batch if nobody waits or it is full.

        The turn passes on as soon as the COMMIT is queued: the next batch's first call is queued
        behind it, so the connection's thread goes from this COMMIT straight to the next BEGIN."""
        if not self._live_waiters() or batch.size >= self.max_batch:
            self._batch = None
            self._send_commit(batch)
        self._release()

    def _send_commit(self, batch: _Batch) -> asyncio.Future:
        """Queue the batch's COMMIT (behind every tail of the batch), with the aggregates of its facts;
        when it is done, every caller's reply is released, or, if it failed, every caller of the batch
        gets its error: nothing of the batch is kept."""
        assert self._db is not None
        done = self._pipe.submit(_commit, self._db._conn, batch)
        assert done is not None
        self._committing.add(done)
        done.add_done_callback(functools.partial(self._committed, batch))
        return done

    def _committed(self, batch: _Batch, done: asyncio.Future) -> None:
        self._committing.discard(done)
        error = done.exception() if not done.cancelled() else StoreUnavailable("the store was closed")
        if isinstance(error, sqlite3.OperationalError):
            error = StoreBusy(str(error))
        for tail in batch.tails:
            assert tail.done is not None
            if tail.done.done():
                continue
            failure = error or tail.error
            if failure is not None:
                tail.done.set_exception(failure)
            else:
                tail.done.set_result(None)

    def transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """`async with store.transaction() as tx`: take the turn, run the body, send its tail, and return
    once the batch's COMMIT is done. A class rather than an @asynccontextmanager generator: this is
    entered and left on every answer, and the generator's machinery cost more than the rest of it."""

    __slots__ = ("store", "tx")

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def __aenter__(self) -> SqliteTx:
        store = self.store
        if store._db is None:
            raise StoreUnavailable("the store is not open")
        await store._acquire()
        if store._batch is None:
            store._batch = _Batch()
        batch = store._batch
        batch.size += 1
        self.tx = SqliteTx(store, batch)
        return self.tx

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        store, tx = self.store, self.tx
        batch = tx._batch
        tail: _Tail | None = None
        try:
            if exc_type is None:
                tail = _Tail(tx, tx._writes, store._pipe._loop.create_future())
                batch.tails.append(tail)
                batch.facts = batch.facts or tx.wrote_facts
        finally:
            # a transaction that raised rolls back to its savepoint, if it opened one
            store._send(batch, tail or _Tail(tx, [], None))
            store._end_turn(batch)
        if tail is not None:
            await tail.done
            tx.committed()
