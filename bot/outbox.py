"""The outbox: side effects that must not be lost, written with the fact that causes them, sent later.

A badge celebration, a role or user-group grant, a time-out message, a daily post and its reveal are
each written as one `outbox` row (an intent with a unique key) in the same transaction as the fact
(the badge, the closed question, the daily post row). Nothing is sent from inside a transaction;
the `OutboxWorker`, driven by the scheduler, sends what is due:

- it claims due entries in chunks, each claim with a lease (another process takes an entry over
  when its lease runs out), starts sending as soon as the first chunk is claimed, and claims the
  next only when the previous one is almost sent (a short queue in between): few claimed entries
  wait unsent, so a process that dies leaves few to look up, and processes sharing the work finish
  close together;
- an entry whose `expires_at` has passed is dropped, never sent late (a daily post whose window
  closed, a time-out message whose response_url is dead);
- an entry claimed again after an attempt that may have reached the platform is `reconcile`: the
  sender's `find` looks for it before it is sent again;
- a platform answers through `bot.platform_errors`: `Transient` -> retried with exponential backoff
  and jitter (at least the platform's Retry-After); `Permanent` -> the entry fails with the reason
  and the fix, and by scope its target (channel, role) or its whole tenant gets a problem record. A
  target whose problem says it is gone, or whose problem lasts `PAUSE_AFTER` (3 days), and a tenant
  whose token was revoked, are paused: their entries wait (status `paused`) until an admin fixes
  it (`daily set` again, reinstalling, re-adding the bot), never retried in a loop;
- a platform may be sharded (`shard`): then only entries of tenants on this process's shards are
  claimed, and the others wait, pending, for the process that runs their shard (or their expiry);
- every state change is one log line (a first failure, a new reason, failed, dropped, paused,
  resumed), not a traceback per retry.

Payloads are JSON of plain data; replies (bot/replies.py dataclasses) are encoded by class name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from . import replies as replies_module
from .clock import Clock
from .platform_errors import Permanent, PlatformError, Transient
from .store import Store, Tx
from .store.base import WriteConflict
from .store.outbox import TENANT, OutboxEntry, ShardFilter, TargetState

__all__ = ["OutboxEntry", "OutboxWorker", "Sender", "KindSender", "ShardFilter", "TargetState", "dumps", "loads", "decode",
           "PAUSE_AFTER", "KINDS"]

log = logging.getLogger(__name__)

RACE_RETRIES = 8  # a transaction that lost a race with another process's is run again up to this often
KINDS = ("timeout", "celebration", "grant", "daily_post", "daily_reveal")
CHUNK = 200  # entries per claim (at 1,000 posts/s: a fifth of a second's worth)
CONCURRENCY = 16  # entries in flight at once
LEASE_SECONDS = 60.0
BACKOFF_BASE = 30.0  # seconds before the first retry (times 0.5..1.5 jitter), doubling per attempt
BACKOFF_CAP = 3600.0
PAUSE_AFTER = 3 * 86400.0  # a missing permission this long pauses what uses the target


# -- payloads ------------------------------------------------------------------------------------

@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The fields of a dataclass reply (None: not a dataclass), looked up once per class: thousands
    of daily posts are encoded and decoded at 09:00."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


@functools.cache
def _reply_class(kind: str) -> type:
    cls = getattr(replies_module, kind, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"unknown reply type {kind!r} in an outbox payload")
    return cls


_PLAIN = frozenset((str, int, float, bool, type(None)))  # JSON's own scalars: encoded and decoded as they are


def _encode(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values of a reply: checked first, as the daily posts come in thousands
        return value
    names = _field_names(type(value))
    if names is not None:
        fields = {name: v if type(v := getattr(value, name)) in _PLAIN else _encode(v) for name in names}
        return {"__type__": type(value).__name__, **fields}
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    """Replies and datetimes back from `json.loads` of a payload (`loads` without the parse)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, list):
        return tuple(decode(v) for v in value)  # every sequence in a reply is a tuple
    if isinstance(value, dict):
        if "__datetime__" in value:
            return datetime.fromisoformat(value["__datetime__"])
        kind = value.get("__type__")
        if kind is not None:
            return _reply_class(kind)(**{k: v if type(v) in _PLAIN else decode(v) for k, v in value.items()
                                         if k != "__type__"})
        return {k: v if type(v) in _PLAIN else decode(v) for k, v in value.items()}
    return value


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps would build one per call


def dumps(value: Any) -> str:
    """JSON of `value`; reply dataclasses and datetimes inside it survive `loads`."""
    return _JSON.encode(_encode(value))


