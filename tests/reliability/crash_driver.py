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
    DONE                           every player finished its challenges

Time is the wall clock plus `--offset` seconds, so the test can make the bot "down" for minutes
without waiting: it restarts the driver with a larger offset. Choices are a pure function of the
seed, the player and the question's place, so a restarted driver plays the same game.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from bot import errors
from bot.bank import load_bank
from bot.clock import SystemClock
from bot.engine import QuizEngine
from bot.modes import CHALLENGE
from bot.replies import BadgeAwarded, Feedback, Player, QuestionCard, TimeUp
from bot.store import SqliteStore
from tests.fakes.bank import correct_letter, wrong_letter

PLATFORM, TENANT = "slack", "T1"


class OffsetClock(SystemClock):
    """The wall clock moved forward by a fixed number of seconds (the time the bot was 'down')."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        return super().now() + self.offset


def emit(*parts: object) -> None:
    """One write per line, so a kill never leaves half a line behind."""
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()


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


async def send(engine: QuizEngine, who: Player, session_id: str, question_id: str, letter: str,
               event: str) -> list | None:
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
            if await finished_challenges(engine, who) >= rounds:
                return
            replies = await engine.start(who, "challenge")
        cards = [r for r in replies if isinstance(r, QuestionCard)]
        if cards:
            await play_card(engine, who, index, cards[-1], seed)


async def run(args: argparse.Namespace, redeliver: list[dict]) -> None:
    store = SqliteStore(args.db)
    await store.open()
    engine = QuizEngine(store, load_bank(args.bank), OffsetClock(args.offset), rng=random.Random(args.seed))
    # what the scheduler's first tick does: close whatever expired while the bot was down
    while deliveries := await engine.expire_due():
        for d in deliveries:
            for reply in d.replies:
                if isinstance(reply, TimeUp):
                    emit("EXPIRED", reply.session_id, reply.question_id)
    emit("READY")
    for a in redeliver:
        await send(engine, player(int(a["user"][1:])), a["session"], a["question"], a["letter"], a["event"])
    await asyncio.gather(*(play(engine, i, args.rounds, args.seed) for i in range(args.players)))
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
    parser.add_argument("--redeliver", help="JSON list of answers a platform delivers again on start-up")
    args = parser.parse_args(argv)
    redeliver = json.loads(Path(args.redeliver).read_text()) if args.redeliver else []
    asyncio.run(run(args, redeliver))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
