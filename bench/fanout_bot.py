"""The bot side of the fanout benchmark, in its own process (so that it can be SIGKILLed halfway).

`python -m bench.fanout_bot DB SLACK_URL STATS BASE SHIFT [RATE [LEASE]]` opens the real store on DB (a
SQLite file, or a postgresql:// URL: one of several processes on one database), builds
the engine and the real Scheduler, and wires the Slack adapter exactly as `mldebt run` does
(`build_app(..., scheduler=...)` registers its DailyPoster), with the Web API client pointed at the
fake at SLACK_URL, pacing its posts at 95% of RATE calls/s (SLACK_POST_RATE; none if omitted) and
leasing outbox claims for LEASE seconds (default: the outbox's). Then it runs `Scheduler.run()` until
every daily channel's post is marked posted in the database, and exits.

The clock is real time mapped onto the benchmark's date: `now = BENCH_NOW + (time.time() - BASE) +
SHIFT`, so a restarted process continues the same timeline, and SHIFT can stand for downtime.

It writes JSON lines to STATS as it goes (flushed at once, so they survive a SIGKILL): when the
scheduler started, each `queue_daily_posts` call (start, end, posts queued) and when all were
posted, with the process's CPU time at those points. Times are `time.perf_counter()`, which is CLOCK_MONOTONIC on Linux: the parent compares
them with its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.clock import SystemClock

BENCH_NOW = datetime(2026, 11, 26, 9, 0, 30, tzinfo=UTC)
TOKEN = "xoxb-fanout-bench"
SECRET = "fanoutbenchsecret0123456789abcd"
POLL_S = 0.5  # how often the process checks whether every post is marked posted (off the event loop; the
# total is timed at the fake, so a slower check costs no accuracy and less of the bot's CPU)
MAX_S = 1800.0  # and gives up, so that nothing outlives a benchmark that went wrong


class BenchClock(SystemClock):
    """Real time, on the benchmark's timeline (see the module docstring); sleeps as SystemClock does."""

    def __init__(self, base: float, shift: float) -> None:
        self.base, self.shift = base, shift

    def now(self) -> datetime:
        return BENCH_NOW + timedelta(seconds=time.time() - self.base + self.shift)


class Stats:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a")

    def write(self, **fields: Any) -> None:
        self.file.write(json.dumps(fields) + "\n")
        self.file.flush()


def _posted(db_path: Path) -> int:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM daily_posts WHERE status = 'posted'").fetchone()[0]
    finally:
        con.close()


async def _posted_pg(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT COUNT(*) FROM daily_posts WHERE status = 'posted'")
    finally:
        await conn.close()


async def run(db: str, slack_url: str, stats_path: Path, base: float, shift: float, rate: float | None = None,
              lease: float | None = None) -> None:
    from adapters.slack.app import build_app
    from adapters.slack.web import make_client
    from bot.bank import load_bank
    from bot.config import Settings
    from bot.engine import QuizEngine
    from bot.scheduler import Scheduler
    from bot.store import store_for

    stats = Stats(stats_path)
    bank = load_bank()  # before the store opens: an invalid bank must end the process, not leave it hanging
    postgres = db.startswith("postgresql://")
    store = store_for(db if postgres else Path(db))
    await store.open()
    clock = BenchClock(base, shift)
    engine = QuizEngine(store, bank, clock)
    scheduler = Scheduler(engine, clock)
    if lease is not None:
        scheduler.outbox.lease_seconds = lease
    settings = Settings(database=Path("unused.sqlite3") if postgres else Path(db), slack_bot_token=TOKEN,
                        slack_signing_secret=SECRET, slack_post_rate=rate)
    build_app(settings, engine, scheduler=scheduler, client=make_client(TOKEN, base_url=slack_url))

    claim = engine.queue_daily_posts

    async def timed_claim(platforms: Any, *args: Any) -> Any:  # bench-only instrumentation
        t0, c0 = time.perf_counter(), time.process_time()
        posts = await claim(platforms, *args)
        stats.write(event="claim", start=t0, end=time.perf_counter(), claimed=len(posts),
                    reconcile=sum(p.reconcile for p in posts), cpu_start=c0, cpu_end=time.process_time())
        return posts

    engine.queue_daily_posts = timed_claim  # type: ignore[method-assign]
    async with store.transaction() as tx:
        channels = len([c for c in await tx.daily_channels(None, None) if c.enabled])
    parent, deadline = os.getppid(), time.monotonic() + MAX_S
    stats.write(event="start", at=time.perf_counter())
    task = scheduler.start()
    try:
        while (await _posted_pg(db) if postgres else await asyncio.to_thread(_posted, Path(db))) < channels:
            if task.done():
                task.result()  # the scheduler loop never ends by itself: surface why it did
            if os.getppid() != parent or time.monotonic() > deadline:
                raise SystemExit("the benchmark is gone or the run took too long; stopping")
            await asyncio.sleep(POLL_S)
        stats.write(event="done", at=time.perf_counter(), cpu=time.process_time())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


def main(argv: list[str]) -> int:
    db, url, stats, base, shift, *more = argv
    rate, lease = (float(v) if v != "-" else None for v in (more + ["-", "-"])[:2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run(db, url, Path(stats), float(base), float(shift), rate, lease))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
