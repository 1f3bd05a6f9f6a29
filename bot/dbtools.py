"""`mldebt db migrate` and `mldebt db copy`: bring a database to the current schema, and move an
installation from its SQLite file to PostgreSQL without losing a row.

The copy reads the SQLite file (migrated and its scores folded first, so both sides hold the same
aggregates), writes every table in one PostgreSQL transaction with COPY, moves the identity
sequences past the copied ids, and then checks every table: the row count and the sum of every
numeric column must match, or the transaction is rolled back and nothing stays in the target.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .store import SqliteStore, Store, store_for

# SQLite's bookkeeping that PostgreSQL does not have (the facts carry an `applied` mark there instead)
_SQLITE_ONLY = {"schema_migrations", "sqlite_sequence", "score_watermark"}


_FIRST = ["players", "teams", "sessions", "daily_posts"]


class CopyError(Exception):
    """The copy cannot start or did not verify; the message is one line for the operator."""


@dataclass
class TableCopy:
    table: str
    rows: int
    sums: dict[str, float]


async def migrate(target: str | Path) -> int:
    """Open the database (which applies the missing steps) and return its schema version."""
    store: Store = store_for(target)
    await store.open()
    try:
        return await store.schema_version()
    finally:
        await store.close()


def _read_sqlite(path: Path) -> dict[str, tuple[list[str], list[str], list[tuple]]]:
    """table -> (columns, numeric columns, rows), in one read transaction."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("BEGIN")
        out = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            if table in _SQLITE_ONLY:
                continue
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            columns = [c[1] for c in info]
            numeric = [c[1] for c in info if c[2].upper() in ("INTEGER", "REAL")]
            # a score nobody holds any more is a row of 0 players in SQLite (its trigger only
            # decrements); PostgreSQL's trigger, loading only final scores, never writes one
            where = " WHERE players != 0" if table == "score_counts" else ""
            out[table] = (columns, numeric,
                          conn.execute(f"SELECT {', '.join(columns)} FROM {table}{where}").fetchall())
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()


def _same(a: TableCopy, b: TableCopy) -> bool:
    return a.rows == b.rows and a.sums.keys() == b.sums.keys() and all(
        math.isclose(a.sums[c], b.sums[c], rel_tol=1e-9, abs_tol=1e-6) for c in a.sums)


def _summary(table: str, numeric: list[str], rows: list[tuple], columns: list[str]) -> TableCopy:
    index = [columns.index(c) for c in numeric]
    return TableCopy(table, len(rows), {c: float(sum(r[i] or 0 for r in rows)) for c, i in zip(numeric, index,
                                                                                             strict=True)})


async def copy(source: Path, target: str, *, replace: bool = False) -> list[TableCopy]:
    """Copy every table of the SQLite file `source` (it must exist) into the PostgreSQL database `target`."""
    import asyncpg

    from .store.postgres import PostgresStore

    sqlite_store = SqliteStore(source)
    await sqlite_store.open()  # the current schema, and the aggregates caught up with the facts
    try:
        async with sqlite_store.transaction() as tx:
            await tx.apply_scores()
    finally:
        await sqlite_store.close()
    tables = await asyncio.to_thread(_read_sqlite, source)

    pg = PostgresStore(target, max_connections=1, fold_in_background=False)
    await pg.open()  # the current schema on the target
    await pg.close()
    conn = await asyncpg.connect(target)
    try:
        present = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        missing = sorted(set(tables) - present)
        if missing:
            raise CopyError(f"the target has no table {', '.join(missing)}: is it the same mldebt version?")
        async with conn.transaction():
            counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
            if any(counts.values()):
                if not replace:
                    busy = ", ".join(f"{t} ({n})" for t, n in sorted(counts.items()) if n)
                    raise CopyError(f"the target already has rows: {busy}; pass --replace to overwrite them")
                await conn.execute(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY CASCADE")
            # parents before children (foreign keys are checked per statement); score_counts is not
            # copied but kept by its trigger as score_periods loads, and checked like the others
            for table in sorted(tables, key=lambda t: (_FIRST.index(t) if t in _FIRST else len(_FIRST), t)):
                columns, _numeric, rows = tables[table]
                if rows and table != "score_counts":
                    await conn.copy_records_to_table(table, records=rows, columns=columns)
                await _move_identity(conn, table, columns)
            report = []
            for table, (columns, numeric, rows) in sorted(tables.items()):
                expected = _summary(table, numeric, rows, columns)
                got = await _pg_summary(conn, table, numeric)
                if not _same(got, expected):
                    raise CopyError(f"{table} did not verify: {expected.rows} rows {expected.sums} in SQLite, "
                                    f"{got.rows} rows {got.sums} in PostgreSQL; nothing was kept")
                report.append(got)
            if "score_facts" in tables:  # folded in SQLite already, and the aggregates came along
                await conn.execute("UPDATE score_facts SET applied = true")
        return report
    finally:
        await conn.close()


async def _move_identity(conn, table: str, columns: list[str]) -> None:
    if "id" not in columns:
        return
    sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
    if sequence is not None:
        await conn.execute(f"SELECT setval('{sequence}', GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1), "
                           f"(SELECT COUNT(*) > 0 FROM {table}))")


async def _pg_summary(conn, table: str, numeric: list[str]) -> TableCopy:
    sums = ", ".join(f"COALESCE(SUM({c}), 0)::float8" for c in numeric)
    row = await conn.fetchrow(f"SELECT count(*){', ' + sums if sums else ''} FROM {table}")
    return TableCopy(table, row[0], {c: row[i + 1] for i, c in enumerate(numeric)})
