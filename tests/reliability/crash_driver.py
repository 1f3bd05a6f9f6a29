"""One bot process playing concurrent challenges against a SQLite file, for the crash test.

tests/reliability/test_crash.py starts it, SIGKILLs it at chosen points and starts it again on the
same database, so everything a player could see has to come from what was committed. It talks on
stdout, one flushed line per event, so that the test knows what a player was told before the kill:

    EXPIRED <session> <question>   start-up closed a question whose deadline passed while it was down
    READY                          start-up done (store open, due deadlines closed)
    SEND <event> <user> <session> <question> <letter>   about to call engine.answer
    ACK <event>                    engine.answer returned: the answer is committed and acknowledged
    REJ <event> <error>            engine.answer raised a domain error (nothing written)
    BADGE <user> <session>         a BadgeAwarded reply reached the player
    DELIVERED <outbox key>         the platform took an outbox entry (not yet recorded as sent)
    DONE                           every player finished and every outbox entry was delivered

The badge's celebration and grant and the daily post go through the real outbox worker to a fake
platform: an append-only file (`--platform-log`), which outlives every kill as Slack would. Its
`find` reads that file, as Slack's conversations.history would show a message an interrupted
attempt sent.

`--die-at ack:N` makes the driver SIGKILL itself right after printing its N-th ACK line, and
`--die-at commit:N` right after SQLite's N-th COMMIT after start-up returns, before any reply of that batch is
released: kill points chosen by counts, so where they land does not depend on the engine's speed or
on how many answers share a commit.

Time is the wall clock plus `--offset` seconds, so the test can make the bot "down" for minutes
without waiting: it restarts the driver with a larger offset. Choices are a pure function of the
seed, the player and the question's place, so a restarted driver plays the same game.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from bot import errors
from bot.bank import load_bank
from bot.clock import SystemClock
from bot.engine import QuizEngine
from bot.modes import CHALLENGE
from bot.outbox import OutboxWorker
from bot.replies import BadgeAwarded, Feedback, Player, QuestionCard, TimeUp
from bot.store import SqliteStore
from bot.store import sqlite as sqlite_store
from tests.fakes.bank import correct_letter, wrong_letter

PLATFORM, TENANT = "slack", "T1"
KINDS = ("celebration", "grant", "daily_post")
LEASE_SECONDS = 1.0  # short, so a restarted driver takes over a dead one's claims quickly
EXTRA_ROUNDS = 4  # at most this many more challenges for a perfect player without the badge
DIE_ON: str | None = None  # BADGE or DELIVERED: the driver SIGKILLs itself right after that line
ALL_WAITING = asyncio.Event()  # every player is about to send its first answer of this run
FIRST_ROUND = asyncio.Event()  # the outbox's first round of this run is done
COUNTS = {"waiting": 0, "active": 0}  # players waiting for FIRST_ROUND; players still playing


def _all_waiting() -> None:
    if COUNTS["waiting"] >= COUNTS["active"]:
        ALL_WAITING.set()


class OffsetClock(SystemClock):
    """The wall clock moved forward by a fixed number of seconds (the time the bot was 'down')."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        return super().now() + self.offset


DIE_AT = {"ack": 0, "commit": 0}  # die right after the n-th of these (0: never)
SEEN = {"ack": 0, "commit": 0}


def count(kind: str) -> None:
    SEEN[kind] += 1
    if SEEN[kind] == DIE_AT[kind]:
        os.kill(os.getpid(), signal.SIGKILL)


def emit(*parts: object) -> None:
    """One write per line, so a kill never leaves half a line behind."""
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()
    if parts[0] == "ACK":
        count("ack")


def die_after_commits(n: int) -> None:
    """Count the store's COMMITs of batches that scored answers, on its connection's thread; the n-th
    is the last thing this process does. Batches of the outbox worker alone (claims, settles) are not
    counted: they commit no answer, so dying after them proves nothing about replies held back."""
    DIE_AT["commit"] = n
    real = sqlite_store._commit

    def commit_then_count(conn: object, batch: object) -> None:
        scored = batch.facts  # type: ignore[attr-defined]
        real(conn, batch)
        if scored:
            count("commit")

    sqlite_store._commit = commit_then_count


