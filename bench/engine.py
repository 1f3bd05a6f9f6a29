"""Engine: 1,000 players playing mastery challenges at once through the real engine and SQLite store.

Every player is an asyncio task on one event loop, as in the bot: it starts a challenge, then answers
each question as soon as it sees it (no think time), right or wrong at random, so about a third of
the questions take a second attempt. The clock is a FakeClock, so nothing times out. The store is
the real SqliteStore (aiosqlite, WAL, group commit, synchronous FULL by default) on a file under
bench/results/, the disk the bot would use.

Beside it, in the same run and on the same disk: the store as it was before group commit
(bench/store_variants.py, the baseline the target is a multiple of), the shipped store with
synchronous NORMAL (the price of FULL), and raw `sqlite3` single-row INSERT + COMMIT (NORMAL and
FULL), the same through aiosqlite, and one bare aiosqlite trip.

Because every player answers at once, the measured rate is the engine's capacity and each answer's
latency is mostly its wait: by Little's law, latency ~= players / rate. So the run also measures one
player alone (the service time of an answer) and counts, in an untimed pass under the same load,
trips to aiosqlite's thread, SQL statements, COMMITs and WAL frames per answer. The SQL alone is the
statements of lone answers (traced on the connection) replayed with plain sqlite3.

`--open-loop RATE`: answers arrive as a Poisson process at RATE per second from a pool of players
(each answers its current question when picked), and latency is measured from the scheduled
arrival, so a store that falls behind pays for the queue it builds (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from bot.bank import Bank, BankError, load_bank
from bot.cli import settle_heap
from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.replies import Feedback, Player, QuestionCard, Reply, Summary
from bot.store import SqliteStore

from .common import RESULTS, median, percentile, poisson_arrivals, report, verdict
from .store_variants import VARIANTS

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TARGET_RATIO = 3.0  # answers/s over the baseline store's, same run
TARGET_OPEN_P99_MS = 25.0
OPEN_LOOP_TARGET_RATE = 1_000.0
RIGHT_FIRST, RIGHT_SECOND = 0.65, 0.5  # chance of a right answer on the first / the second attempt
SHIPPED = "shipped (group commit, synchronous FULL)"
BASELINE = "baseline (before group commit)"
CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")

StoreFactory = Callable[..., SqliteStore]
STORES: dict[str, StoreFactory] = {SHIPPED: SqliteStore, **VARIANTS}


def bench_bank(tmp: Path) -> tuple[Bank, str]:
    """The shipped bank; if it does not load (it may be mid-edit), the generated test bank."""
    try:
        return load_bank(), "shipped question_bank/"
    except BankError as exc:
        from tests.fakes.bank import write_bank

        bank = load_bank(write_bank(tmp / "fake-bank"))
        return bank, f"tests/fakes/bank.py (the shipped bank did not load: {len(exc.problems)} problems)"


def player_of(n: int) -> Player:
    return Player("slack", "T1", f"U{n:06d}", f"Player {n}")


def pick(bank: Bank, card: QuestionCard, right: bool) -> str:
    answer = bank.question(card.question_id).answer_text
    return next(c.letter for c in card.choices if (c.text == answer) == right and c.letter not in card.tried)


def card_in(replies: list[Reply]) -> QuestionCard | None:
    return next((r for r in replies if isinstance(r, QuestionCard)), None)


async def answer_once(engine: QuizEngine, player: Player, card: QuestionCard, rng: random.Random,
                      first: bool, event_id: str) -> list[Reply]:
    right = rng.random() < (RIGHT_FIRST if first else RIGHT_SECOND)
    return await engine.answer(player, card.session_id, card.question_id, pick(engine.bank, card, right), event_id)


def after(replies: list[Reply], card: QuestionCard) -> tuple[QuestionCard | None, bool]:
    """The card to answer next (None: the challenge is over) and whether it is a first attempt."""
    if any(isinstance(r, Summary) for r in replies):
        return None, True
    nxt = card_in(replies)
    if nxt is not None:
        return nxt, True
    feedback = replies[0]
    assert isinstance(feedback, Feedback) and not feedback.final
    return replace(card, tried=(*card.tried, feedback.chosen)), False  # a letter is tried once


async def play(engine: QuizEngine, n: int, card: QuestionCard, rng: random.Random,
               latencies: list[float]) -> int:
    """Answer until the challenge is over; return how many answers it took."""
    player, answers, first = player_of(n), 0, True
    current: QuestionCard | None = card
    while current is not None:
        t0 = time.perf_counter()
        replies = await answer_once(engine, player, current, rng, first, f"e{n}-{answers}")
        latencies.append((time.perf_counter() - t0) * 1000)
        answers += 1
        current, first = after(replies, current)
    return answers


async def start(engine: QuizEngine, n: int, latencies: list[float]) -> QuestionCard:
    t0 = time.perf_counter()
    replies = await engine.start(player_of(n), "challenge")
    latencies.append((time.perf_counter() - t0) * 1000)
    card = card_in(replies)
    assert card is not None
    return card


async def open_engine(path: Path, bank: Bank, seed: int,
                      factory: StoreFactory = SqliteStore) -> tuple[SqliteStore, QuizEngine]:
    store = factory(path)
    await store.open()
    return store, QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))


async def concurrent_run(path: Path, bank: Bank, players: int, seed: int,
                         factory: StoreFactory = SqliteStore) -> dict:
    """All players start at once, then all play at once; the answering phase is what is timed."""
    store, engine = await open_engine(path, bank, seed, factory)
    starts: list[float] = []
    answers: list[float] = []
    try:
        t0 = time.perf_counter()
        cards = await asyncio.gather(*(start(engine, n, starts) for n in range(players)))
        start_s = time.perf_counter() - t0
        rngs = [random.Random(seed * 1_000_003 + n) for n in range(players)]
        cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        counts = await asyncio.gather(*(play(engine, n, cards[n], rngs[n], answers) for n in range(players)))
        wall = time.perf_counter() - t0
        cpu, loop_cpu = time.process_time() - cpu0, time.thread_time() - loop0
    finally:
        await store.close()
    assert sum(counts) == len(answers)
    return {
        "answers": len(answers), "wall_s": wall, "answers_per_s": len(answers) / wall,
        "p50_ms": median(answers), "p99_ms": percentile(answers, 99), "max_ms": max(answers),
        "starts_per_s": players / start_s, "start_p50_ms": median(starts), "start_p99_ms": percentile(starts, 99),
        # the event-loop thread vs everything else (mostly aiosqlite's worker thread running SQLite)
        "loop_thread_busy": loop_cpu / wall, "other_threads_busy": (cpu - loop_cpu) / wall,
        "loop_cpu_per_answer_ms": loop_cpu / len(answers) * 1000,
    }


def arrival(engine: QuizEngine, rngs, latencies: list[float], idle: deque) -> Callable[..., Awaitable[None]]:
    """The open loop's arrival for `poisson_arrivals`: player n answers, its latency is taken from the
    scheduled instant, and it waits idle for its next arrival (a finished challenge followed by a new
    one). `rngs[n]` is player n's answer generator (a list or a dict by player number)."""
    loop = asyncio.get_running_loop()

    async def arrive(n: int, card: QuestionCard, first: bool, k: int, due: float) -> None:
        replies = await answer_once(engine, player_of(n), card, rngs[n], first, f"o{n}-{k}")
        latencies.append((loop.time() - due) * 1000)
        nxt, first = after(replies, card)
        if nxt is None:
            nxt, first = await start(engine, n, []), True
        idle.append((n, nxt, first, k + 1))
    return arrive


