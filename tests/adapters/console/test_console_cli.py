"""The real `mldebt` command in a subprocess, played through stdin like a person at a terminal."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from bot.bank import load_bank
from tests.fakes.bank import write_bank

PROMPT = "Your answer (A-D, h = hint, s = skip, q = quit): "
CARD = re.compile(r"\[(?P<qid>[a-z0-9-]+)\] .*?\n(?P<choices>(?:  [A-D]\) .*\n)+)", re.MULTILINE)


def mldebt_command() -> list[str]:
    """The `mldebt` installed beside this interpreter (the one of the code under test), not whichever
    `mldebt` comes first on PATH, which may belong to another checkout."""
    exe = Path(sys.executable).parent / "mldebt"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "adapters.main"]


class Terminal:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen = ""

    async def until(self, marker: str, limit: float = 20) -> str:
        """Read output until `marker` appears after what was already consumed; return the new text."""
        start = len(self.seen)
        async with asyncio.timeout(limit):
            while marker not in self.seen[start:]:
                chunk = await self.proc.stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"mldebt exited before {marker!r}; output:\n{self.seen}")
                self.seen += chunk.decode()
        return self.seen[start:]

    async def type(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()


async def start(tmp_path: Path, *args: str, **env: str) -> Terminal:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "MLDEBT_"))}
    full_env.update({"MLDEBT_DATABASE": str(tmp_path / "console.sqlite3"), "MLDEBT_CACHE_DIR": str(tmp_path / "cache"),
                     **env})
    proc = await asyncio.create_subprocess_exec(
        *mldebt_command(), *args, cwd=tmp_path, env=full_env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return Terminal(proc)


def correct_letter(bank, block: str) -> tuple[str, str]:
    m = list(CARD.finditer(block))[-1]
    answer = bank.question(m["qid"]).answer_text
    for line in m["choices"].splitlines():
        letter, text = line.strip()[0], line.strip()[3:]
        if text == answer:
            return m["qid"], letter
    raise AssertionError(f"answer not shown in {block}")


@pytest.fixture
def fixture_bank(tmp_path):
    root = write_bank(tmp_path / "bank")
    return root, load_bank(root)


async def test_play_challenge_to_the_badge(tmp_path, fixture_bank):
    root, bank = fixture_bank
    term = await start(tmp_path, "play", "challenge", MLDEBT_QUESTION_BANK=str(root), MLDEBT_TIME_LIMIT_SCALE="0.25")
    try:
        block = await term.until(PROMPT)
        assert "Mastery challenge" in block and "── 1/5 ·" in block
        assert "Time limit 30 s" in block  # 120 s scaled by configuration
        # a wrong answer first, then the hint, then the right one
        qid, right = correct_letter(bank, block)
        wrong = next(x for x in "ABCD" if x != right)
        await term.type(wrong.lower())
        assert f"✘ Not quite: {wrong} is wrong. 1 attempt left." in await term.until(PROMPT)
        await term.type("h")
        assert f"Hint: {bank.question(qid).hint}" in await term.until(PROMPT)
        await term.type(right)
        block = await term.until(PROMPT)
        assert "✔ Correct!" in block and "── 2/5 ·" in block
        for n in range(3, 6):
            _, right = correct_letter(bank, block)
            await term.type(right)
            block = await term.until(PROMPT)
            assert f"── {n}/5 ·" in block
            if n == 5:
                assert "Time limit 45 s" in block  # the expert item: 180 s scaled
        _, right = correct_letter(bank, block)
        await term.type(right)
        assert await term.proc.wait() == 0
        rest = (await term.proc.stdout.read()).decode()
        final = term.seen + rest
        assert "Mastery challenge finished: 5/5 correct" in final
        assert "🏅 Badge earned: Technical Debt Mastery!" in final
    finally:
        if term.proc.returncode is None:
            term.proc.kill()
            await term.proc.wait()


async def test_run_without_tokens_starts_the_terminal(tmp_path, fixture_bank):
    root, _ = fixture_bank
    term = await start(tmp_path, "run", MLDEBT_QUESTION_BANK=str(root))
    try:
        first = await term.until("mldebt> ")
        assert "No Slack or Discord token configured: playing in the terminal." in first
        await term.type("frobnicate")
        out = await term.until("mldebt> ")
        assert "Unknown command 'frobnicate'." in out and "challenge" in out
        await term.type("exit")
        assert await term.proc.wait() == 0
    finally:
        if term.proc.returncode is None:
            term.proc.kill()


async def test_bad_setting_is_one_clear_line(tmp_path, fixture_bank):
    root, _ = fixture_bank
    term = await start(tmp_path, "run", MLDEBT_QUESTION_BANK=str(root), MLDEBT_TIMEZONE="Nowhere/Land")
    out, _ = await term.proc.communicate()
    assert term.proc.returncode == 2
    assert out.decode().strip() == ("mldebt: invalid setting MLDEBT_TIMEZONE: unknown IANA time zone "
                                    "'Nowhere/Land' (e.g. Europe/Berlin)")


async def test_invalid_bank_refuses_to_start(tmp_path):
    bad = tmp_path / "bank"
    bad.mkdir()
    (bad / "x.yaml").write_text("topic: x\n")
    term = await start(tmp_path, "run", MLDEBT_QUESTION_BANK=str(bad))
    out, _ = await term.proc.communicate()
    lines = out.decode().strip().splitlines()
    assert term.proc.returncode == 2
    assert lines[-1] == "mldebt: the question bank has 3 problem(s); the bot will not start"
    assert lines[0].endswith("x.yaml:1: file: concept: missing required field 'concept'")


async def test_bank_check_command(tmp_path, fixture_bank):
    root, _ = fixture_bank
    term = await start(tmp_path, "bank", "check", str(root))
    out, _ = await term.proc.communicate()
    assert term.proc.returncode == 0
    assert out.decode().strip() == "OK: 20 questions in 2 topics, 10 practice problems, 2 challenge sets."


def test_no_standard_input_at_all_ends_cleanly(tmp_path, fixture_bank):
    """As under a CI runner with fd 0 closed: the plain mode, at once at the end of its input."""
    import subprocess

    root, _ = fixture_bank
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "MLDEBT_"))}
    env.update(MLDEBT_DATABASE=str(tmp_path / "q.sqlite3"), MLDEBT_QUESTION_BANK=str(root), MLDEBT_CACHE_DIR="off")
    done = subprocess.run([*mldebt_command(), "run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, preexec_fn=lambda: os.close(0))
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("mldebt> \nBye.\n") and done.stderr == ""
