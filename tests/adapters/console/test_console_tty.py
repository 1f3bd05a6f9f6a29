"""The real `mldebt` in a pseudo-terminal, read back through a terminal emulator.

pexpect gives the process a real pty (so the prompt_toolkit front is used, as for a person), and
pyte plays the terminal: it answers the cursor-position requests and keeps the screen, so the tests
assert on what a person would see (wrapped lines, the one status toolbar, an emptied input line),
not on escape sequences. Time-outs come from small time limits (MLDEBT_TIME_LIMIT_SCALE); every
wait is bounded.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pexpect
import pyte
import pytest
import yaml

from tests.adapters.console.test_console_cli import mldebt_command
from tests.fakes.bank import write_bank

ROWS = 200  # tall enough that nothing scrolls away: the whole session stays on the screen
WAIT = 15.0  # the longest any single wait may take before the test fails
PROMPT_WORDS = ("When the upstream team silently changes the meaning of a feature that your model consumes, "
                "which of these practices catches the change before the model starts serving worse predictions?")


@pytest.fixture
def long_bank(tmp_path: Path) -> Path:
    """The fake bank with long prompts, so every question needs wrapping at 100 columns."""
    root = write_bank(tmp_path / "bank")
    for f in (root / "topics").glob("*.yaml"):
        doc = yaml.safe_load(f.read_text())
        for q in doc["questions"]:
            q["prompt"] = f"{PROMPT_WORDS} ({q['id']})"
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


class Terminal:
    def __init__(self, tmp_path: Path, cols: int, args: list[str], **env: str) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "MLDEBT_"))}
        full_env.update(TERM="xterm", XDG_DATA_HOME=str(tmp_path / "data"),
                        MLDEBT_DATABASE=str(tmp_path / "tty.sqlite3"), MLDEBT_CACHE_DIR=str(tmp_path / "cache"), **env)
        self.screen = pyte.Screen(cols, ROWS)
        self.stream = pyte.Stream(self.screen)
        command = mldebt_command()
        self.child = pexpect.spawn(command[0], command[1:] + args, env=full_env, cwd=str(tmp_path),
                                   dimensions=(ROWS, cols), encoding="utf-8", timeout=WAIT)
        self.screen.write_process_input = self.child.send  # the terminal's replies (cursor position)
        self.raw = ""

    def pump(self, wait: float = 0.05) -> None:
        try:
            chunk = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            raise AssertionError(f"mldebt exited; screen:\n{self.text()}") from None
        self.raw += chunk
        self.stream.feed(chunk)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def flat(self) -> str:
        """The screen's words with every run of spaces and line breaks as one space."""
        return " ".join(self.text().split())

    def wait_for(self, pattern: str, limit: float = WAIT, *, lines: bool = False) -> re.Match:
        """Pump output until `pattern` (a regex) shows on the screen; fail after `limit` seconds.
        It is matched against the words as a person reads them (`flat`), or line by line (`lines`)."""
        end = time.monotonic() + limit
        while True:
            m = re.search(pattern, self.text() if lines else self.flat(), re.MULTILINE)
            if m:
                return m
            if time.monotonic() > end:
                raise AssertionError(f"{pattern!r} not on screen after {limit} s:\n{self.text()}")
            self.pump()

    def settle(self, quiet: float = 0.3) -> None:
        """Read until the program has been quiet for `quiet` seconds (bounded by WAIT)."""
        end = time.monotonic() + WAIT
        last = len(self.raw)
        while time.monotonic() < end:
            self.pump(quiet)
            if len(self.raw) == last:
                return
            last = len(self.raw)

    def input_line(self) -> str:
        """The line the cursor is on: the prompt and what is typed after it."""
        return self.screen.display[self.screen.cursor.y].rstrip()

    def toolbar(self) -> list[str]:
        return [line.strip() for line in self.screen.display if "⏳" in line or "untimed ·" in line]

    def close(self) -> int:
        end = time.monotonic() + WAIT
        while self.child.isalive() and time.monotonic() < end:
            try:
                self.pump(0.1)
            except AssertionError:
                break
        if self.child.isalive():
            self.child.terminate(force=True)
            raise AssertionError(f"mldebt did not exit; screen:\n{self.text()}")
        self.child.close()
        return self.child.exitstatus


