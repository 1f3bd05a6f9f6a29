"""The rows and the transaction methods of the outbox (see bot/outbox.py for how they are used).

Kept apart from base.py so the outbox's storage reads as one piece; `Tx` includes `OutboxTx`.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

# pending: waits for not_before; sending: claimed by a worker until lease_until; sent: done;
# failed: a permanent error (last_error says why); dropped: stale, never sent; paused: its target or
# tenant is paused, it waits for an admin's fix
STATUSES = ("pending", "sending", "sent", "failed", "dropped", "paused")
TENANT = ""  # the target of a problem that concerns the whole tenant


@dataclass
class OutboxEntry:
    """One side effect that must not be lost, as stored."""

    id: int
    key: str
    platform: str
    tenant: str
    kind: str
    target: str
    payload: str  # JSON of plain data
    status: str
    not_before: float
    expires_at: float | None
    lease_until: float | None
    attempts: int
    last_error: str | None
    error_detail: str | None
    error_fix: str | None
    first_error_at: float | None
    sent_ref: str | None
    created_at: float
    updated_at: float

    @functools.cached_property
    def data(self) -> Any:
        """The payload parsed, once: the sender and the settling hook both read it (thousands at 09:00).
        Treat it as read-only; the payload is never changed after the entry is read."""
        return json.loads(self.payload)

    @property
    def reconcile(self) -> bool:
        """An earlier attempt was claimed and may have reached the platform: look before sending again."""
        return self.attempts > 1


@dataclass(frozen=True)
class ShardFilter:
    """The shards of one platform whose tenants a worker delivers for; other platforms are unaffected.

    A tenant of `platform` is a numeric id (a Discord guild id, a snowflake) and belongs to shard
    `(id >> 22) % count`, the formula Discord routes a guild's gateway events by. An entry of a
    tenant on a shard not in `ids` is left pending for the process that runs that shard.
    """

    platform: str
    count: int
    ids: tuple[int, ...]


@dataclass(frozen=True)
class NewOutboxEntry:
    """An intent to write with `OutboxTx.enqueue_many` (the arguments of `enqueue`, for many at once)."""

    platform: str
    tenant: str
    kind: str
    key: str
    target: str
    payload: str
    not_before: float | None = None
    expires_at: float | None = None


@dataclass
class TargetState:
    """A channel, role, user group (or, with target "", the whole tenant) that deliveries fail on."""

    platform: str
    tenant: str
    target: str
    state: str  # failing (still tried, once per new entry) | paused (nothing is sent until resumed)
    reason: str
    detail: str
    fix: str | None
    since: float
    updated_at: float


class OutboxTx(ABC):
    @abstractmethod
    async def enqueue(self, platform: str, tenant: str, kind: str, key: str, target: str, payload: str,
                      now: float, *, not_before: float | None = None, expires_at: float | None = None) -> bool:
        """Write an intent; False if one with this key exists. Paused at once if its target or tenant is."""
    @abstractmethod
    async def outbox_claim(self, routes: Collection[str], now: float, lease_until: float,
                           limit: int, shards: Collection[ShardFilter] = ()) -> list[OutboxEntry]:
        """Take up to `limit` due entries (pending and due, or sending with a lapsed lease) for a worker,
        of the routes ("platform:kind") it can deliver and, for a platform in `shards`, of its shards."""
    @abstractmethod
    async def outbox_drop_expired(self, now: float) -> list[OutboxEntry]:
        """Mark every unsent entry whose expires_at has passed as dropped (not one in flight)."""
    @abstractmethod
    async def outbox_settle_many(self, entries: Sequence[OutboxEntry], now: float) -> set[int]:
        """Write each entry's status, times, error and ref, if the caller's claim (lease) still holds
        (one statement per slice of entries); the ids whose claim held."""
    @abstractmethod
    async def outbox_get(self, key: str) -> OutboxEntry | None: ...
    @abstractmethod
    async def outbox_entries(self, platform: str, tenant: str | None, kind: str | None,
                             statuses: Collection[str]) -> list[OutboxEntry]: ...
    @abstractmethod
    async def outbox_move(self, platform: str, tenant: str, target: str | None, kind: str | None,
                          from_statuses: Collection[str], to_status: str, now: float) -> int:
        """Move entries of a tenant (or of one target) between statuses, e.g. pause or resume them.
        Never back to pending once expired: a stale entry is dropped, not resumed."""
    @abstractmethod
    async def next_outbox_event(self, routes: Collection[str], shards: Collection[ShardFilter] = ()) -> float | None:
        """The earliest not_before of a pending entry or lease end of a sending one, of these routes
        (and shards, as `outbox_claim`)."""
    @abstractmethod
    async def target_state(self, platform: str, tenant: str, target: str) -> TargetState | None: ...
    @abstractmethod
    async def set_target_state(self, row: TargetState) -> None: ...
    @abstractmethod
    async def clear_target_state(self, platform: str, tenant: str, target: str | None) -> int:
        """Forget the problem of one target (or, with None, of every target and the tenant itself)."""
    @abstractmethod
    async def target_states(self, platform: str | None, tenant: str | None) -> list[TargetState]: ...

    # -- inbound idempotency (a platform's retry of a request already handled) ---------------------
    @abstractmethod
    async def first_sight(self, platform: str, key: str, now: float) -> bool:
        """Record an inbound id (a Slack trigger_id or event_id); False if it was seen before."""
