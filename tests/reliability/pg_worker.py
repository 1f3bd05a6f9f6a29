"""One bot process on a shared PostgreSQL database, for tests/reliability/test_postgres_processes.py.

The test starts three of these, SIGKILLs them at random and starts new ones. Commands come on stdin
and results go to stdout, one JSON line each, flushed, so the test knows what a player was told:

    {"op": "start", "user": U}                         -> {"ack": "start:U", "session": S, "question": Q}
    {"op": "answer", "user": U, "session": S, "question": Q, "event": E}
                                                       -> {"ack": E, "question": next Q or null, "badge": bool}
    a domain error                                     -> {"rej": E, "error": name}

Every answer is the right letter of the question, so a challenge answered to the end earns the badge.
Daily posts and time-outs go through the outbox to a fake platform: a file of JSON lines (argv[3])
appended to atomically, which `find` searches as a real platform's history is looked up after an
interrupted try; the outbox lease is cut to 2 s so a claim of a killed process is taken over within
the test.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bot import errors
from bot.bank import LETTERS, load_bank
from bot.clock import SystemClock
from bot.engine import QuizEngine
from bot.outbox import OutboxEntry
from bot.replies import BadgeAwarded, DailyPost, DailyReveal, Player, QuestionCard, TimeUp
from bot.scheduler import Scheduler, delivery_of
from bot.store.postgres import PostgresStore


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class FilePoster:
    """A channel history kept in a file shared by every process (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _append(self, line: str) -> None:
        with open(self.path, "a") as f:  # one write of one line: atomic on an O_APPEND file
            f.write(line)

    def _posted(self, ref: str) -> bool:
        with open(self.path) as f:
            return any(json.loads(line)["ref"] == ref for line in f if line.strip())

    async def post(self, post: DailyPost) -> str:
        ref = f"post-{post.post_id}"
        self._append(json.dumps({"ref": ref, "post": post.post_id, "channel": post.channel,
                                 "date": post.local_date}) + "\n")
        return ref

    async def find(self, post: DailyPost) -> str | None:
        return f"post-{post.post_id}" if self._posted(f"post-{post.post_id}") else None

    async def time_up(self, entry: OutboxEntry) -> str:
        delivery = delivery_of(entry)
        up = next(r for r in delivery.replies if isinstance(r, TimeUp))
        self._append(json.dumps({"ref": entry.key, "timeout": delivery.session_id, "question": up.question_id})
                     + "\n")
        return entry.key

    async def find_time_up(self, entry: OutboxEntry) -> str | None:
        return entry.key if self._posted(entry.key) else None

    async def reveal(self, reveal: DailyReveal) -> None:
        return None


async def main(url: str, bank_dir: str, platform_file: str, time_limit_scale: float = 0.01) -> None:
    store = PostgresStore(url, max_connections=4)
    await store.open()
    bank = load_bank([bank_dir], time_limit_scale=time_limit_scale)  # 0.01: every question times out after 1 s
    engine = QuizEngine(store, bank, SystemClock())
    scheduler = Scheduler(engine, SystemClock(), idle_seconds=0.5)
    scheduler.outbox.lease_seconds = 2
    poster = FilePoster(platform_file)
    scheduler.deliver("slack", "timeout", poster.time_up, poster.find_time_up)
    scheduler.register_daily("slack", poster)
    scheduler.start()

    async def handle(cmd: dict) -> None:
        player = Player("slack", "T1", cmd["user"], cmd["user"])
        try:
            if cmd["op"] == "start":
                replies = await engine.start(player, "challenge")
                card = next(r for r in replies if isinstance(r, QuestionCard))
                say(ack=f"start:{cmd['user']}", session=card.session_id, question=card.question_id)
                return
            letter = cmd.get("letter", LETTERS[0])
            async with store.transaction() as tx:
                session = await tx.get_session(cmd["session"])
                item = session and await tx.get_item(session.id, session.position)
                if "letter" not in cmd and item is not None and item.question_id == cmd["question"]:
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
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], *map(float, sys.argv[4:5])))
