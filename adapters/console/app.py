"""The terminal adapter: play without any token, and the fixture the console tests drive.

It reads lines from stdin, turns them into engine calls through bot.commands, and prints the
replies. While a timed question is open on a terminal, a status line above the prompt counts down
every second; without a terminal (pipes, tests) the deadline is printed once. Time-outs come from
the scheduler, like on every other platform.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import TextIO

from bot.commands import Action, handle_action, handle_text
from bot.engine import Delivery, QuizEngine
from bot.replies import (
    ActiveSession,
    AdminStatus,
    BadgeAwarded,
    ConceptCard,
    DailyPost,
    DailyReveal,
    DailyStatus,
    Feedback,
    HelpText,
    Hint,
    Leaderboard,
    Notice,
    Player,
    QuestionCard,
    Rejected,
    Reply,
    SessionStarted,
    Skipped,
    Stats,
    Summary,
    TeamList,
    TimeUp,
    TopicList,
)

PLATFORM = "console"
TENANT = "local"
CHANNEL = "terminal"  # the console's one "channel", for `daily set terminal 09:00 Europe/Berlin`
ANSWER_KEYS = {"a", "b", "c", "d"}
PROMPT_IDLE = "mldebt> "
PROMPT_QUESTION = "Your answer (A-D, h = hint, s = skip, q = quit): "


def render(reply: Reply) -> str:
    """Plain text for one reply, with a little terminal layout on top of the reply's own text()."""
    match reply:
        case QuestionCard():
            head = f"\n── {reply.progress} · {reply.topic} · {reply.type.replace('_', ' ')} · {reply.difficulty} ──"
            body = [head, f"[{reply.question_id}] {reply.prompt}"]
            if reply.code:
                body += ["", *("    " + line for line in reply.code.rstrip().splitlines()), ""]
            body += [f"  {c.letter}) {c.text}" + (" (tried)" if c.letter in reply.tried else "") for c in reply.choices]
            if reply.deadline is not None:
                body.append(f"Time limit {reply.time_limit} s: answer by {reply.deadline:%H:%M:%S} UTC. "
                            f"Attempts left: {reply.attempts_left}.")
            else:
                body.append(f"Untimed. Attempts left: {reply.attempts_left}.")
            return "\n".join(body)
        case Feedback():
            mark = "✔" if reply.correct else "✘"
            return f"{mark} {reply.text()}"
        case TimeUp() | Skipped():
            return f"⏰ {reply.text()}" if isinstance(reply, TimeUp) else reply.text()
        case Summary():
            return "\n" + reply.text()
        case BadgeAwarded():
            return f"🏅 Badge earned: {reply.badge}!"
        case Rejected():
            return f"! {reply.message}"
        case (SessionStarted() | ActiveSession() | Hint() | HelpText() | Stats() | TopicList() | ConceptCard()
              | Notice() | Leaderboard() | TeamList() | DailyStatus() | AdminStatus()):
            return reply.text()
        case DailyPost():
            return f"\n📅 {reply.text()}\n(answer with a letter while no quiz is open)"
        case DailyReveal():
            return f"\n📅 {reply.text()}"
        case _:
            # an unknown reply type still shows, but loudly, so a missing renderer is noticed
            return f"[{type(reply).__name__}] {reply.text()}"


class LineReader:
    """Lines from a blocking text stream, read in a worker thread; one read in flight at a time."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: asyncio.Future[str] | None = None

    async def readline(self) -> str | None:
        if self._pending is None:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._stream.readline))
        line = await asyncio.shield(self._pending)
        self._pending = None
        return line if line else None  # '' = end of input


class ConsoleApp:
    def __init__(self, engine: QuizEngine, player: Player, *, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, live_countdown: bool | None = None,
                 new_event_id: Callable[[], str] | None = None) -> None:
        self.engine = engine
        self.player = player
        self.out = stdout or sys.stdout
        self.reader = LineReader(stdin or sys.stdin)
        self.live = self.out.isatty() if live_countdown is None else live_countdown
        self.card: QuestionCard | None = None
        self.daily: DailyPost | None = None
        self.finished = asyncio.Event()
        self._new_event_id = new_event_id or (lambda: uuid.uuid4().hex)
        self._changed = asyncio.Event()

    # -- output ---------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, replies: list[Reply] | tuple[Reply, ...]) -> None:
        for reply in replies:
            self.write(render(reply))
            if isinstance(reply, QuestionCard):
                self.card = reply
            elif isinstance(reply, Summary):
                self.card = None
                self.finished.set()
        self._changed.set()

    async def deliver(self, delivery: Delivery) -> None:
        """Scheduler hook: a time-out happened while the player was thinking."""
        if self.live:
            self.out.write("\n")
        self.show(delivery.replies)
        if self.card is not None:
            self.out.write(PROMPT_QUESTION)
            self.out.flush()

    # the scheduler's DailyPoster: the terminal is the console's only channel
    async def post(self, post: DailyPost) -> str:
        self.daily = post
        self.show([post])
        return post.post_id

    async def find(self, post: DailyPost) -> str | None:
        return None  # nothing to look up in a terminal; a re-post is the safe answer

    async def reveal(self, reveal: DailyReveal) -> None:
        if self.daily is not None and self.daily.post_id == reveal.post_id:
            self.daily = None
        self.show([reveal])

    # -- input ----------------------------------------------------------------------------------

    async def handle_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        lowered = text.lower()
        card = self.card
        if card is not None and lowered in ANSWER_KEYS:
            action = Action("a", card.session_id, card.question_id, lowered.upper())
            self.show(await handle_action(self.engine, self.player, action.encode(), self._new_event_id()))
            return
        daily = self.daily
        if card is None and daily is not None and lowered in ANSWER_KEYS:
            action = Action("d", daily.post_id, daily.question_id, lowered.upper())
            self.show(await handle_action(self.engine, self.player, action.encode(), self._new_event_id()))
            return
        if card is not None and lowered in ("h", "s", "q"):
            text = {"h": "hint", "s": "skip", "q": "quit"}[lowered]
        self.show(await handle_text(self.engine, self.player, text, is_admin=True))

    async def _countdown(self) -> None:
        """Redraw the status line above the prompt once a second while a timed question is open."""
        while True:
            await asyncio.sleep(1)
            card = self.card
            if card is None or card.deadline is None:
                continue
            left = max(0, int((card.deadline - self.engine.clock.now()).total_seconds()))
            status = f"⏳ {left // 60}:{left % 60:02d} left · question {card.progress}"
            # save cursor, go up one line, rewrite it, restore cursor: the typed answer is untouched
            self.out.write(f"\0337\033[1A\r\033[2K{status}\0338")
            self.out.flush()

    def _prompt(self) -> None:
        if self.card is not None:
            if self.live and self.card.deadline is not None:
                self.out.write("\n")  # the countdown's line
            self.out.write(PROMPT_QUESTION)
        else:
            self.out.write(PROMPT_IDLE)
        self.out.flush()

    async def run(self, *, first_command: str | None = None, exit_when_finished: bool = False) -> int:
        """The read-eval-print loop. Returns the process exit code."""
        ticker = asyncio.create_task(self._countdown()) if self.live else None
        try:
            if first_command:
                await self.handle_line(first_command)
            while not (exit_when_finished and self.finished.is_set()):
                self._prompt()
                line = await self.reader.readline()
                if line is None:
                    self.write("\nBye. Your progress is saved; `resume` picks up where you left off.")
                    return 0
                if line.strip().lower() == "exit":
                    return 0
                await self.handle_line(line)
            return 0
        finally:
            if ticker is not None:
                ticker.cancel()