def question_block(text: str) -> list[str]:
    """The screen lines from the newest question's [id] line down to its time-limit line."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if re.match(r"\[[a-z]+-\d\d\] ", line))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(("Time limit", "Untimed")))
    return lines[start:end + 1]


def check_question_wrapped(term: Terminal, cols: int) -> None:
    block = question_block(term.text())
    assert all(len(line) < cols for line in block), block
    qid = block[0].split()[0]
    prompt_lines = block[: next(i for i, line in enumerate(block) if line.startswith("  A) "))]
    # every word whole and in order: the line breaks fell between words
    assert " ".join(prompt_lines).split() == [qid, *f"{PROMPT_WORDS} ({qid[1:-1]})".split()]
    assert len(prompt_lines) > 1
    bar = term.toolbar()
    assert len(bar) == 1 and len(bar[0]) < cols, term.text()  # one status line, never a pile of stale ones


def test_wrapping_at_40_60_and_100_columns_a_live_countdown_and_the_restart_notice(tmp_path, long_bank):
    env = {"MLDEBT_QUESTION_BANK": str(long_bank), "MLDEBT_TIME_LIMIT_SCALE": "0.5"}
    term = Terminal(tmp_path, 40, ["run"], **env)
    try:
        term.wait_for(r"mldebt>")
        term.child.send("challenge\r")
        term.wait_for(r"⏳ \d:\d\d left · question 1/5")
        check_question_wrapped(term, 40)
        qid = question_block(term.text())[0].split()[0]
        term.wait_for(r"⏳ 0:(5[0-8]) left", lines=True)  # it ticks down once a second, in place
        for cols in (60, 100):  # the window grows: new output wraps to the new width
            term.screen.resize(ROWS, cols)
            term.child.setwinsize(ROWS, cols)
            term.settle(0.2)
            term.child.send("resume\r")
            term.wait_for(rf"^{re.escape(qid)} .{{{cols - 20},}}$", lines=True)
            term.wait_for(r"⏳ \d:\d\d left · question 1/5")
            check_question_wrapped(term, cols)
        term.child.sendcontrol("d")
        assert term.close() == 0
        assert "Bye. Your quiz is saved; `resume` picks up where you left off." in term.flat()
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    term = Terminal(tmp_path, 60, ["run"], **env)  # a restart names the open quiz and shows it
    try:
        term.wait_for(r"question 1/5")
        text = term.flat()
        assert "Welcome back: your mastery challenge is still open. Answer below, or `quit` to end it." in text
        assert f"{qid} " in text
        term.child.send("exit\r")
        assert term.close() == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_a_letter_typed_before_a_time_out_is_not_sent_to_the_next_question(tmp_path, long_bank):
    term = Terminal(tmp_path, 60, ["play", "challenge"], MLDEBT_QUESTION_BANK=str(long_bank),
                    MLDEBT_TIME_LIMIT_SCALE="0.025")  # 3 s a question
    try:
        term.wait_for(r"question 1/5")
        term.child.send("b")  # typed, not sent
        term.wait_for(r"Answer \(A-D/h/s/q\): b")
        term.wait_for(r"⏰ Time's up!")
        term.wait_for(r"question 2/5")
        term.settle(0.1)
        after = term.flat().split("Time's up!", 1)[1]
        assert re.search(r"\[[a-z]+-\d\d\] .* Time limit 3 s: answer by \d\d:\d\d:\d\d UTC\. Attempts left: 2\.", after)
        assert term.input_line() == "Answer (A-D/h/s/q):"  # the b is gone
        assert not re.search(r"Not quite|Correct!|Wrong:|Not sent", term.text())  # nothing was sent
        term.child.send("a\r")  # typed after question 2 appeared: it is question 2's answer
        term.wait_for(r"✔ Correct!|✘ Not quite|Not sent|Time's up!.*Time's up!")
        assert "Not sent" not in term.text()
        term.child.sendcontrol("d")
        assert term.close() == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_ctrl_c_clears_the_line_at_the_prompt_and_during_a_question(tmp_path, long_bank):
    term = Terminal(tmp_path, 60, ["run"], MLDEBT_QUESTION_BANK=str(long_bank))
    try:
        term.wait_for(r"mldebt>")
        term.child.send("chall")
        term.wait_for(r"mldebt> chall")
        term.child.sendcontrol("c")
        term.wait_for(r"\(Ctrl-C: line cleared\. Type `exit` or press Ctrl-D to leave\.\) mldebt>")
        term.child.send("practice\r")  # the cleared "chall" is not in front of it
        term.wait_for(r"question 1/5 · untimed")
        term.child.send("c")
        term.child.sendcontrol("c")
        term.wait_for(r"\(Ctrl-C: line cleared\. Question 1/5 is still open:")
        assert not re.search(r"Not quite|Correct!|Wrong:", term.text())
        term.child.send("exit\r")
        assert term.close() == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)


def test_history_with_the_arrow_keys_keeps_commands_not_answers(tmp_path, long_bank):
    term = Terminal(tmp_path, 100, ["run"], MLDEBT_QUESTION_BANK=str(long_bank))
    try:
        term.wait_for(r"mldebt>")
        term.child.send("topics\r")
        term.wait_for(r"Topics:")
        term.child.send("learn beta\r")
        term.wait_for(r"What beta is\.")
        term.child.send("\x1b[A\x1b[A")  # up, up
        term.wait_for(r"mldebt> topics$", lines=True)
        term.child.send("\x1b[B")  # down
        term.wait_for(r"mldebt> learn beta$", lines=True)
        term.child.send("\x1b[D\x1b[D\x1b[D\x1bDx\x1b[F\r".replace("\x1bD", "\x1b[D"))  # left x4, x, End
        term.wait_for(r"! Unknown topic 'xbeta'\.")
        term.child.sendcontrol("l")  # clears the screen: the prompt is redrawn at the top
        term.wait_for(r"\Amldebt>", lines=True)
        term.child.send("daily set terminal 00:00 UTC\r")  # today's question is posted at once
        term.wait_for(r"📅 Daily question")
        term.settle(0.3)
        lines = [line for line in term.text().splitlines() if line.strip()]
        assert lines[-2] == "mldebt>" and "daily question" in lines[-1]  # the post landed above the prompt
        assert "<#" not in term.text() and "#terminal: every day at 00:00 UTC" in term.text()
        term.child.send("practice\r")
        term.wait_for(r"question 1/5 · untimed")
        term.child.send("a\r")
        term.settle(0.2)
        term.child.send("exit\r")
        assert term.close() == 0
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    history = (tmp_path / "data" / "mldebt" / "history").read_text()
    entries = [line[1:] for line in history.splitlines() if line.startswith("+")]
    assert entries == ["topics", "learn beta", "learn xbeta", "daily set terminal 00:00 UTC", "practice", "exit"]
