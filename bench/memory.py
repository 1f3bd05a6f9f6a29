"""Memory: process RSS with 10,000 players in active challenges.

Each measurement is a fresh Python process (so pytest, earlier runs or the parent's imports do not
count): it loads the bank, opens the real SqliteStore on a file under bench/results/ and builds the
engine, reads its RSS (the baseline), then 10,000 players each start a challenge and answer its
first question. RSS is read again once every player is inside an open challenge, and the peak
(VmHWM) is kept. RSS comes from /proc/self/status.

Two arrival patterns, each in its own process: the burst (all 10,000 at once as asyncio tasks, as
at 09:00; this is the figure held to the target) and one by one (what the bot keeps per player once
the burst is over). Live Python allocations (sys.getallocatedblocks) tell retained state apart from
memory the allocator keeps after a burst.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import RESULTS, median, report, verdict

TARGET_MB = 150.0
ROOT = Path(__file__).resolve().parent.parent


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def _fill(tmp: Path, players: int, seed: int, burst: bool) -> dict:
    from bot.replies import Summary

    from .engine import answer_once, bench_bank, open_engine, player_of, start

    bank, bank_used = bench_bank(tmp)
    store, engine = await open_engine(tmp / "memory.sqlite3", bank, seed)
    try:
        gc.collect()
        baseline, blocks = status_mb("VmRSS"), sys.getallocatedblocks()

        async def one(n: int) -> None:
            card = await start(engine, n, [])
            replies = await answer_once(engine, player_of(n), card, random.Random(seed * 1_000_003 + n), True,
                                        f"e{n}-0")
            assert not any(isinstance(r, Summary) for r in replies)  # still inside the challenge

        async def everyone() -> None:
            if burst:
                await asyncio.gather(*(one(n) for n in range(players)))
            else:
                for n in range(players):
                    await one(n)

        await everyone()
        await asyncio.sleep(0)  # let the finished tasks' callbacks run, so nothing of the burst is held
        gc.collect()
        after, blocks = status_mb("VmRSS"), sys.getallocatedblocks() - blocks
        async with store.transaction() as tx:
            open_sessions = await tx._all("SELECT COUNT(*) FROM sessions WHERE status = 'open'")  # type: ignore[attr-defined]
    finally:
        await store.close()
    # the kernel updates VmHWM lazily, so it can trail a fresh VmRSS reading by a few pages
    return {"bank": bank_used, "baseline_mb": baseline, "after_mb": after, "peak_mb": max(after, status_mb("VmHWM")),
            "python_blocks_added": blocks,
            "open_sessions": open_sessions[0][0], "db_bytes": (tmp / "memory.sqlite3").stat().st_size}


def child(players: int, seed: int, burst: bool) -> None:
    """Runs in the fresh process: prints one JSON line."""
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        print(json.dumps(asyncio.run(_fill(Path(tmp), players, seed, burst))))


def measure(players: int, seed: int, burst: bool) -> dict:
    code = f"from bench.memory import child; child({players}, {seed}, {burst})"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(smoke: bool = False, runs: int = 3) -> int:
    players = 200 if smoke else 10_000
    per_run = [{"burst": measure(players, run, burst=True), "one_by_one": measure(players, run, burst=False)}
               for run in range(runs)]
    assert all(r[k]["open_sessions"] == players for r in per_run for k in r), per_run

    def med(kind: str, key: str) -> float:
        return median([r[kind][key] for r in per_run])

    def per_player_kb(kind: str) -> float:
        return median([(r[kind]["after_mb"] - r[kind]["baseline_mb"]) * 1024 / players for r in per_run])

    baseline, after, peak = med("burst", "baseline_mb"), med("burst", "after_mb"), med("burst", "peak_mb")
    calm_after = med("one_by_one", "after_mb")
    rows = [
        ("players in an open challenge", f"{players:,}", "10,000", "ok" if not smoke else "smoke"),
        ("RSS before (bank loaded, store open)", f"{baseline:.1f} MB", "-", "-"),
        ("RSS after, all players at once", f"{after:.1f} MB", f"<= {TARGET_MB:.0f} MB", verdict(after <= TARGET_MB)),
        ("peak RSS (VmHWM), all at once", f"{peak:.1f} MB", f"<= {TARGET_MB:.0f} MB", verdict(peak <= TARGET_MB)),
        ("RSS growth per player, all at once", f"{per_player_kb('burst'):.2f} KB", "-", "-"),
        ("RSS after / growth per player, one by one", f"{calm_after:.1f} MB / {per_player_kb('one_by_one'):.2f} KB",
         "-", "-"),
        ("live Python blocks added per player (all at once)", f"{med('burst', 'python_blocks_added') / players:.1f}",
         "-", "-"),
        ("database file", f"{med('burst', 'db_bytes') / 2**20:.1f} MB", "-", "-"),
    ]
    report("memory", rows, {
        "bank": per_run[0]["burst"]["bank"], "players": players, "runs": runs,
        "baseline_mb": baseline, "after_mb": after, "peak_mb": peak, "delta_per_player_kb": per_player_kb("burst"),
        "one_by_one_after_mb": calm_after, "one_by_one_delta_per_player_kb": per_player_kb("one_by_one"),
        "python_blocks_added_per_player": med("burst", "python_blocks_added") / players,
        "per_run": per_run,
    }, smoke)
    return 0