def loads(payload: str) -> Any:
    return decode(json.loads(payload))


# -- senders -------------------------------------------------------------------------------------

@runtime_checkable
class Sender(Protocol):
    """Performs the platform call(s) of one entry; returns a reference (message id/ts) or None.

    Raises only `Transient`/`Permanent` for platform failures. Optionally `kinds` (the kinds it
    delivers; only those are claimed for it), `find(entry)` (look for what an interrupted attempt may
    have sent: a reference, or None) and `batch()` (an async context manager the worker holds around
    a run, e.g. one HTTP session)."""

    async def send(self, entry: OutboxEntry) -> str | None: ...


Send = Callable[[OutboxEntry], Awaitable[str | None]]
Find = Callable[[OutboxEntry], Awaitable[str | None]]


class KindSender:
    """A platform's Sender assembled from one function per kind (and optional finders)."""

    def __init__(self) -> None:
        self.sends: dict[str, Send] = {}
        self.finds: dict[str, Find] = {}
        self.batches: list[Callable[[], Any]] = []

    @property
    def kinds(self) -> list[str]:
        return list(self.sends)

    def on(self, kind: str, send: Send, find: Find | None = None) -> None:
        self.sends[kind] = send
        if find is not None:
            self.finds[kind] = find

    async def send(self, entry: OutboxEntry) -> str | None:
        return await self.sends[entry.kind](entry)  # only the kinds it has are claimed for it

    async def find(self, entry: OutboxEntry) -> str | None:
        find = self.finds.get(entry.kind)
        return await find(entry) if find is not None else None

    def batch(self) -> AsyncExitStack:
        return _Batches(self.batches)


class _Batches(AsyncExitStack):
    def __init__(self, factories: list[Callable[[], Any]]) -> None:
        super().__init__()
        self._factories = factories

    async def __aenter__(self) -> _Batches:
        await super().__aenter__()
        for factory in self._factories:
            await self.enter_async_context(factory())
        return self


Hook = Callable[[Tx, OutboxEntry], Awaitable[None]]
ManyHook = Callable[[Tx, list[OutboxEntry]], Awaitable[None]]


# -- the worker ----------------------------------------------------------------------------------