def player(index: int) -> Player:
    return Player(PLATFORM, TENANT, f"U{index:02d}", f"Player {index}")


def event_id(user: str, card: QuestionCard, attempt: int) -> str:
    return f"{user}.{card.session_id}.{card.position}.{attempt}"


async def finished_challenges(engine: QuizEngine, who: Player) -> int:
    async with engine.store.transaction() as tx:
        row = await tx._one(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM sessions s JOIN players p ON p.id = s.player_id "
            "WHERE p.platform = ? AND p.tenant = ? AND p.user_id = ? AND s.mode = 'challenge' "
            "AND s.status != 'open'", (who.platform, who.tenant, who.user))
    return row[0]


async def has_badge(engine: QuizEngine, who: Player) -> bool:
    async with engine.store.transaction() as tx:
        row = await tx._one(  # type: ignore[attr-defined]
            "SELECT COUNT(*) FROM badges b JOIN players p ON p.id = b.player_id "
            "WHERE p.platform = ? AND p.tenant = ? AND p.user_id = ?", (who.platform, who.tenant, who.user))
    return row[0] > 0


async def send(engine: QuizEngine, who: Player, session_id: str, question_id: str, letter: str,
               event: str, *, gated: bool = True) -> list | None:
    if gated and not FIRST_ROUND.is_set():
        COUNTS["waiting"] += 1
        _all_waiting()
        await FIRST_ROUND.wait()
    emit("SEND", event, who.user, session_id, question_id, letter)
    try:
        replies = await engine.answer(who, session_id, question_id, letter, event)
    except errors.QuizError as exc:
        emit("REJ", event, type(exc).__name__)
        return None
    emit("ACK", event)
    for reply in replies:
        if isinstance(reply, BadgeAwarded):
            emit("BADGE", reply.player.user, reply.session_id)
            if DIE_ON == "BADGE":  # its celebration and grant are committed, not delivered yet
                os.kill(os.getpid(), signal.SIGKILL)
    return replies


async def play_card(engine: QuizEngine, who: Player, index: int, card: QuestionCard, seed: int) -> None:
    """Act on the current question: maybe skip or take the hint, then answer until it closes."""
    perfect = index % 4 == 0  # these players answer everything right: they earn the badge
    while True:
        attempt = 1 + CHALLENGE.attempts - card.attempts_left
        rng = random.Random(f"{seed}:{who.user}:{card.session_id}:{card.position}:{attempt}")
        roll = rng.random()
        if not perfect and attempt == 1 and roll < 0.05:
            await engine.skip(who, card.session_id, card.question_id)
            return
        if not perfect and not card.hint_used and roll < 0.15:
            await engine.hint(who, card.session_id, card.question_id)
            card = replace(card, hint_used=True)
        right = perfect or rng.random() < 0.6
        letter = correct_letter(engine.bank, card) if right else wrong_letter(engine.bank, card)
        replies = await send(engine, who, card.session_id, card.question_id, letter,
                             event_id(who.user, card, attempt))
        if replies is None:
            return
        feedback = next(r for r in replies if isinstance(r, Feedback))
        if feedback.final:
            return
        card = replace(card, attempts_left=feedback.attempts_left, tried=(*card.tried, letter))


async def play(engine: QuizEngine, index: int, rounds: int, seed: int) -> None:
    who = player(index)
    while True:
        try:
            replies = await engine.resume(who)
        except errors.NoActiveSession:
            done = await finished_challenges(engine, who)
            # a perfect player whose challenges a kill's downtime spoiled (a time-out) plays on, a few
            # rounds at most, until it holds the badge: the badge rules are then covered however the
            # kills land
            if done >= rounds and (index % 4 or done >= rounds + EXTRA_ROUNDS or await has_badge(engine, who)):
                COUNTS["active"] -= 1
                _all_waiting()
                return
            replies = await engine.start(who, "challenge")
        cards = [r for r in replies if isinstance(r, QuestionCard)]
        if cards:
            await play_card(engine, who, index, cards[-1], seed)


