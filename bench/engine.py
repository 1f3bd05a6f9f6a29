"""Engine: 1,000 players playing mastery challenges at once through the real engine and SQLite store.

Every player is an asyncio task on one event loop, as in the bot: it starts a challenge, then answers
each question as soon as it sees it (no think time), right or wrong at random, so about a third of
the questions take a second attempt. The clock is a FakeClock, so nothing times out. The store is
the real SqliteStore (aiosqlite, WAL, synchronous NORMAL) on a file under bench/results/, the disk
the bot would use.

Because every player answers at once, the measured rate is the engine's capacity and each answer's
latency is mostly its wait for the store: by Little's law, latency ~= players / rate. So the run
also measures one player alone (the service time of one answer, nothing to wait for) and takes one
answer apart: SQL statements and aiosqlite thread round trips per answer, and the cost of one round
trip, the SQL alone (the recorded statements replayed with plain sqlite3). The reference, in the
same run and on the same disk with the same pragmas, is raw `sqlite3` single-row INSERT + COMMIT,
and the same through aiosqlite. Finally the same 1,000 players run against two what-if stores
(bench/store_variants.py: the shipped SqliteTx with one round trip per statement, and with sqlite3
called inline), which price the changes the findings point to.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from bot.bank import Bank, BankError, load_bank
from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.replies import Feedback, Player, QuestionCard, Reply, Summary
from bot.store import SqliteStore

from .common import RESULTS, median, percentile, report, verdict
from .store_variants import VARIANTS

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TARGET_RATE = 5_000.0
TARGET_P99_MS = 25.0
RIGHT_FIRST, RIGHT_SECOND = 0.65, 0.5  # chance of a right answer on the first / the second attempt


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


async def play(engine: QuizEngine, n: int, card: QuestionCard, rng: random.Random,
               latencies: list[float]) -> int:
    """Answer until the challenge is over; return how many answers it took."""
    player, answers, first = player_of(n), 0, True
    while True:
        t0 = time.perf_counter()
        replies = await answer_once(engine, player, card, rng, first, f"e{n}-{answers}")
        latencies.append((time.perf_counter() - t0) * 1000)
        answers += 1
        if any(isinstance(r, Summary) for r in replies):
            return answers
        nxt = card_in(replies)
        if nxt is not None:
            card, first = nxt, True
        else:
            feedback = replies[0]
            assert isinstance(feedback, Feedback) and not feedback.final
            card, first = replace(card, tried=(*card.tried, feedback.chosen)), False  # a letter is tried once


async def start(engine: QuizEngine, n: int, latencies: list[float]) -> QuestionCard:
    t0 = time.perf_counter()
    replies = await engine.start(player_of(n), "challenge")
    latencies.append((time.perf_counter() - t0) * 1000)
    card = card_in(replies)
    assert card is not None
    return card


async def open_engine(path: Path, bank: Bank, seed: int,
                      store_cls: type[SqliteStore] = SqliteStore) -> tuple[SqliteStore, QuizEngine]:
    store = store_cls(path)
    await store.open()
    return store, QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))


async def concurrent_run(path: Path, bank: Bank, players: int, seed: int,
                         store_cls: type[SqliteStore] = SqliteStore) -> dict:
    """All players start at once, then all play at once; the answering phase is what is timed."""
    store, engine = await open_engine(path, bank, seed, store_cls)
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
    }


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


async def anatomy(path: Path, bank: Bank, players: int, seed: int) -> dict:
    """Take answers apart: the SQL each one runs and its aiosqlite thread round trips (not timed).

    Wraps the store's aiosqlite connection (`SqliteStore._db`, bench-only) to record every statement
    with its parameters, so `replay` can run exactly the same SQL without the threads.
    """
    store, engine = await open_engine(path, bank, seed)
    db = store._db
    assert db is not None
    calls: list[tuple[str, str, object]] = []
    hops = [0]
    real_execute, real_executemany, real_hop = db.execute, db.executemany, db._execute
    real_fetchall = db.execute_fetchall

    def execute(sql: str, parameters: object = None) -> object:
        calls.append(("execute", sql, parameters))
        return real_execute(sql, parameters)

    def execute_fetchall(sql: str, parameters: object = None) -> object:
        calls.append(("execute", sql, parameters))
        return real_fetchall(sql, parameters)

    def executemany(sql: str, parameters: object) -> object:
        calls.append(("executemany", sql, list(parameters)))  # type: ignore[call-overload]
        return real_executemany(sql, calls[-1][2])

    async def hop(fn: Callable, *args: object, **kwargs: object) -> object:
        hops[0] += 1
        return await real_hop(fn, *args, **kwargs)

    db.execute, db.executemany, db._execute = execute, executemany, hop  # type: ignore[method-assign]
    db.execute_fetchall = execute_fetchall  # type: ignore[method-assign]
    transactions: list[tuple[str, list]] = []
    answer_hops = 0
    try:
        for n in range(players):
            calls.clear()
            card = await start(engine, n, [])
            transactions.append(("start", list(calls)))
            rng, first, answers = random.Random(seed * 1_000_003 + n), True, 0
            while True:
                calls.clear()
                hops[0] = 0
                replies = await answer_once(engine, player_of(n), card, rng, first, f"e{n}-{answers}")
                answers += 1
                transactions.append(("answer", list(calls)))
                answer_hops += hops[0]
                if any(isinstance(r, Summary) for r in replies):
                    break
                nxt = card_in(replies)
                card, first = (nxt, True) if nxt is not None else (replace(card, tried=(replies[0].chosen,)), False)
    finally:
        db.execute, db.executemany, db._execute = real_execute, real_executemany, real_hop  # type: ignore[method-assign]
        db.execute_fetchall = real_fetchall  # type: ignore[method-assign]
        await store.close()
    answered = [c for kind, c in transactions if kind == "answer"]
    verbs: dict[str, int] = {}
    for tx in answered:
        for _, sql, _ in tx:
            verb = sql.split(None, 1)[0].upper()
            verbs[verb] = verbs.get(verb, 0) + 1
    per = {"statements": sum(map(len, answered)) / len(answered), "round_trips": answer_hops / len(answered),
           **{k: v / len(answered) for k, v in sorted(verbs.items())}}
    return {"answers": len(answered), "per_answer": per, "transactions": transactions}


def _fresh_db(path: Path) -> sqlite3.Connection:
    """A new store file (migrated by the real store), opened with the store's pragmas."""
    async def create() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("busy_timeout = 10000", "journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        db.execute(f"PRAGMA {pragma}")
    return db


def _run_tx(db: sqlite3.Connection, tx: list) -> None:
    for method, sql, params in tx:
        if method == "execute":
            db.execute(sql, params or ()).fetchall()
        else:
            db.executemany(sql, params)


def replay(path: Path, transactions: list[tuple[str, list]]) -> float:
    """The SQL work alone: the engine's recorded statements replayed in order with plain sqlite3 on a
    fresh file. Returns answers/s counting only the answers' transactions."""
    db = _fresh_db(path)
    spent, answers = 0.0, 0
    try:
        for kind, tx in transactions:
            t0 = time.perf_counter()
            _run_tx(db, tx)
            if kind == "answer":
                spent += time.perf_counter() - t0
                answers += 1
    finally:
        db.close()
    return answers / spent


def raw_insert_commit(path: Path, n: int) -> float:
    """Reference: sqlite3 single-row INSERT + COMMIT per transaction; rows per second."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS ref (id INTEGER PRIMARY KEY, session_id TEXT, player_id INTEGER, "
               "choice TEXT, points INTEGER, event_key TEXT UNIQUE, answered_at REAL)")
    t0 = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO ref (session_id, player_id, choice, points, event_key, answered_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", ("s", i, "A", 10, f"raw{i}", 0.0))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    db.close()
    return rate


async def aiosqlite_reference(path: Path, n: int) -> tuple[float, float, float]:
    """The same transaction through aiosqlite (rows/s); one bare thread round trip: its wall time and
    the event-loop thread's CPU time for it (microseconds)."""
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


def main(smoke: bool = False, runs: int = 3) -> int:
    players, alone_players, ref_rows, dissected = (20, 5, 500, 3) if smoke else (1_000, 100, 20_000, 50)
    load_before = os.getloadavg()
    per_run: list[dict] = []
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        tmp = Path(tmp_name)
        bank, bank_used = bench_bank(tmp)
        parts = asyncio.run(anatomy(tmp / "anatomy.sqlite3", bank, dissected, seed=99))
        for run in range(runs):
            r: dict = {"concurrent": asyncio.run(concurrent_run(tmp / f"engine-{run}.sqlite3", bank, players, run))}
            r["alone"] = asyncio.run(alone_run(tmp / f"alone-{run}.sqlite3", bank, alone_players, run))
            r["raw_insert_commit_per_s"] = raw_insert_commit(tmp / f"ref-{run}.sqlite3", ref_rows)
            aio = asyncio.run(aiosqlite_reference(tmp / f"ref-{run}.sqlite3", ref_rows))
            r["aiosqlite_insert_commit_per_s"], r["round_trip_us"], r["round_trip_loop_cpu_us"] = aio
            r["sql_only_answers_per_s"] = replay(tmp / f"replay-{run}.sqlite3", parts["transactions"])
            for name, cls in VARIANTS.items():
                if cls is not SqliteStore:
                    r[f"what_if_{name}"] = asyncio.run(
                        concurrent_run(tmp / f"{name}-{run}.sqlite3", bank, players, run, cls))
            per_run.append(r)
    load_after = os.getloadavg()

    def med(key: Callable[[dict], float]) -> float:
        return median([key(r) for r in per_run])

    rate = med(lambda r: r["concurrent"]["answers_per_s"])
    p50, p99 = med(lambda r: r["concurrent"]["p50_ms"]), med(lambda r: r["concurrent"]["p99_ms"])
    alone_p50, alone_p99 = med(lambda r: r["alone"]["p50_ms"]), med(lambda r: r["alone"]["p99_ms"])
    alone_mean = med(lambda r: r["alone"]["mean_ms"])
    loop_cpu_ms = med(lambda r: r["alone"]["loop_cpu_per_answer_ms"])
    raw, aio = med(lambda r: r["raw_insert_commit_per_s"]), med(lambda r: r["aiosqlite_insert_commit_per_s"])
    trip_us, trip_cpu_us = med(lambda r: r["round_trip_us"]), med(lambda r: r["round_trip_loop_cpu_us"])
    sql_only = med(lambda r: r["sql_only_answers_per_s"])
    loop_busy = med(lambda r: r["concurrent"]["loop_thread_busy"])
    other_busy = med(lambda r: r["concurrent"]["other_threads_busy"])
    what_if = {name: {k: med(lambda r, n=name, k=k: r[f"what_if_{n}"][k]) for k in ("answers_per_s", "p50_ms", "p99_ms")}
               for name, cls in VARIANTS.items() if cls is not SqliteStore}
    per = parts["per_answer"]
    trips_ms = per["round_trips"] * trip_us / 1000
    rows = [
        ("players at once / answers per run", f"{players:,} / {med(lambda r: r['concurrent']['answers']):,.0f}",
         "1,000", "ok" if not smoke else "smoke"),
        ("answers/s (all players at once)", f"{rate:,.0f}", f">= {TARGET_RATE:,.0f}", verdict(rate >= TARGET_RATE)),
        ("per-answer latency p50 (all at once)", f"{p50:,.1f} ms", "-", "-"),
        ("per-answer latency p99 (all at once)", f"{p99:,.1f} ms", f"<= {TARGET_P99_MS:.0f} ms",
         verdict(p99 <= TARGET_P99_MS)),
        ("Little's law: players / answers/s", f"{players / rate * 1000:,.0f} ms", "-", "-"),
        ("per-answer latency p50 / p99 (one player alone)", f"{alone_p50:.2f} / {alone_p99:.2f} ms", "-", "-"),
        ("reference: raw sqlite3 INSERT+COMMIT/s", f"{raw:,.0f}", "-", "-"),
        ("engine answers/s / raw INSERT+COMMIT/s", f"{rate / raw:.3f}", "-", "-"),
        ("reference: aiosqlite INSERT+COMMIT/s", f"{aio:,.0f}", "-", "-"),
        ("per answer: SQL statements / aiosqlite round trips", f"{per['statements']:.1f} / {per['round_trips']:.1f}",
         "-", "-"),
        ("one round trip: wall / event-loop CPU", f"{trip_us:.0f} / {trip_cpu_us:.0f} us", "-", "-"),
        ("one answer alone: mean / round trips x wall", f"{alone_mean:.2f} / {trips_ms:.2f} ms", "-", "-"),
        ("one answer alone: event-loop CPU / SQL alone", f"{loop_cpu_ms:.2f} / {1000 / sql_only:.2f} ms", "-", "-"),
        ("CPU busy (all at once): event loop / other threads", f"{loop_busy:.0%} / {other_busy:.0%}", "-", "-"),
    ]
    for name, w in what_if.items():
        # latency is not comparable here: an inline store never yields, so a task plays its whole
        # challenge before the next one starts; with everyone at once, latency ~= players / rate
        rows.append((f"what-if {name} store: answers/s", f"{w['answers_per_s']:,.0f}", f">= {TARGET_RATE:,.0f}",
                     "-"))
    report("engine", rows, {
        "bank": bank_used, "players": players, "runs": runs,
        "store": "SqliteStore: aiosqlite, WAL, synchronous NORMAL, file under bench/results/",
        "load_average_before_after": [load_before, load_after],
        "answers_per_s": rate, "p50_ms": p50, "p99_ms": p99,
        "raw_insert_commit_per_s": raw, "ratio_engine_to_raw": rate / raw,
        "alone_p50_ms": alone_p50, "alone_p99_ms": alone_p99, "alone_mean_ms": alone_mean,
        "loop_cpu_per_answer_ms": loop_cpu_ms, "sql_only_ms_per_answer": 1000 / sql_only,
        "aiosqlite_insert_commit_per_s": aio, "round_trip_us": trip_us, "round_trip_loop_cpu_us": trip_cpu_us,
        "per_answer": per, "round_trips_ms_per_answer": trips_ms,
        "loop_thread_busy": loop_busy, "other_threads_busy": other_busy,
        "what_if": what_if, "per_run": per_run,
    }, smoke)
    return 0