async def open_loop_run(path: Path, bank: Bank, rate: float, duration: float, pool: int, seed: int,
                        factory: StoreFactory = SqliteStore) -> dict:
    """Poisson arrivals at `rate`/s for `duration` s; latency from each arrival's scheduled instant.

    Each arrival takes an idle player from the pool (a player is busy while its answer is in flight)
    who answers its current question; a finished challenge is followed by a new one (its start is
    load on the store, not a measured answer). An arrival that finds no idle player is counted.
    """
    store, engine = await open_engine(path, bank, seed, factory)
    rng = random.Random(seed)
    latencies: list[float] = []
    try:
        cards = await asyncio.gather(*(start(engine, n, []) for n in range(pool)))
        idle: deque[tuple[int, QuestionCard, bool, int]] = deque((n, cards[n], True, 0) for n in range(pool))
        rngs = [random.Random(seed * 1_000_003 + n) for n in range(pool)]
        loop = asyncio.get_running_loop()
        arrive = arrival(engine, rngs, latencies, idle)
        cpu0, loop0 = time.process_time(), time.thread_time()
        t0, missed = await poisson_arrivals(rate, duration, rng, idle, arrive)
        wall = loop.time() - t0
        cpu, loop_cpu = time.process_time() - cpu0, time.thread_time() - loop0
    finally:
        await store.close()
    return {"offered_per_s": rate, "answers": len(latencies), "achieved_per_s": len(latencies) / wall,
            "p50_ms": median(latencies), "p99_ms": percentile(latencies, 99), "max_ms": max(latencies),
            "no_idle_player": missed, "loop_thread_busy": loop_cpu / wall, "other_threads_busy": (cpu - loop_cpu) / wall}


