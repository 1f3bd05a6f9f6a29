"""One bot process on a shared PostgreSQL database, for tests/reliability/test_postgres_processes.py.

The test starts three of these, SIGKILLs them at random and starts new ones. Commands come on stdin
and results go to stdout, one JSON line each, flushed, so the test knows what a player was told:

    {"op": "start", "user": U}                         -> {"ack": "start:U", "session": S, "question": Q}
    {"op": "answer", "user": U, "session": S, "question": Q, "event": E}
                                                       -> {"ack": E, "question": next Q or null, "badge": bool}
    a time-out delivered by this process's scheduler   -> {"timeout": S, "question": Q}
    a domain error                                     -> {"rej": E, "error": name}

Every answer is the right letter of the question, so a challenge answered to the end earns the badge.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bot import errors
from bot.bank import LETTERS, load_bank
from bot.clock import SystemClock
from bot.engine import Delivery, QuizEngine
from bot.replies import BadgeAwarded, Player, QuestionCard, TimeUp
from bot.scheduler import Scheduler
from bot.store.postgres import PostgresStore


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main(url: str, bank_dir: str) -> None:
    store = PostgresStore(url, max_connections=4)
    await store.open()
    bank = load_bank([bank_dir], time_limit_scale=0.01)  # every question times out after 1 s
    engine = QuizEngine(store, bank, SystemClock())
    scheduler = Scheduler(engine, SystemClock(), idle_seconds=0.5)

    async def deliver(delivery: Delivery) -> None:
        for reply in delivery.replies:
            if isinstance(reply, TimeUp):
                say(timeout=delivery.session_id, question=reply.question_id)

    scheduler.register("slack", deliver)
    scheduler.start()

    async def handle(cmd: dict) -> None:
        player = Player("slack", "T1", cmd["user"], cmd["user"])
        try:
            if cmd["op"] == "start":
                replies = await engine.start(player, "challenge")
                card = next(r for r in replies if isinstance(r, QuestionCard))
                say(ack=f"start:{cmd['user']}", session=card.session_id, question=card.question_id)
                return
            letter = LETTERS[0]
            async with store.transaction() as tx:
                session = await tx.get_session(cmd["session"])
                item = session and await tx.get_item(session.id, session.position)
                if item is not None and item.question_id == cmd["question"]:
                    letter = LETTERS[item.choice_order.index(bank.question(item.question_id).answer)]
            replies = await engine.answer(player, cmd["session"], cmd["question"], letter, cmd["event"])
            nxt = next((r.question_id for r in replies if isinstance(r, QuestionCard)), None)
            say(ack=cmd["event"], question=nxt, badge=any(isinstance(r, BadgeAwarded) for r in replies))
        except errors.QuizError as exc:
            say(rej=cmd.get("event", cmd["op"]), error=type(exc).__name__)

    say(ready=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        task = asyncio.create_task(handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
