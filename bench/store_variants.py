"""What-if stores for the engine benchmark: the shipped SqliteTx and its SQL, driven differently.

SqliteTx talks to its connection through two calls: `execute(sql, params)` used as an async context
manager yielding a cursor (`fetchone`, `fetchall`, `rowcount`), and `await executemany(...)`. These
stand-ins keep that surface, so the real engine and the real SqliteTx run unchanged; only the way a
statement reaches SQLite differs:

- OneRoundTripStore: each statement is ONE aiosqlite thread round trip (execute and fetch together),
  where aiosqlite's cursor API takes two or three (execute, fetch, close).
- InlineStore: sqlite3 is called directly on the event-loop thread: no round trips at all.

They measure what a change to bot/store/sqlite.py would buy; they are not meant to be shipped as is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from bot.store import SqliteStore
from bot.store.base import StoreBusy, Tx
from bot.store.sqlite import SqliteTx


class _Fetched:
    """A cursor whose rows were already fetched."""

    def __init__(self, rows: list, rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list:
        return self._rows

    async def __aenter__(self) -> _Fetched:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Pending:
    """`await conn.execute(...)` or `async with conn.execute(...) as cur`, like aiosqlite's."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, _Fetched]:
        return self._run().__await__()

    async def __aenter__(self) -> _Fetched:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


def _fetch(conn: sqlite3.Connection, sql: str, params: Any) -> _Fetched:
    cur = conn.execute(sql, params or ())
    rows = cur.fetchall()
    return _Fetched(rows, cur.rowcount)


def _fetch_many(conn: sqlite3.Connection, sql: str, params: Iterable) -> _Fetched:
    cur = conn.executemany(sql, params)
    return _Fetched([], cur.rowcount)


class _OneTrip:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Any = None) -> _Pending:
        return _Pending(lambda: self._db._execute(_fetch, self._db._conn, sql, params))

    def executemany(self, sql: str, params: Iterable) -> _Pending:
        return _Pending(lambda: self._db._execute(_fetch_many, self._db._conn, sql, list(params)))

    async def execute_fetchall(self, sql: str, params: Any = None) -> list:
        return (await self._db._execute(_fetch, self._db._conn, sql, params))._rows


class _Inline:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = None) -> _Pending:
        async def run() -> _Fetched:
            return _fetch(self._conn, sql, params)

        return _Pending(run)

    def executemany(self, sql: str, params: Iterable) -> _Pending:
        async def run() -> _Fetched:
            return _fetch_many(self._conn, sql, params)

        return _Pending(run)

    async def execute_fetchall(self, sql: str, params: Any = None) -> list:
        return _fetch(self._conn, sql, params)._rows


class OneRoundTripStore(SqliteStore):
    """The shipped store (BEGIN IMMEDIATE, lock, COMMIT), one thread round trip per statement."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with super().transaction():
            assert self._db is not None
            yield SqliteTx(_OneTrip(self._db))  # type: ignore[arg-type]


class InlineStore(SqliteStore):
    """The shipped store's schema, pragmas, lock and SQL, with sqlite3 called on the event-loop thread."""

    _conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await super().open()  # migrations and pragmas through the real store
        await super().close()
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in (f"busy_timeout = {int(self.busy_timeout_ms)}", "journal_mode = WAL",
                       f"synchronous = {self.synchronous}", "foreign_keys = ON"):
            self._conn.execute(f"PRAGMA {pragma}")

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        conn = self._conn
        assert conn is not None
        async with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreBusy(str(exc)) from exc
            try:
                yield SqliteTx(_Inline(conn))  # type: ignore[arg-type]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


VARIANTS: dict[str, type[SqliteStore]] = {
    "shipped": SqliteStore,
    "one-round-trip": OneRoundTripStore,
    "inline": InlineStore,
}