async def counted_run(path: Path, bank: Bank, players: int, seed: int, factory: StoreFactory) -> dict:
    """Untimed: the same players at once, counting per answer the trips to aiosqlite's thread (puts on
    its queue: each wakes the thread), the SQL
    statements SQLite ran (traced on the connection, trigger bodies not counted), the COMMITs and
    the WAL frames (pages) written. WAL auto-checkpoints are off for this pass only, so that the
    WAL's frame count is everything the answers wrote."""
    store, engine = await open_engine(path, bank, seed, factory)
    db = store._db
    assert db is not None
    verbs: Counter[str] = Counter()
    trips = [0]

    last = [""]

    def trace(sql: str) -> None:
        # SQLite reports a statement again for each trigger program it runs; those are not trips
        # or statements of their own
        if not sql.startswith("--") and sql != last[0]:
            verbs[sql.split(None, 1)[0].upper()] += 1
        last[0] = sql

    real_queue = db._tx

    class CountingQueue:
        """aiosqlite's queue to its thread, counting puts (each one a trip: the thread wakes)."""

        def put_nowait(self, item: object) -> None:
            trips[0] += 1
            real_queue.put_nowait(item)

    try:
        cards = await asyncio.gather(*(start(engine, n, []) for n in range(players)))
        await db.execute("PRAGMA wal_autocheckpoint = 0")
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await db._execute(db._conn.set_trace_callback, trace)
        db._tx = CountingQueue()  # type: ignore[assignment]
        rngs = [random.Random(seed * 1_000_003 + n) for n in range(players)]
        latencies: list[float] = []
        counts = await asyncio.gather(*(play(engine, n, cards[n], rngs[n], latencies) for n in range(players)))
        db._tx = real_queue
        await db._execute(db._conn.set_trace_callback, None)
        [(_, frames, _)] = await db.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db._tx = real_queue
        await store.close()
    n = sum(counts)
    sql = sum(v for k, v in verbs.items() if k not in CONTROL)
    return {"answers": n, "trips": trips[0] / n, "statements": sql / n, "commits": verbs["COMMIT"] / n,
            "answers_per_commit": n / max(verbs["COMMIT"], 1), "wal_frames": frames / n,
            "verbs": {k: v / n for k, v in sorted(verbs.items())}}


async def traced_alone(path: Path, bank: Bank, players: int, seed: int) -> list[tuple[str, list[str]]]:
    """The SQL of each start and answer of players playing one at a time (so each call is its own
    batch, from BEGIN to COMMIT), as SQLite ran it: for `replay`."""
    store, engine = await open_engine(path, bank, seed)
    db = store._db
    assert db is not None
    current: list[str] = []

    def trace(sql: str) -> None:
        if not sql.startswith("--") and (not current or sql != current[-1]):  # not trigger programs
            current.append(sql)

    await db._execute(db._conn.set_trace_callback, trace)
    calls: list[tuple[str, list[str]]] = []
    try:
        for n in range(players):
            current.clear()
            card: QuestionCard | None = await start(engine, n, [])
            calls.append(("start", list(current)))
            rng, first, k = random.Random(seed * 1_000_003 + n), True, 0
            while card is not None:
                current.clear()
                replies = await answer_once(engine, player_of(n), card, rng, first, f"e{n}-{k}")
                calls.append(("answer", list(current)))
                k += 1
                card, first = after(replies, card)
    finally:
        await db._execute(db._conn.set_trace_callback, None)
        await store.close()
    return calls


def replay(path: Path, calls: list[tuple[str, list[str]]]) -> float:
    """The SQL work alone: the traced statements replayed in order with plain sqlite3 on a fresh file
    (same pragmas). Returns answers/s counting only the answers' statements."""
    db = _fresh_db(path)
    spent, answers = 0.0, 0
    try:
        for kind, statements in calls:
            t0 = time.perf_counter()
            for sql in statements:
                db.execute(sql).fetchall()
            if kind == "answer":
                spent += time.perf_counter() - t0
                answers += 1
    finally:
        db.close()
    return answers / spent