class Platform:
    """The fake platform: every delivery is one appended line, which survives a SIGKILL."""

    kinds = KINDS

    def __init__(self, path: Path, die_on: str | None) -> None:
        self.path = path
        self.die_on = die_on
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def send(self, entry) -> str:
        os.write(self.fd, f"{entry.key}\n".encode())
        emit("DELIVERED", entry.key.replace(" ", "_"))
        if self.die_on == "DELIVERED":  # delivered, not yet recorded as sent
            os.kill(os.getpid(), signal.SIGKILL)
        return f"ref:{entry.key}"

    async def find(self, entry) -> str | None:
        return f"ref:{entry.key}" if entry.key in self.path.read_text().splitlines() else None


async def deliver(engine: QuizEngine, worker: OutboxWorker, stop: asyncio.Event) -> None:
    """What the scheduler does for the outbox: queue the daily post, send what is due; until `stop`
    is set and nothing is left to send (a dead process's claims are taken over after their lease).
    Its first round comes once the players are waiting to send their first answers (their questions
    are open) and before any of them is sent, so a run that dies in it leaves questions open."""
    await ALL_WAITING.wait()
    first = True
    while True:
        await engine.queue_daily_posts([PLATFORM])
        await worker.run_once()
        if first:
            FIRST_ROUND.set()
            first = False
        if stop.is_set():
            async with engine.store.transaction() as tx:
                left = await tx._one(  # type: ignore[attr-defined]
                    "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')")
            if left[0] == 0:
                return
        await asyncio.sleep(0.005)


async def run(args: argparse.Namespace, redeliver: list[dict]) -> None:
    store = SqliteStore(args.db)
    await store.open()
    clock = OffsetClock(args.offset)
    engine = QuizEngine(store, load_bank(args.bank), clock, rng=random.Random(args.seed))
    engine.grant_platforms.add(PLATFORM)
    engine.outbox_kinds[PLATFORM] = set(KINDS)
    worker = OutboxWorker(store, clock, lease_seconds=LEASE_SECONDS, concurrency=4)
    worker.on_settled("daily_post", engine.on_daily_post_settled)
    worker.register(PLATFORM, Platform(Path(args.platform_log), DIE_ON))
    await engine.daily_set(player(99), "C1", "00:00", "UTC")
    # what the scheduler's first tick does: close whatever expired while the bot was down
    while deliveries := await engine.expire_due():
        for d in deliveries:
            for reply in d.replies:
                if isinstance(reply, TimeUp):
                    emit("EXPIRED", reply.session_id, reply.question_id)
    emit("READY")
    if args.die_at and args.die_at.startswith("commit:"):
        die_after_commits(int(args.die_at.split(":")[1]))
    for a in redeliver:
        await send(engine, player(int(a["user"][1:])), a["session"], a["question"], a["letter"], a["event"],
                   gated=False)
    stop = asyncio.Event()
    COUNTS["active"] = args.players
    delivering = asyncio.create_task(deliver(engine, worker, stop))
    await asyncio.gather(*(play(engine, i, args.rounds, args.seed) for i in range(args.players)))
    stop.set()
    await delivering
    emit("DONE")
    await store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--bank", required=True)
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--players", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--platform-log", required=True)
    parser.add_argument("--die-on", choices=("BADGE", "DELIVERED"))
    parser.add_argument("--redeliver", help="JSON list of answers a platform delivers again on start-up")
    parser.add_argument("--die-at", help="ack:N or commit:N")
    args = parser.parse_args(argv)
    if args.die_at and args.die_at.startswith("ack:"):
        DIE_AT["ack"] = int(args.die_at.split(":")[1])
    redeliver = json.loads(Path(args.redeliver).read_text()) if args.redeliver else []
    global DIE_ON
    DIE_ON = args.die_on
    asyncio.run(run(args, redeliver))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
