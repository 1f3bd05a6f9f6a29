"""Several bot processes on one PostgreSQL database, killed at random: nothing lost, nothing doubled.

Three tests/reliability/pg_worker.py processes serve 30 players at once (each command to a random
live process; a command whose process died before answering is sent again, with the same event id,
to another one, as a platform retries). A killer SIGKILLs a random process every few hundred ms and
starts a new one, at least 30 times. Waits are bounded real waits on real processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg

from tests.fakes.bank import write_bank

ROOT = Path(__file__).resolve().parents[2]
KILLS = 30
SERVING_KILLS = 10  # of them, kills of a process that was serving (not still starting up)
PLAYERS = 30


class Died(Exception):
    """The process a command was sent to was killed before it answered."""


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready = asyncio.Event()
        self.waiting: dict[str, list[asyncio.Future[dict]]] = defaultdict(list)  # by event, oldest first
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if msg.get("ready"):
                self.ready.set()
            else:
                waiting = self.waiting[msg.get("ack") or msg.get("rej")]
                if waiting:
                    waiting.pop(0).set_result(msg)
        for waiting in self.waiting.values():
            for future in waiting:
                future.set_exception(Died())

    async def send(self, key: str, cmd: dict) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.waiting[key].append(future)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise Died() from exc
        if self.reader.done():
            raise Died()
        return await asyncio.wait_for(future, 20)


class Cluster:
    def __init__(self, url: str, folder: Path, *, time_limit_scale: float = 0.01) -> None:
        self.time_limit_scale = time_limit_scale  # 0.01: every question times out after about 1 s
        self.url, self.bank_dir, self.platform = url, write_bank(folder / "bank"), folder / "platform.jsonl"
        self.platform.touch()
        self.workers: list[Worker] = []
        self.kills = 0
        self.kills_serving = 0  # kills of a process that was serving (not still starting up)
        self.rng = random.Random(12)

    async def spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.pg_worker", self.url, str(self.bank_dir),
            str(self.platform), str(self.time_limit_scale), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.workers.append(Worker(proc))

    async def call(self, key: str, cmd: dict) -> dict:
        """Send until some process answers (the same event id each time)."""
        for _ in range(200):
            ready = [w for w in self.workers if w.ready.is_set() and w.proc.returncode is None]
            if not ready:
                waits = [asyncio.create_task(w.ready.wait()) for w in self.workers]
                await asyncio.wait(waits, timeout=1, return_when=asyncio.FIRST_COMPLETED)
                for wait in waits:
                    wait.cancel()
                continue
            try:
                return await self.rng.choice(ready).send(key, cmd)
            except Died:
                continue
        raise AssertionError(f"no process answered {cmd}")

    async def killer(self, stop: asyncio.Event) -> None:
        while not self.enough() or not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            alive = [w for w in self.workers if w.proc.returncode is None]
            ready = [w for w in alive if w.ready.is_set()]
            # a serving process while another one serves (one always does), else one starting up
            starting = [w for w in alive if not w.ready.is_set()]
            if len(ready) >= 2 and (not starting or self.rng.random() < 0.7):
                victim = self.rng.choice(ready)
            elif starting:
                victim = self.rng.choice(starting)
            else:
                continue
            victim.proc.kill()
            await victim.proc.wait()
            self.workers.remove(victim)
            self.kills += 1
            self.kills_serving += victim.ready.is_set()
            await self.spawn()
            if self.enough() and stop.is_set():
                return

    def enough(self) -> bool:
        return self.kills >= KILLS and self.kills_serving >= SERVING_KILLS

    async def close(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None:
                w.proc.kill()
            await w.proc.wait()
            await w.reader


async def play(cluster: Cluster, n: int, acked: list[str], badges: Counter) -> None:
    user = f"u{n:02d}"
    started = await cluster.call(f"start:{user}", {"op": "start", "user": user})
    session, question, position = started["session"], started["question"], 0
    idle = n % 3 == 0  # answers its first question, then lets every other one time out
    while question is not None:
        event = f"{user}-{position}"
        reply = await cluster.call(event, {"op": "answer", "user": user, "session": session,
                                           "question": question, "event": event})
        if "ack" in reply:
            acked.append(event)
            badges[user] += int(reply["badge"])
            question = reply["question"]
        else:
            question = None  # the question closed (its deadline passed while the answer travelled)
        position += 1
        if idle:
            return


async def test_three_processes_killed_at_random_lose_and_double_nothing(postgres_url, tmp_path):
    cluster = Cluster(postgres_url, tmp_path)
    acked: list[str] = []
    badges: Counter = Counter()
    stop = asyncio.Event()
    conn = await asyncpg.connect(postgres_url)
    try:  # five channels whose daily question is due as the processes start
        await conn.executemany(
            "INSERT INTO daily_channels (platform, tenant, channel, post_time, timezone, enabled, updated_at) "
            "VALUES ('slack', 'T1', $1, '00:00', 'UTC', 1, 0)", [(f"C{n}",) for n in range(5)])
    finally:
        await conn.close()
    try:
        for _ in range(3):
            await cluster.spawn()
        killer = asyncio.create_task(cluster.killer(stop))
        await asyncio.gather(*(play(cluster, n, acked, badges) for n in range(PLAYERS)))
        conn = await asyncpg.connect(postgres_url)
        try:
            # every question of every session ends closed (answered or timed out by some survivor)
            for _ in range(900):  # up to 90 s on a busy machine; a quiet one takes a few seconds
                open_items = await conn.fetchval(
                    "SELECT count(*) FROM session_items WHERE status IN ('open', 'pending')")
                posted = await conn.fetchval("SELECT count(*) FROM daily_posts WHERE status = 'posted'")
                unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE status != 'sent'")
                if open_items == 0 and posted == 5 and unsent == 0 and cluster.enough():
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(killer, 120)  # the last kills may wait for processes starting on a busy machine
            assert open_items == 0
            stored = Counter(r[0] for r in await conn.fetch("SELECT event_key FROM answers"))
            timed_out = {(r[0], r[1]) for r in await conn.fetch(
                "SELECT session_id, question_id FROM session_items WHERE status = 'timeout'")}
            badge_rows = await conn.fetch("SELECT player_id, count(*) FROM badges GROUP BY player_id")
            facts = await conn.fetchval("SELECT count(*) FROM score_facts")
            post_rows = await conn.fetch("SELECT channel, local_date FROM daily_posts")
            timeout_keys = {r[0] for r in await conn.fetch("SELECT key FROM outbox WHERE kind = 'timeout'")}
        finally:
            await conn.close()
    finally:
        stop.set()
        await cluster.close()
    assert cluster.enough(), (cluster.kills, cluster.kills_serving)
    # every acknowledged answer is stored exactly once
    assert all(stored[f"slack:{e}"] == 1 for e in acked) and max(stored.values()) == 1
    # every time-out the scheduler closed went through the outbox and reached the platform exactly
    # once, sent by some survivor when the process that closed it died first (look-before-resend)
    lines = [json.loads(line) for line in cluster.platform.read_text().splitlines()]
    shown = Counter((t["timeout"], t["question"]) for t in lines if "timeout" in t)
    assert unsent == 0 and Counter(t["ref"] for t in lines if "timeout" in t) == Counter(timeout_keys)
    assert set(shown) <= timed_out and max(shown.values(), default=1) == 1
    assert len(timed_out) >= (PLAYERS // 3) * 4 * 0.9  # idle players' questions did time out
    # the badge at most once per player, in the database and in what players were told
    assert all(count == 1 for _, count in badge_rows) and max(badges.values()) <= 1
    assert sum(badges.values()) >= 1
    # one scoring fact per closed question: none lost or doubled by a kill or a re-sent answer
    assert facts == PLAYERS * 5
    # each channel's daily question: one row, and on the platform exactly once
    assert sorted(r[0] for r in post_rows) == [f"C{n}" for n in range(5)] and posted == 5
    sent = Counter(t["channel"] for t in lines if "channel" in t)
    assert sent == Counter({f"C{n}": 1 for n in range(5)})


async def test_fifty_duplicate_answers_over_three_processes_store_one(postgres_url, tmp_path):
    # full time limits: on a busy machine the burst may outlast a 1 s limit, and a replay after the
    # time-out would rightly show the question that came next
    cluster = Cluster(postgres_url, tmp_path, time_limit_scale=1.0)
    try:
        for _ in range(3):
            await cluster.spawn()
        started = await cluster.call("start:dup", {"op": "start", "user": "dup"})
        cmd = {"op": "answer", "user": "dup", "session": started["session"], "question": started["question"],
               "event": "click-1", "letter": "B"}
        replies = await asyncio.gather(*(cluster.workers[n % 3].send("click-1", cmd) for n in range(50)))
        conn = await asyncpg.connect(postgres_url)
        try:
            rows = await conn.fetch("SELECT event_key, attempt FROM answers")
        finally:
            await conn.close()
    finally:
        await cluster.close()
    assert [tuple(r) for r in rows] == [("slack:click-1", 1)]
    assert len(replies) == 50 and all("ack" in r for r in replies)
    assert len({json.dumps(r, sort_keys=True) for r in replies}) == 1  # everyone told the same