class OutboxWorker:
    """Claims, sends and settles due entries; see the module docstring for the rules."""

    def __init__(self, store: Store, clock: Clock, *, chunk: int = CHUNK, concurrency: int = CONCURRENCY,
                 lease_seconds: float = LEASE_SECONDS, rng: random.Random | None = None) -> None:
        if concurrency < 1 or chunk < 1:
            raise ValueError("chunk and concurrency must be at least 1")
        self.store = store
        self.clock = clock
        self.chunk = chunk
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.queued = max(concurrency, chunk // 4)
        self.rng = rng or random.Random()
        self._senders: dict[str, Sender] = {}
        self._hooks: dict[str, Hook] = {}
        self._shards: dict[str, ShardFilter] = {}
        self._many_hooks: dict[str, ManyHook] = {}
        # (platform, tenant, target) with a problem, read at the start of each run: a success clears it
        self._problems: set[tuple[str, str, str]] = set()

    def register(self, platform: str, sender: Sender) -> None:
        self._senders[platform] = sender

    def sender(self, platform: str) -> Sender | None:
        return self._senders.get(platform)

    def shard(self, platform: str, shards: ShardFilter | None) -> None:
        """Claim `platform`'s entries only for tenants on these shards (None: all of its tenants)."""
        if shards is None:
            self._shards.pop(platform, None)
        elif shards.platform != platform:
            raise ValueError(f"a shard filter of {shards.platform} given for {platform}")
        else:
            self._shards[platform] = shards

    @property
    def shards(self) -> tuple[ShardFilter, ...]:
        return tuple(self._shards.values())

    def on_settled(self, kind: str, hook: Hook) -> None:
        """`hook(tx, entry)` runs in the transaction that records an entry of `kind` as sent, failed or
        dropped, so the fact that waits on it (a daily post's message ref) changes with it."""
        self._hooks[kind] = hook

    def on_settled_many(self, kind: str, hook: ManyHook) -> None:
        """Like `on_settled`, for the entries of `kind` a settling transaction records as sent or failed,
        all at once (thousands of daily posts settle in a few transactions); dropped ones still go
        to the `on_settled` hook one by one."""
        self._many_hooks[kind] = hook

    def _now(self) -> float:
        return self.clock.now().timestamp()

    # -- one run -------------------------------------------------------------------------------

    async def run_once(self, kinds: tuple[str, ...] | None = None) -> list[OutboxEntry]:
        """Drop what expired, then send everything due now (of `kinds` only, if given: an adapter
        delivering a badge's celebration at once need not take the 09:00 daily posts with it).
        Returns the entries settled, in order."""
        now = self._now()
        settled: list[OutboxEntry] = []

        async def drop(tx: Tx) -> list[OutboxEntry]:
            dropped = await tx.outbox_drop_expired(now)
            for entry in dropped:
                await self._hook(tx, entry)
            self._problems = {(s.platform, s.tenant, s.target) for s in await tx.target_states(None, None)}
            return dropped

        for entry in await self._in_tx(drop):
            log.info("outbox %s dropped: expired before it could be sent", entry.key)
            settled.append(entry)
        if not self._senders:
            return settled
        routes = [r for r in self.routes() if kinds is None or r.split(":", 1)[1] in kinds]
        first = await self._claim(routes)
        if not first:
            return settled
        # claimed entries waiting for a free sender: enough to cover the next claim's transaction
        queue: asyncio.Queue[OutboxEntry | None] = asyncio.Queue(maxsize=self.queued)
        outcomes: list[tuple[OutboxEntry, Permanent | None]] = []
        wake = asyncio.Event()
        finished = False

        async def claimer(batch: list[OutboxEntry]) -> None:
            while True:
                for entry in batch:
                    await queue.put(entry)
                if len(batch) < self.chunk:
                    break
                batch = await self._claim(routes)
                if not batch:
                    break
            for _ in range(self.concurrency):
                await queue.put(None)

        async def worker() -> None:
            while (entry := await queue.get()) is not None:
                outcomes.append(await self._attempt(entry))
                wake.set()

        async def settler() -> None:
            # group commit: whatever finished while the previous batch was being written goes in one transaction
            while True:
                if not outcomes:
                    if finished:
                        return
                    await wake.wait()
                    wake.clear()
                    continue
                batch, outcomes[:] = list(outcomes), []
                settled.extend(await self._settle(batch))

        async with AsyncExitStack() as stack:
            for platform in sorted({e.platform for e in first}):
                batch = getattr(self._senders[platform], "batch", None)
                if batch is not None:
                    await stack.enter_async_context(batch())
            settling = asyncio.create_task(settler())
            try:
                await asyncio.gather(claimer(first), *(worker() for _ in range(self.concurrency)))
            finally:
                finished = True
                wake.set()
                await settling
        return settled

    def routes(self) -> list[str]:
        """"platform:kind" of every kind a registered sender delivers (a sender without `kinds`: all)."""
        return [f"{platform}:{kind}" for platform, sender in self._senders.items()
                for kind in getattr(sender, "kinds", KINDS)]

    async def _claim(self, routes: list[str] | None = None) -> list[OutboxEntry]:
        now = self._now()
        return await self._in_tx(lambda tx: tx.outbox_claim(self.routes() if routes is None else routes, now,
                                                            now + self.lease_seconds, self.chunk, self.shards))

    async def _in_tx(self, body: Callable[[Tx], Awaitable[Any]]) -> Any:
        """`body(tx)` in a transaction, run again when it lost a race with another process's
        transaction (PostgreSQL's serialization failure: two workers settling or claiming the same
        row); the body only reads and writes in its transaction, and the cache of target problems it
        may change is put back before each new run."""
        attempt = 1
        while True:
            problems = set(self._problems)
            try:
                async with self.store.transaction() as tx:
                    return await body(tx)
            except WriteConflict:
                self._problems = problems
                if attempt == RACE_RETRIES:
                    raise
            await asyncio.sleep(random.uniform(0, 0.001 * 2 ** attempt))  # not self.rng: keep its draws
            attempt += 1

    async def _attempt(self, entry: OutboxEntry) -> tuple[OutboxEntry, Permanent | None]:
        """Send one entry; return it with the outcome filled in (written later by `_settle`)."""
        sender = self._senders[entry.platform]
        try:
            ref = None
            find = getattr(sender, "find", None)
            if entry.reconcile and find is not None:
                ref = await find(entry)
            if ref is None:
                ref = await sender.send(entry)
        except PlatformError as exc:
            return self._failed(entry, exc)
        except Exception as exc:  # a bug or an unclassified error: retried, and logged once with its traceback
            if entry.last_error != "internal_error":
                log.exception("outbox %s: unexpected error; will retry", entry.key)
            return self._failed(entry, Transient("internal_error", f"{type(exc).__name__}: {exc}"[:300]),
                                logged=True)
        entry.status, entry.sent_ref = "sent", ref
        return entry, None

    def _failed(self, entry: OutboxEntry, exc: PlatformError, *,
                logged: bool = False) -> tuple[OutboxEntry, Permanent | None]:
        now = self._now()
        changed = entry.last_error != exc.reason and not logged
        entry.last_error, entry.error_detail, entry.error_fix = exc.reason, exc.detail, exc.fix
        entry.first_error_at = entry.first_error_at or now
        if isinstance(exc, Permanent):
            entry.status = "failed"
            log.warning("outbox %s failed for good: %s (%s)%s", entry.key, exc.reason, exc.detail,
                        f"; fix: {exc.fix}" if exc.fix else "")
            return entry, exc
        assert isinstance(exc, Transient)
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, entry.attempts - 1)) * self.rng.uniform(0.5, 1.5)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        entry.status, entry.not_before = "pending", now + delay
        if changed:
            log.warning("outbox %s: %s (%s); will retry", entry.key, exc.reason, exc.detail)
        return entry, None

    async def _settle(self, batch: list[tuple[OutboxEntry, Permanent | None]]) -> list[OutboxEntry]:
        now = self._now()

        async def settle(tx: Tx) -> list[OutboxEntry]:
            out: list[OutboxEntry] = []
            held = await tx.outbox_settle_many([entry for entry, _ in batch], now)
            for entry, permanent in batch:
                if entry.id not in held:
                    log.info("outbox %s: its lease ran out mid-send; another worker owns it now", entry.key)
                    continue
                out.append(entry)
                if entry.status == "sent" and (entry.platform, entry.tenant, entry.target) in self._problems:
                    await self._resolved(tx, entry.platform, entry.tenant, entry.target, now)
                if permanent is not None and permanent.scope != "entry":
                    await self._problem(tx, entry, permanent, now)
            done = [entry for entry in out if entry.status in ("sent", "failed")]
            for kind in dict.fromkeys(entry.kind for entry in done):
                of_kind = [entry for entry in done if entry.kind == kind]
                if kind in self._many_hooks:
                    await self._many_hooks[kind](tx, of_kind)
                else:
                    for entry in of_kind:
                        await self._hook(tx, entry)
            return out

        return await self._in_tx(settle)

    async def _hook(self, tx: Tx, entry: OutboxEntry) -> None:
        hook = self._hooks.get(entry.kind)
        if hook is not None:
            await hook(tx, entry)

    async def _problem(self, tx: Tx, entry: OutboxEntry, exc: Permanent, now: float) -> None:
        target = TENANT if exc.scope == "tenant" else entry.target
        prior = await tx.target_state(entry.platform, entry.tenant, target)
        since = prior.since if prior is not None else now
        paused = exc.scope == "tenant" or exc.gone or now - since >= PAUSE_AFTER
        state = "paused" if paused else "failing"
        await tx.set_target_state(TargetState(entry.platform, entry.tenant, target, state, exc.reason, exc.detail,
                                              exc.fix, since, now))
        self._problems.add((entry.platform, entry.tenant, target))
        if paused:
            await tx.outbox_move(entry.platform, entry.tenant, None if target == TENANT else target, None,
                                 ("pending",), "paused", now)
        if prior is None or prior.state != state or prior.reason != exc.reason:
            where = f"{entry.platform} {entry.tenant}" + (f" {target}" if target else "")
            log.warning("delivery problem on %s: %s -> %s (%s)%s", where, prior.state if prior else "ok", state,
                        exc.reason, f"; fix: {exc.fix}" if exc.fix else "")

    async def _resolved(self, tx: Tx, platform: str, tenant: str, target: str, now: float) -> None:
        prior = await tx.target_state(platform, tenant, target)
        if prior is not None and prior.state == "failing":
            await tx.clear_target_state(platform, tenant, target)
            self._problems.discard((platform, tenant, target))
            log.info("delivery problem on %s %s %s resolved (%s): a send succeeded", platform, tenant, target,
                     prior.reason)


async def resume(tx: Tx, platform: str, tenant: str, target: str | None, now: float) -> int:
    """Forget the problem of a target (or of a whole tenant, target None) and resume what waits on it.

    Failed entries of the target are retried too: the admin says the cause is fixed."""
    cleared = await tx.clear_target_state(platform, tenant, target)
    moved = await tx.outbox_move(platform, tenant, target, None, ("paused",), "pending", now)
    if target is not None:
        moved += await tx.outbox_move(platform, tenant, target, None, ("failed",), "pending", now)
    if cleared or moved:
        log.info("deliveries on %s %s%s resumed: %d waiting entries", platform, tenant,
                 f" {target}" if target else "", moved)
    return moved

