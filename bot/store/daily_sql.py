"""The daily posts' bulk SQL, one text for both stores (mixed into SqliteTx and PostgresTx).

At 09:00 thousands of channels are due together. Queued one by one, each channel cost about six
statements (two look-ups for an existing post, its history, the post row, closing the previous
window, the outbox row), each a trip to the database, and closing the previous window searched
every unfinished post of every channel (SQLite chose the status index), which made queueing
quadratic in the number of channels. Here a chunk of channels costs four statements however many
channels it holds: one read of every channel's recent posts, one multi-row INSERT of the posts (the
unique (channel, local date) key still decides, ON CONFLICT DO NOTHING ... RETURNING says which went
in), one UPDATE of the windows to end, by id, and one multi-row INSERT of their outbox entries.
Rows go `SLICE` per statement, far below both databases' limits on parameters.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .base import DailyPostRow, Tx
from .outbox import NewOutboxEntry

SLICE = 200  # rows per multi-row statement (the outbox row takes 16 parameters)
_POST_COLS = ("id, platform, tenant, channel, local_date, question_id, choice_order, status, message_ref, "
              "lease_until, posted_at, closes_at")
_OUTBOX_COLS = ("key, platform, tenant, kind, target, payload, status, not_before, expires_at, lease_until, "
                "attempts, last_error, error_detail, error_fix, first_error_at, sent_ref, created_at, updated_at")
# the status of a new entry: paused at once when its target or its whole tenant is (as `enqueue`)
_OUTBOX_ROW = ("(?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM outbox_targets WHERE platform = ? "
               "AND tenant = ? AND target IN (?, '') AND state = 'paused') THEN 'paused' ELSE 'pending' END, "
               "?, ?, NULL, 0, NULL, NULL, NULL, NULL, NULL, ?, ?)")


def _slices(items: Sequence, size: int = SLICE):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class DailySql(Tx):
    """Mixed into a store's Tx, which supplies `_all`, `_run` and `_wake` (statements with `?` marks)."""

    async def daily_recent(self, channels: Sequence[tuple[str, str, str]], keep: int,
                           now: float) -> dict[tuple[str, str, str], list[DailyPostRow]]:
        out: dict[tuple[str, str, str], list[DailyPostRow]] = {}
        for part in _slices(channels):
            values = ", ".join("(?, ?, ?)" for _ in part)
            rows = await self._all(
                f"WITH c (platform, tenant, channel) AS (VALUES {values}) "
                f"SELECT {_POST_COLS} FROM (SELECT p.*, ROW_NUMBER() OVER (PARTITION BY p.platform, p.tenant, "
                "p.channel ORDER BY p.local_date DESC) AS n FROM c JOIN daily_posts p ON p.platform = c.platform "
                "AND p.tenant = c.tenant AND p.channel = c.channel) x "
                "WHERE n <= ? OR (status IN ('queued', 'posted') AND closes_at > ?) "
                "ORDER BY platform, tenant, channel, local_date DESC",
                (*(v for key in part for v in key), keep, now))
            for r in rows:
                out.setdefault((r[1], r[2], r[3]), []).append(DailyPostRow(*r))
        return out

    async def insert_daily_posts(self, rows: Sequence[DailyPostRow]) -> set[str]:
        inserted: set[str] = set()
        for part in _slices(rows):
            marks = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" for _ in part)
            got = await self._all(
                f"INSERT INTO daily_posts ({_POST_COLS}) VALUES {marks} ON CONFLICT DO NOTHING RETURNING id",
                tuple(v for r in part for v in (r.id, r.platform, r.tenant, r.channel, r.local_date, r.question_id,
                                                 r.choice_order, r.status, r.message_ref, r.lease_until,
                                                 r.posted_at, r.closes_at)))
            inserted.update(g[0] for g in got)
        return inserted

    async def end_daily_windows(self, post_ids: Collection[str], now: float) -> None:
        for part in _slices(sorted(post_ids)):
            await self._run(
                f"UPDATE daily_posts SET closes_at = ? WHERE id IN ({', '.join('?' for _ in part)}) "
                "AND status IN ('queued', 'posted') AND closes_at > ?", (now, *part, now))

    async def daily_posts_posted(self, posted: Sequence[tuple[str, str | None]], now: float) -> None:
        for part in _slices(posted):
            await self._run(
                f"WITH v (vid, ref) AS (VALUES {', '.join('(CAST(? AS TEXT), CAST(? AS TEXT))' for _ in part)}) "
                "UPDATE daily_posts SET status = 'posted', message_ref = v.ref, posted_at = ? FROM v "
                "WHERE id = v.vid AND status IN ('queued', 'missed')", (*(x for pair in part for x in pair), now))

    async def enqueue_many(self, entries: Sequence[NewOutboxEntry], now: float) -> int:
        new = 0
        for part in _slices(entries):
            new += await self._run(
                f"INSERT INTO outbox ({_OUTBOX_COLS}) VALUES {', '.join(_OUTBOX_ROW for _ in part)} "
                "ON CONFLICT (key) DO NOTHING",
                tuple(v for e in part for v in (
                    e.key, e.platform, e.tenant, e.kind, e.target, e.payload, e.platform, e.tenant, e.target,
                    now if e.not_before is None else e.not_before, e.expires_at, now, now)))
        if new:
            self._wake()  # other processes' workers may deliver them
        return new
