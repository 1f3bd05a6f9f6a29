"""Leaderboard: top 10 plus the asking player's own rank, with 100,000 players and 2,000,000 answers.

Measured through the real engine (`QuizEngine.leaderboard`, one transaction that also registers the
asking player) against the aggregates the engine keeps. The reference, in the same run on the same
file, is what the aggregates avoid: summing the raw answers for the top 10.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.bank import load_bank
from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.periods import period_keys
from bot.replies import Player
from bot.store import SqliteStore

from .common import median, percentile, report, verdict

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TARGET_MS = 5.0


def populate(path: Path, players: int, answers: int, seed: int = 1) -> None:
    """Players, raw answers, and the per-period aggregates the engine would have kept for them."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    db.executemany(
        "INSERT INTO players (id, platform, tenant, user_id, display_name, created_at) VALUES (?, 'slack', 'T1', ?, ?, 0)",
        ((i, f"U{i:07d}", f"Player {i}") for i in range(1, players + 1)))
    start = NOW.timestamp() - 60 * 86400
    # activity is skewed: a few players answer a lot
    weights = [1.0 / (i ** 0.8) for i in range(1, players + 1)]
    who = rng.choices(range(1, players + 1), weights=weights, k=answers)
    points = (10, 20, 30, 40, 50)

    def rows():
        for n, pid in enumerate(who):
            correct = rng.random() < 0.6
            yield ("s", n, 1, "q", pid, "A", "A", "correct" if correct else "wrong",
                   rng.choice(points) if correct else 0, f"k{n}", start + rng.random() * 60 * 86400)

    db.executemany(
        "INSERT INTO answers (session_id, position, attempt, question_id, player_id, choice, shown_choice, outcome, "
        "points, event_key, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    keys = period_keys(NOW, UTC)
    week_start = NOW.timestamp() - NOW.weekday() * 86400 - (NOW.hour * 3600)
    month_start = datetime(NOW.year, NOW.month, 1, tzinfo=UTC).timestamp()
    for key, since in (("all", 0.0), (keys[0], week_start), (keys[1], month_start)):
        db.execute(
            "INSERT INTO score_periods (scope, period, player_id, points, answered, correct, reached_at) "
            "SELECT 'slack:T1', ?, player_id, SUM(points), COUNT(*), SUM(outcome = 'correct'), MAX(answered_at) "
            "FROM answers WHERE answered_at >= ? GROUP BY player_id", (key, since))
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def measure(path: Path, players: int, queries: int, seed: int) -> dict[str, list[float]]:
    bank = load_bank()
    store = SqliteStore(path)
    await store.open()
    engine = QuizEngine(store, bank, FakeClock(NOW))
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"all": [], "week": []}
    try:
        for period in out:
            for _ in range(queries):
                pid = rng.randint(1, players)
                player = Player("slack", "T1", f"U{pid:07d}", f"Player {pid}")
                t0 = time.perf_counter()
                [board] = await engine.leaderboard(player, "players", period)
                out[period].append((time.perf_counter() - t0) * 1000)
                assert len(board.entries) == 10 or players < 10
    finally:
        await store.close()
    return out


def naive_top10_ms(path: Path) -> float:
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    db.execute("SELECT player_id, SUM(points) AS p FROM answers GROUP BY player_id ORDER BY p DESC LIMIT 10").fetchall()
    ms = (time.perf_counter() - t0) * 1000
    db.close()
    return ms


def main(smoke: bool = False, runs: int = 3) -> int:
    players, answers, queries = (1_000, 20_000, 20) if smoke else (100_000, 2_000_000, 300)
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / "results") as tmp:
        path = Path(tmp) / "leaderboard.sqlite3"
        asyncio.run(_create(path))
        t0 = time.perf_counter()
        populate(path, players, answers)
        build_s = time.perf_counter() - t0
        per_run = []
        naive = []
        for run in range(runs):
            per_run.append(asyncio.run(measure(path, players, queries, seed=run)))
            naive.append(naive_top10_ms(path))
    p50_all = median([median(r["all"]) for r in per_run])
    p99_all = median([percentile(r["all"], 99) for r in per_run])
    p50_week = median([median(r["week"]) for r in per_run])
    naive_ms = median(naive)
    rows = [
        ("players / answers", f"{players:,} / {answers:,}", "100,000 / 2,000,000", "ok" if not smoke else "smoke"),
        ("top-10 + own rank, all time, p50", f"{p50_all:.2f} ms", f"<= {TARGET_MS} ms", verdict(p50_all <= TARGET_MS)),
        ("top-10 + own rank, all time, p99", f"{p99_all:.2f} ms", "-", "-"),
        ("top-10 + own rank, this week, p50", f"{p50_week:.2f} ms", f"<= {TARGET_MS} ms", verdict(p50_week <= TARGET_MS)),
        ("reference: SUM over raw answers, top 10", f"{naive_ms:.1f} ms", "-", "-"),
        ("speed-up over the raw sum", f"{naive_ms / p50_all:.0f}x", "-", "-"),
    ]
    report("leaderboard", rows, {
        "players": players, "answers": answers, "queries_per_run": queries, "runs": runs,
        "p50_all_ms": p50_all, "p99_all_ms": p99_all, "p50_week_ms": p50_week, "naive_top10_ms": naive_ms,
        "populate_s": build_s, "per_run_p50_all_ms": [median(r["all"]) for r in per_run],
    }, smoke)
    return 0



async def _create(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()
