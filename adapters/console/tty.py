"""The interactive terminal front: prompt_toolkit instead of hand-written ANSI.

It gives line editing and a history file (arrow keys, Ctrl-R, Ctrl-L), a bottom toolbar redrawn
every second with the countdown (so no status line is left behind after a resize), Ctrl-C that
clears the line at once, and output from the scheduler (time-outs, daily posts, logs) printed above
the prompt through patch_stdout. A new or closed question empties the input line, so a letter typed
for one question is never submitted to the next.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from .app import ANSWER_KEYS, PROMPT_QUESTION, SHORT_KEYS, ConsoleApp, Interrupted

SHORT_PROMPT_QUESTION = "Answer (A-D/h/s/q): "
WIDE_PROMPT_MIN = len(PROMPT_QUESTION) + 20  # below this, the long prompt leaves too little room to type


def data_dir() -> Path:
    """Where the terminal keeps its history: $XDG_DATA_HOME/mldebt, else ~/.local/share/mldebt."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mldebt"


class CommandHistory(FileHistory):
    """Commands only: answer letters and h/s/q would bury them."""

    def append_string(self, string: str) -> None:
        if string.strip().lower() not in ANSWER_KEYS | SHORT_KEYS.keys():
            super().append_string(string)


def open_history() -> History:
    """The history file, or one kept in memory when the data folder cannot be written."""
    folder = data_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "history"
        path.touch(exist_ok=True)
        return CommandHistory(str(path))
    except OSError:
        return InMemoryHistory()


class TtyInput:
    """prompt_toolkit's prompt as the console app's Input."""

    def __init__(self, app: ConsoleApp, history: History | None = None, *, input: Input | None = None,
                 output: Output | None = None) -> None:
        self.app = app
        self.session: PromptSession[str] = PromptSession(
            message=self._message, history=history or open_history(), bottom_toolbar=self._toolbar,
            refresh_interval=1.0, input=input, output=output)

    def width(self) -> int:
        # one column short of the edge: terminals disagree on what a character in the last column does
        return max(20, self.session.output.get_size().columns - 1)

    def _message(self) -> str:
        if self.app.card is None:
            return self.app.prompt_text()
        return PROMPT_QUESTION if self.width() >= WIDE_PROMPT_MIN else SHORT_PROMPT_QUESTION

    def _toolbar(self) -> str:
        card = self.app.card
        if card is None:
            text = " help · exit" if self.app.daily is None else " a-d answers the daily question · help · exit"
        elif card.deadline is None:
            text = f" question {card.progress} · untimed · h hint · s skip · q quit"
        else:
            left = max(0, int((card.deadline - self.app.engine.clock.now()).total_seconds()))
            text = f" ⏳ {left // 60}:{left % 60:02d} left · question {card.progress} · h hint · s skip"
        return text[: self.width()]

    async def read(self) -> str | None:
        try:
            return await self.session.prompt_async()
        except KeyboardInterrupt:
            raise Interrupted() from None
        except EOFError:
            return None

    def new_question(self) -> None:
        self.session.default_buffer.reset()
        self.app.typing_for = self.app.card  # whatever is typed from now on is for the question now shown
        if self.session.app.is_running:
            self.session.app.invalidate()

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Route the app's output, and log lines, above the prompt for as long as the terminal is in use."""
        originals = (sys.stdout, sys.stderr)
        with patch_stdout(raw=True):
            # logging's handlers kept the real streams when they were set up: point them at the proxy
            moved = [(h, h.stream) for h in logging.getLogger().handlers
                     if isinstance(h, logging.StreamHandler) and h.stream in originals]
            for handler, _ in moved:
                handler.setStream(sys.stderr)
            try:
                yield
            finally:
                for handler, stream in moved:
                    handler.setStream(stream)


def attach_terminal(app: ConsoleApp) -> TtyInput:
    """Make `app` interactive: prompt_toolkit input, output wrapped to the terminal's width."""
    tty = TtyInput(app)
    app.input = tty
    app.set_width(tty.width)
    return tty