def _fresh_db(path: Path) -> sqlite3.Connection:
    """A new store file (migrated by the real store), opened with the store's pragmas."""
    async def create() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("busy_timeout = 10000", "journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON"):
        db.execute(f"PRAGMA {pragma}")
    return db


def raw_insert_commit(path: Path, n: int, synchronous: str) -> float:
    """Reference: sqlite3 single-row INSERT + COMMIT per transaction; rows per second."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE IF NOT EXISTS ref (id INTEGER PRIMARY KEY, session_id TEXT, player_id INTEGER, "
               "choice TEXT, points INTEGER, event_key TEXT UNIQUE, answered_at REAL)")
    t0 = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO ref (session_id, player_id, choice, points, event_key, answered_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", ("s", i, "A", 10, f"raw-{synchronous}-{i}", 0.0))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


async def aiosqlite_reference(path: Path, n: int) -> tuple[float, float, float]:
    """The same transaction through aiosqlite (rows/s, synchronous NORMAL); one bare thread round
    trip: its wall time and the event-loop thread's CPU time for it (microseconds)."""
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        t0 = time.perf_counter()
        for i in range(n):
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO ref (session_id, player_id, choice, points, event_key, answered_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", ("s", i, "A", 10, f"aio{i}", 0.0))
            await db.execute("COMMIT")
        rate = n / (time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            await db.commit()  # outside a transaction sqlite3's commit does nothing: a pure round trip
        hop_us = (time.perf_counter() - t0) / n * 1e6
        hop_cpu_us = (time.thread_time() - c0) / n * 1e6
    finally:
        await db.close()
    return rate, hop_us, hop_cpu_us


async def alone_run(path: Path, bank: Bank, players: int, seed: int) -> dict:
    """One player at a time: the service time of an answer, with nobody ahead of it."""
    store, engine = await open_engine(path, bank, seed)
    starts: list[float] = []
    answers: list[float] = []
    loop_cpu = 0.0
    try:
        for n in range(players):
            card = await start(engine, n, starts)
            c0 = time.thread_time()
            await play(engine, n, card, random.Random(seed * 1_000_003 + n), answers)
            loop_cpu += time.thread_time() - c0
    finally:
        await store.close()
    return {"answers": len(answers), "p50_ms": median(answers), "p99_ms": percentile(answers, 99),
            "mean_ms": sum(answers) / len(answers), "start_p50_ms": median(starts),
            "loop_cpu_per_answer_ms": loop_cpu / len(answers) * 1000}


def main(smoke: bool = False, runs: int = 3, open_loop: float | None = None) -> int:
    if open_loop is not None:
        return main_open_loop(open_loop, smoke, runs)
    players, alone_players, ref_rows, traced = (20, 5, 300, 3) if smoke else (1_000, 100, 20_000, 50)
    load_before = os.getloadavg()
    per_run: list[dict] = []
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        tmp = Path(tmp_name)
        bank, bank_used = bench_bank(tmp)
        settle_heap()  # as `mldebt run` does before serving
        counted = {name: asyncio.run(counted_run(tmp / f"count-{i}.sqlite3", bank, players, 99, factory))
                   for i, (name, factory) in enumerate(STORES.items())}
        sql_only = replay(tmp / "replay.sqlite3", asyncio.run(traced_alone(tmp / "trace.sqlite3", bank, traced, 7)))
        for run in range(runs):
            r: dict = {"stores": {}}
            # the variants take turns within each run, so that load from other work hits them alike
            for i, (name, factory) in enumerate(STORES.items()):
                r["stores"][name] = asyncio.run(
                    concurrent_run(tmp / f"engine-{run}-{i}.sqlite3", bank, players, run, factory))
            r["alone"] = asyncio.run(alone_run(tmp / f"alone-{run}.sqlite3", bank, alone_players, run))
            r["raw_normal_per_s"] = raw_insert_commit(tmp / f"ref-n-{run}.sqlite3", ref_rows, "NORMAL")
            r["raw_full_per_s"] = raw_insert_commit(tmp / f"ref-f-{run}.sqlite3", ref_rows // 4, "FULL")
            aio = asyncio.run(aiosqlite_reference(tmp / f"ref-n-{run}.sqlite3", ref_rows // 4))
            r["aiosqlite_insert_commit_per_s"], r["round_trip_us"], r["round_trip_loop_cpu_us"] = aio
            per_run.append(r)
    load_after = os.getloadavg()

    def med(key: Callable[[dict], float]) -> float:
        return median([key(r) for r in per_run])

    stores = {name: {k: med(lambda r, n=name, k=k: r["stores"][n][k])
                     for k in ("answers_per_s", "p50_ms", "p99_ms", "loop_cpu_per_answer_ms", "loop_thread_busy",
                               "other_threads_busy", "answers")}
              for name in STORES}
    ratios = [r["stores"][SHIPPED]["answers_per_s"] / r["stores"][BASELINE]["answers_per_s"] for r in per_run]
    ratio = median(ratios)
    new, old = stores[SHIPPED], stores[BASELINE]
    raw_normal, raw_full = med(lambda r: r["raw_normal_per_s"]), med(lambda r: r["raw_full_per_s"])
    aio = med(lambda r: r["aiosqlite_insert_commit_per_s"])
    trip_us, trip_cpu_us = med(lambda r: r["round_trip_us"]), med(lambda r: r["round_trip_loop_cpu_us"])
    alone_p50, alone_p99 = med(lambda r: r["alone"]["p50_ms"]), med(lambda r: r["alone"]["p99_ms"])
    alone_cpu = med(lambda r: r["alone"]["loop_cpu_per_answer_ms"])
    c_new, c_old = counted[SHIPPED], counted[BASELINE]
    rows = [
        ("players at once / answers per run", f"{players:,} / {new['answers']:,.0f}", "1,000",
         "ok" if not smoke else "smoke"),
        ("answers/s, shipped store (group commit, FULL)", f"{new['answers_per_s']:,.0f}", "-", "-"),
        ("answers/s, baseline store (before, NORMAL), same run", f"{old['answers_per_s']:,.0f}", "-", "-"),
        ("shipped / baseline (median of per-run ratios)", f"{ratio:.2f}x", f">= {TARGET_RATIO:.0f}x",
         verdict(ratio >= TARGET_RATIO)),
    ]
    for name, w in stores.items():
        if name not in (SHIPPED, BASELINE):
            rows.append((f"answers/s, {name}", f"{w['answers_per_s']:,.0f}", "-", "-"))
    rows += [
        ("reference: raw sqlite3 INSERT+COMMIT/s, NORMAL / FULL", f"{raw_normal:,.0f} / {raw_full:,.0f}", "-", "-"),
        ("shipped answers/s / raw INSERT+COMMIT/s (NORMAL)", f"{new['answers_per_s'] / raw_normal:.3f}",
         "0.25 (beyond this issue)", "-"),
        ("shipped answers/s / raw INSERT+COMMIT/s (FULL)", f"{new['answers_per_s'] / raw_full:.3f}", "-", "-"),
        ("reference: aiosqlite INSERT+COMMIT/s (NORMAL)", f"{aio:,.0f}", "-", "-"),
        ("p50 / p99 all at once, shipped", f"{new['p50_ms']:,.1f} / {new['p99_ms']:,.1f} ms", "-", "-"),
        ("p50 / p99 all at once, baseline", f"{old['p50_ms']:,.1f} / {old['p99_ms']:,.1f} ms", "-", "-"),
        ("one player alone (shipped): p50 / p99", f"{alone_p50:.2f} / {alone_p99:.2f} ms", "-", "-"),
        ("per answer: trips to aiosqlite's thread, shipped / baseline", f"{c_new['trips']:.2f} / {c_old['trips']:.2f}",
         "-", "-"),
        ("per answer: SQL statements, shipped / baseline", f"{c_new['statements']:.2f} / {c_old['statements']:.2f}",
         "-", "-"),
        ("answers per COMMIT, shipped / baseline", f"{c_new['answers_per_commit']:.1f} / "
         f"{c_old['answers_per_commit']:.1f}", "-", "-"),
        ("WAL pages per answer, shipped / baseline", f"{c_new['wal_frames']:.2f} / {c_old['wal_frames']:.2f}",
         "-", "-"),
        ("event-loop CPU per answer, shipped / baseline", f"{new['loop_cpu_per_answer_ms']:.3f} / "
         f"{old['loop_cpu_per_answer_ms']:.3f} ms", "-", "-"),
        ("event-loop CPU per answer, one player alone (shipped)", f"{alone_cpu:.3f} ms", "-", "-"),
        ("SQL alone per lone answer (traced, replayed with sqlite3)", f"{1000 / sql_only:.3f} ms", "-", "-"),
        ("one aiosqlite trip: wall / event-loop CPU", f"{trip_us:.0f} / {trip_cpu_us:.0f} us", "-", "-"),
        ("CPU busy, shipped: event loop / other threads", f"{new['loop_thread_busy']:.0%} / "
         f"{new['other_threads_busy']:.0%}", "-", "-"),
    ]
    report("engine", rows, {
        "bank": bank_used, "players": players, "runs": runs,
        "store": "SqliteStore: aiosqlite, WAL, group commit, synchronous FULL, file under bench/results/",
        "load_average_before_after": [load_before, load_after],
        "answers_per_s": new["answers_per_s"], "p50_ms": new["p50_ms"], "p99_ms": new["p99_ms"],
        "baseline_answers_per_s": old["answers_per_s"], "ratio_to_baseline": ratio, "ratios_per_run": ratios,
        "raw_insert_commit_per_s": raw_normal, "raw_insert_commit_full_per_s": raw_full,
        "ratio_engine_to_raw": new["answers_per_s"] / raw_normal,
        "ratio_engine_to_raw_full": new["answers_per_s"] / raw_full,
        "alone_p50_ms": alone_p50, "alone_p99_ms": alone_p99, "alone_loop_cpu_per_answer_ms": alone_cpu,
        "sql_only_ms_per_answer": 1000 / sql_only,
        "aiosqlite_insert_commit_per_s": aio, "round_trip_us": trip_us, "round_trip_loop_cpu_us": trip_cpu_us,
        "per_answer": counted, "stores": stores, "per_run": per_run,
    }, smoke)
    return 0


def main_open_loop(rate: float, smoke: bool, runs: int) -> int:
    duration, pool = (1.0, 50) if smoke else (10.0, 1_000)
    load_before = os.getloadavg()
    per_run: list[dict] = []
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        tmp = Path(tmp_name)
        bank, bank_used = bench_bank(tmp)
        settle_heap()  # as `mldebt run` does before serving
        for run in range(runs):
            per_run.append({name: asyncio.run(open_loop_run(tmp / f"open-{run}-{i}.sqlite3", bank, rate, duration,
                                                            pool, run, factory))
                            for i, (name, factory) in enumerate(STORES.items())})
    load_after = os.getloadavg()
    stores = {name: {k: median([r[name][k] for r in per_run])
                     for k in ("achieved_per_s", "p50_ms", "p99_ms", "max_ms", "no_idle_player", "answers",
                               "loop_thread_busy", "other_threads_busy")}
              for name in STORES}
    new = stores[SHIPPED]
    target_applies = rate >= OPEN_LOOP_TARGET_RATE
    rows = [("offered answers/s (Poisson), seconds per run, players", f"{rate:,.0f}, {duration:.0f} s, {pool:,}",
             f"{OPEN_LOOP_TARGET_RATE:,.0f}", "ok" if not smoke else "smoke")]
    for name, w in stores.items():
        ok = verdict(w["p99_ms"] <= TARGET_OPEN_P99_MS) if name == SHIPPED and target_applies else "-"
        rows.append((f"{name}: achieved/s, p50 / p99 / max", f"{w['achieved_per_s']:,.0f}, {w['p50_ms']:.1f} / "
                     f"{w['p99_ms']:.1f} / {w['max_ms']:.0f} ms",
                     f"p99 <= {TARGET_OPEN_P99_MS:.0f} ms" if name == SHIPPED else "-", ok))
        rows.append((f"{name}: CPU busy, event loop / other threads", f"{w['loop_thread_busy']:.0%} / "
                     f"{w['other_threads_busy']:.0%}", "-", "-"))
    rows.append(("load average (1 min) before / after", f"{load_before[0]:.1f} / {load_after[0]:.1f}", "-", "-"))
    report("engine-open-loop", rows, {
        "bank": bank_used, "offered_per_s": rate, "duration_s": duration, "pool": pool, "runs": runs,
        "load_average_before_after": [load_before, load_after],
        "p99_ms": new["p99_ms"], "p50_ms": new["p50_ms"], "achieved_per_s": new["achieved_per_s"],
        "stores": stores, "per_run": per_run,
    }, smoke)
    return 0
