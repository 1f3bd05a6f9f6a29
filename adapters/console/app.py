"""The terminal adapter: play without any token, and the fixture the console tests drive.

Typed lines become engine calls through bot.commands; replies are printed. Two front ends share
this one app: on a terminal, prompt_toolkit (adapters/console/tty.py) gives line editing, history,
a status toolbar with the countdown and output that lands above the prompt; without one (pipes,
tests, CI) a plain line reader prints the same words. Time-outs come from the scheduler, like on
every other platform.

An answer letter is sent for the question that was on screen when the player started typing it:
if that question closed in the meantime (a time-out), the engine refuses it and the player is told
why, instead of the letter landing on a question they never read.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from typing import Protocol, TextIO

from bot import errors
from bot.commands import ADMIN_HELP, HELP, Action, handle_action, handle_text
from bot.engine import Delivery, QuizEngine
from bot.replies import (
    MODE_TITLES,
    DailyPost,
    DailyReveal,
    HelpText,
    Player,
    QuestionCard,
    Rejected,
    Reply,
    Summary,
)

from .render import render, wrap

PLATFORM = "console"
TENANT = "local"
CHANNEL = "terminal"  # the console's one "channel", for `daily set terminal 09:00 Europe/Berlin`
ANSWER_KEYS = {"a", "b", "c", "d"}
SHORT_KEYS = {"h": "hint", "s": "skip", "q": "quit"}
PROMPT_IDLE = "mldebt> "
PROMPT_QUESTION = "Your answer (A-D, h = hint, s = skip, q = quit): "
# the terminal's user is its admin, and only the terminal has a way out
CONSOLE_HELP = HELP + ADMIN_HELP + (("exit", "leave the terminal (Ctrl-D does too); an open quiz is kept"),)
BYE_OPEN = "Bye. Your quiz is saved; `resume` picks up where you left off."
BYE = "Bye."


class Interrupted(Exception):
    """Ctrl-C at the prompt: the typed line is dropped, the session goes on."""


class Input(Protocol):
    """Where typed lines come from. `read` returns None at end of input, raises Interrupted on Ctrl-C."""

    async def read(self) -> str | None: ...

    def new_question(self) -> None:
        """A question appeared (or closed) while the player may be typing: drop the typed-ahead text."""


class PlainInput:
    """Lines from a blocking text stream (a pipe), read in a worker thread, one read in flight."""

    def __init__(self, stream: TextIO, app: ConsoleApp) -> None:
        self._stream = stream
        self._app = app
        self._pending: asyncio.Future[str] | None = None

    async def read(self) -> str | None:
        self._app.write_raw(self._app.prompt_text())
        if self._pending is None:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._stream.readline))
        line = await asyncio.shield(self._pending)
        self._pending = None
        return line if line else None  # '' = end of input

    def new_question(self) -> None:
        """A pipe cannot take back what was written into it, so a line read next may have been typed
        for the question before (typing_for stays); the prompt is shown again."""
        self._app.write_raw(self._app.prompt_text())


class ConsoleApp:
    def __init__(self, engine: QuizEngine, player: Player, *, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, width: Callable[[], int | None] | None = None,
                 new_event_id: Callable[[], str] | None = None) -> None:
        self.engine = engine
        self.player = player
        self._out = stdout
        self._width = width or (lambda: None)
        self.input: Input = PlainInput(stdin or sys.stdin, self)
        self.card: QuestionCard | None = None
        self.daily: DailyPost | None = None
        self.finished = asyncio.Event()
        # the question the line being typed belongs to: the one on screen when the line was started
        self.typing_for: QuestionCard | None = None
        self._new_event_id = new_event_id or (lambda: uuid.uuid4().hex)

    # -- output ---------------------------------------------------------------------------------

    @property
    def out(self) -> TextIO:
        # looked up on each write: on a terminal, prompt_toolkit swaps sys.stdout for a proxy that
        # prints above the prompt
        return self._out or sys.stdout

    def write_raw(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def write(self, text: str) -> None:
        width = self._width()
        self.write_raw((wrap(text, width) if width else text) + "\n")

    def show(self, replies: list[Reply] | tuple[Reply, ...]) -> None:
        width = self._width()
        for reply in replies:
            if isinstance(reply, HelpText) and reply.commands == HELP:
                reply = HelpText(CONSOLE_HELP, reply.intro)
            self.write(render(reply, width))
            if isinstance(reply, QuestionCard):
                self.card = reply
            elif isinstance(reply, Summary):
                self.card = None
                self.finished.set()

    def set_width(self, width: Callable[[], int | None]) -> None:
        """Wrap output to the columns `width()` returns at each write (None: do not wrap)."""
        self._width = width

    def prompt_text(self) -> str:
        return PROMPT_QUESTION if self.card is not None else PROMPT_IDLE

    async def deliver(self, delivery: Delivery) -> None:
        """Scheduler hook: a time-out happened while the player was thinking."""
        self.show(delivery.replies)
        self.input.new_question()

    # the scheduler's DailyPoster: the terminal is the console's only channel
    async def post(self, post: DailyPost) -> str:
        self.daily = post
        self.show([post])
        if self.card is None:
            self.input.new_question()
        return post.post_id

    async def find(self, post: DailyPost) -> str | None:
        return None  # nothing to look up in a terminal; a re-post is the safe answer

    async def reveal(self, reveal: DailyReveal) -> None:
        if self.daily is not None and self.daily.post_id == reveal.post_id:
            self.daily = None
        self.show([reveal])

    # -- input ----------------------------------------------------------------------------------

    async def welcome_back(self) -> None:
        """At start-up: a quiz left open by an earlier run is named and shown, not left to be guessed."""
        try:
            replies = await self.engine.resume(self.player)
        except errors.NoActiveSession:
            return
        card = next((r for r in replies if isinstance(r, QuestionCard)), None)
        if card is None:  # it ran out of time while the terminal was closed, and that was its last question
            self.write("Your last quiz ended while the terminal was closed:")
        else:
            self.write(f"Welcome back: your {MODE_TITLES.get(card.mode, card.mode).lower()} is still open. "
                       "Answer below, or `quit` to end it.")
        self.show(replies)

    async def handle_line(self, line: str, typed_for: QuestionCard | None = None) -> None:
        """Run one typed line. `typed_for` is the question on screen when the line was started
        (default: the current one); an answer goes to that question only."""
        text = line.strip()
        if not text:
            return
        lowered = text.lower()
        card = typed_for if typed_for is not None else self.card
        if card is not None and lowered in ANSWER_KEYS:
            action = Action("a", card.session_id, card.question_id, lowered.upper())
            replies = await handle_action(self.engine, self.player, action.encode(), self._new_event_id())
            if (card is not self.card and self.card is not None and replies
                    and isinstance(replies[0], Rejected) and replies[0].reason == "QuestionClosed"):
                replies = [Rejected(f"Not sent: you typed {lowered.upper()} for question {card.progress}, "
                                    f"which closed before you pressed Enter. Question {self.card.progress} is "
                                    "open now.", "QuestionClosed")]
            self.show(replies)
            return
        daily = self.daily
        if card is None and daily is not None and lowered in ANSWER_KEYS:
            action = Action("d", daily.post_id, daily.question_id, lowered.upper())
            self.show(await handle_action(self.engine, self.player, action.encode(), self._new_event_id()))
            return
        if self.card is not None and lowered in SHORT_KEYS:
            text = SHORT_KEYS[lowered]
        self.show(await handle_text(self.engine, self.player, text, is_admin=True))

    async def run(self, *, first_command: str | None = None, exit_when_finished: bool = False) -> int:
        """The read-eval-print loop. Returns the process exit code."""
        if first_command:
            await self.handle_line(first_command)
        while not (exit_when_finished and self.finished.is_set()):
            self.typing_for = self.card
            try:
                line = await self.input.read()
            except Interrupted:
                self.write(self.interrupted_text())
                continue
            if line is None:
                self.write("\n" + (BYE_OPEN if self.card is not None else BYE))
                return 0
            if line.strip().lower() == "exit":
                if self.card is not None:
                    self.write(BYE_OPEN)
                return 0
            await self.handle_line(line, self.typing_for)
        return 0

    def interrupted_text(self) -> str:
        if self.card is not None:
            return (f"(Ctrl-C: line cleared. Question {self.card.progress} is still open: A-D to answer, "
                    "s to skip, q to quit the quiz.)")
        return "(Ctrl-C: line cleared. Type `exit` or press Ctrl-D to leave.)"
