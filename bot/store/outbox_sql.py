"""The outbox's SQL, one text for both stores (mixed into SqliteTx and PostgresTx).

Parameters compared only with NULL are cast (`CAST(? AS TEXT)`), which PostgreSQL needs to infer a
type and SQLite accepts; claims lock their rows as the store's `_LOCK` says.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .outbox import OutboxEntry, OutboxTx, ShardFilter, TargetState

_COLS = ("id, key, platform, tenant, kind, target, payload, status, not_before, expires_at, lease_until, "
         "attempts, last_error, error_detail, error_fix, first_error_at, sent_ref, created_at, updated_at")
_TARGET_COLS = "platform, tenant, target, state, reason, detail, fix, since, updated_at"
# one settled entry in `outbox_settle_many` (typed: PostgreSQL cannot infer the types of a VALUES list)
_SETTLE_ROW = ("(CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS TEXT), CAST(? AS TEXT), "
               "CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION))")
_SETTLE_SLICE = 200


def _marks(values: Collection[str]) -> str:
    return ", ".join("CAST(? AS TEXT)" for _ in values) or "NULL"


def _on_shards(shards: Collection[ShardFilter]) -> tuple[str, tuple[object, ...]]:
    """The condition that keeps entries of tenants on these shards only (and of every other platform).

    CASE, not OR: PostgreSQL may evaluate an OR's sides in any order, and a Slack tenant ("T123")
    must never reach the BIGINT cast."""
    sql, params = "", ()  # type: tuple[str, tuple[object, ...]]
    for f in shards:
        sql += (" AND CASE WHEN platform = CAST(? AS TEXT) THEN (CAST(tenant AS BIGINT) >> 22) % CAST(? AS INTEGER) "
                f"IN ({', '.join('CAST(? AS INTEGER)' for _ in f.ids)}) ELSE TRUE END")
        params += (f.platform, f.count, *f.ids)
    return sql, params


class OutboxSql(OutboxTx):
    """Mixed into a store's Tx, which supplies `_one`, `_all` and `_run` (statements with `?` marks)."""

    # how a claim locks the rows it takes: nothing in SQLite (one writer at a time); PostgreSQL
    # stores set " FOR UPDATE SKIP LOCKED", so two workers claiming at once take different entries
    _LOCK = ""

    def _wake(self) -> None:
        """A new or resumed entry: tell other processes' workers (a no-op where there are none)."""

    async def enqueue(self, platform: str, tenant: str, kind: str, key: str, target: str, payload: str,
                      now: float, *, not_before: float | None = None, expires_at: float | None = None) -> bool:
        changed = await self._run(
            f"INSERT INTO outbox ({_COLS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, "
            "CASE WHEN EXISTS (SELECT 1 FROM outbox_targets WHERE platform = ? AND tenant = ? "
            "AND target IN (?, '') AND state = 'paused') THEN 'paused' ELSE 'pending' END, "
            "?, ?, NULL, 0, NULL, NULL, NULL, NULL, NULL, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, platform, tenant, kind, target, payload, platform, tenant, target,
             now if not_before is None else not_before, expires_at, now, now))
        if changed == 1:
            self._wake()  # other processes' workers may deliver it
        return changed == 1

    async def outbox_claim(self, routes: Collection[str], now: float, lease_until: float,
                           limit: int, shards: Collection[ShardFilter] = ()) -> list[OutboxEntry]:
        plats = tuple(routes)
        on_shards, shard_params = _on_shards(shards)
        rows = await self._all(
            "WITH due AS (SELECT id FROM outbox WHERE status = 'pending' AND not_before <= ? "
            f"AND platform || ':' || kind IN ({_marks(plats)}) AND (expires_at IS NULL OR expires_at > ?){on_shards} "
            f"ORDER BY not_before, id LIMIT ?{self._LOCK}), "
            "lapsed AS (SELECT id FROM outbox WHERE status = 'sending' AND lease_until <= ? "
            f"AND platform || ':' || kind IN ({_marks(plats)}) AND (expires_at IS NULL OR expires_at > ?){on_shards} "
            f"LIMIT ?{self._LOCK}) "
            "UPDATE outbox SET status = 'sending', lease_until = ?, attempts = attempts + 1, updated_at = ? "
            f"WHERE id IN (SELECT id FROM due UNION ALL SELECT id FROM lapsed) RETURNING {_COLS}",
            (now, *plats, now, *shard_params, limit, now, *plats, now, *shard_params, limit, lease_until, now))
        return sorted((OutboxEntry(*r) for r in rows), key=lambda e: (e.not_before, e.id))

    async def outbox_drop_expired(self, now: float) -> list[OutboxEntry]:
        rows = await self._all(
            "UPDATE outbox SET status = 'dropped', lease_until = NULL, updated_at = ? WHERE id IN ("
            "SELECT id FROM outbox WHERE expires_at <= ? AND (status IN ('pending', 'paused') "
            f"OR (status = 'sending' AND lease_until <= ?)){self._LOCK}) "
            f"RETURNING {_COLS}", (now, now, now))
        return [OutboxEntry(*r) for r in rows]

    async def outbox_settle_many(self, entries: Sequence[OutboxEntry], now: float) -> set[int]:
        held: set[int] = set()
        for start in range(0, len(entries), _SETTLE_SLICE):
            part = entries[start:start + _SETTLE_SLICE]
            rows = await self._all(
                "WITH v (vid, status, not_before, last_error, error_detail, error_fix, first_error_at, sent_ref, "
                f"lease) AS (VALUES {', '.join(_SETTLE_ROW for _ in part)}) "
                "UPDATE outbox SET status = v.status, not_before = v.not_before, lease_until = NULL, "
                "last_error = v.last_error, error_detail = v.error_detail, error_fix = v.error_fix, "
                "first_error_at = v.first_error_at, sent_ref = v.sent_ref, updated_at = ? FROM v "
                "WHERE id = v.vid AND outbox.status = 'sending' AND lease_until = v.lease RETURNING id",
                (*(x for e in part for x in (e.id, e.status, e.not_before, e.last_error, e.error_detail, e.error_fix,
                                             e.first_error_at, e.sent_ref, e.lease_until)), now))
            held.update(r[0] for r in rows)
        return held

    async def outbox_get(self, key: str) -> OutboxEntry | None:
        row = await self._one(f"SELECT {_COLS} FROM outbox WHERE key = ?", (key,))
        return OutboxEntry(*row) if row else None

    async def outbox_entries(self, platform: str, tenant: str | None, kind: str | None,
                             statuses: Collection[str]) -> list[OutboxEntry]:
        st = tuple(statuses)
        rows = await self._all(
            f"SELECT {_COLS} FROM outbox WHERE platform = ? AND (CAST(? AS TEXT) IS NULL OR tenant = ?) "
            f"AND (CAST(? AS TEXT) IS NULL OR kind = ?) AND status IN ({_marks(st)}) ORDER BY created_at, id",
            (platform, tenant, tenant, kind, kind, *st))
        return [OutboxEntry(*r) for r in rows]

    async def outbox_move(self, platform: str, tenant: str, target: str | None, kind: str | None,
                          from_statuses: Collection[str], to_status: str, now: float) -> int:
        st = tuple(from_statuses)
        moved = await self._run(
            "UPDATE outbox SET status = ?, not_before = CASE WHEN CAST(? AS TEXT) = 'pending' THEN ? ELSE not_before END, "
            "lease_until = NULL, updated_at = ? WHERE platform = ? AND tenant = ? "
            "AND (CAST(? AS TEXT) IS NULL OR target = ?) "
            f"AND (CAST(? AS TEXT) IS NULL OR kind = ?) AND status IN ({_marks(st)}) "
            "AND (CAST(? AS TEXT) != 'pending' OR expires_at IS NULL OR expires_at > ?)",
            (to_status, to_status, now, now, platform, tenant, target, target, kind, kind, *st, to_status, now))
        if moved and to_status == "pending":
            self._wake()
        return moved

    async def next_outbox_event(self, routes: Collection[str], shards: Collection[ShardFilter] = ()) -> float | None:
        r = tuple(routes)
        on_shards, shard_params = _on_shards(shards)
        row = await self._one(
            "SELECT MIN(t) FROM (SELECT MIN(not_before) AS t FROM outbox WHERE status = 'pending' "
            f"AND platform || ':' || kind IN ({_marks(r)}){on_shards} UNION ALL SELECT MIN(lease_until) FROM outbox "
            f"WHERE status = 'sending' AND platform || ':' || kind IN ({_marks(r)}){on_shards}) x",
            (*r, *shard_params, *r, *shard_params))
        return row[0] if row else None

    async def target_state(self, platform: str, tenant: str, target: str) -> TargetState | None:
        row = await self._one(f"SELECT {_TARGET_COLS} FROM outbox_targets WHERE platform = ? AND tenant = ? "
                              "AND target = ?", (platform, tenant, target))
        return TargetState(*row) if row else None

    async def set_target_state(self, row: TargetState) -> None:
        r = row
        await self._run(
            f"INSERT INTO outbox_targets ({_TARGET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, tenant, target) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
            "detail = excluded.detail, fix = excluded.fix, since = excluded.since, updated_at = excluded.updated_at",
            (r.platform, r.tenant, r.target, r.state, r.reason, r.detail, r.fix, r.since, r.updated_at))

    async def clear_target_state(self, platform: str, tenant: str, target: str | None) -> int:
        return await self._run("DELETE FROM outbox_targets WHERE platform = ? AND tenant = ? "
                               "AND (CAST(? AS TEXT) IS NULL OR target = ?)", (platform, tenant, target, target))

    async def target_states(self, platform: str | None, tenant: str | None) -> list[TargetState]:
        rows = await self._all(
            f"SELECT {_TARGET_COLS} FROM outbox_targets WHERE (CAST(? AS TEXT) IS NULL OR platform = ?) "
            "AND (CAST(? AS TEXT) IS NULL OR tenant = ?) ORDER BY platform, tenant, target",
            (platform, platform, tenant, tenant))
        return [TargetState(*r) for r in rows]

    async def first_sight(self, platform: str, key: str, now: float) -> bool:
        changed = await self._run("INSERT INTO inbound_seen (platform, key, seen_at) VALUES (?, ?, ?) "
                                  "ON CONFLICT DO NOTHING", (platform, key, now))
        return changed == 1
