"""The console adapter in-process, with a FakeClock: time-outs arrive from the scheduler."""

from __future__ import annotations

import asyncio
import io

from adapters.console.app import ConsoleApp, render
from bot.replies import TimeUp
from bot.scheduler import Scheduler


async def test_time_up_is_shown_without_input(engine, clock, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    scheduler = Scheduler(engine, clock)
    scheduler.register("console", app.deliver)
    await app.handle_line("challenge")
    first = app.card
    assert first is not None and first.progress == "1/5"
    clock.advance(first.time_limit)
    delivered = await scheduler.tick()
    assert [type(r) for r in delivered[0].replies][:1] == [TimeUp]
    text = out.getvalue()
    assert "⏰ Time's up! The answer was" in text
    assert app.card is not None and app.card.progress == "2/5"


async def test_scheduler_loop_wakes_at_the_stored_deadline(engine, clock, alice):
    delivered = asyncio.Event()
    seen = []
    scheduler = Scheduler(engine, clock, idle_seconds=3600)

    async def deliver(d):
        seen.append(d)
        delivered.set()

    scheduler.register("console", deliver)
    task = scheduler.start()
    try:
        async with asyncio.timeout(5):
            await scheduler.asleep.wait()
            assert scheduler.sleeping_until == clock.now() + scheduler.idle  # nothing due: idle wait
            replies = await engine.start(alice, "challenge")  # a new deadline wakes the loop
            deadline = replies[1].deadline
            while scheduler.sleeping_until != deadline:
                await scheduler.asleep.wait()
                await asyncio.sleep(0)
            assert seen == []
            clock.advance(replies[1].time_limit)
            await delivered.wait()
        assert len(seen) == 1 and isinstance(seen[0].replies[0], TimeUp)
    finally:
        task.cancel()


def test_unknown_reply_type_is_rendered_loudly():
    from dataclasses import dataclass

    from bot.replies import Reply

    @dataclass(frozen=True)
    class Strange(Reply):
        def text(self) -> str:
            return "hello"

    assert render(Strange()) == "[Strange] hello"


async def test_other_commands_through_the_console(engine, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.handle_line("learn alpha")
    await app.handle_line("practice nosuchtopic")
    await app.handle_line("hint")
    text = out.getvalue()
    assert "How it shows up:" in text
    assert "! Unknown topic 'nosuchtopic'. Topics: alpha, beta." in text
    assert "! You have no quiz in progress." in text


async def test_daily_question_in_the_terminal(engine, clock, alice, bank):
    from datetime import UTC, datetime

    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    scheduler = Scheduler(engine, clock)
    scheduler.register_daily("console", app)
    clock.set(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))
    await app.handle_line("daily set terminal 09:00 UTC")
    clock.set(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    await scheduler.tick()
    assert app.daily is not None and "📅 Daily question · 2026-06-01" in out.getvalue()
    answer = bank.question(app.daily.question_id).answer_text
    letter = next(c.letter for c in app.daily.choices if c.text == answer)
    await app.handle_line(letter.lower())
    assert "✔ Correct!" in out.getvalue()
    await app.handle_line("leaderboard all")
    assert "1. Alice:" in out.getvalue()
    clock.set(datetime(2026, 6, 2, 9, 0, tzinfo=UTC))
    await scheduler.tick()
    assert "1 of 1 got it right (100%)." in out.getvalue()


# -- issue 13: layout and wording ---------------------------------------------------------------

LONG = ("A feature pipeline quietly changes its schema, and the downstream model keeps serving stale "
        "predictions because nothing checks the contract between the two teams that own them.")


def _card(prompt: str = LONG):
    from datetime import UTC, datetime

    from bot.replies import Choice, QuestionCard

    return QuestionCard("s1", "alpha-01", "challenge", 1, 5, "alpha", "intermediate", "conceptual", prompt, None,
                        tuple(Choice(x, f"choice {x}: {LONG}") for x in "ABCD"),
                        datetime(2026, 6, 1, 9, 2, tzinfo=UTC), 120, 2, False, True)


def test_wrapping_keeps_words_whole_at_40_60_and_100_columns():
    card = _card()
    for width in (40, 60, 100):
        text = render(card, width)
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), (width, text)
        assert text.split() == render(card).split()  # same words, same order: only line breaks moved
        # choices hang under their text, not under their letter
        first = next(i for i, line in enumerate(lines) if line.startswith("  A) "))
        assert lines[first + 1].startswith("     ") and not lines[first + 1].startswith("      ")


def test_code_lines_are_not_wrapped():
    from dataclasses import replace

    card = replace(_card("Short?"), code="$ mlctl train --data s3://lake/snapshots/2024-05-01/ --seed 42 --epochs 10")
    assert "    $ mlctl train --data s3://lake/snapshots/2024-05-01/ --seed 42 --epochs 10" in render(card, 40)


async def test_help_lists_exit_and_the_admin_commands_and_fits_40_columns(engine, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out, width=lambda: 40)
    await app.handle_line("help")
    text = out.getvalue()
    assert all(len(line) <= 40 for line in text.splitlines()), text
    lines = text.splitlines()
    assert "  exit" in lines and "  admin status" in lines and "  daily set #channel HH:MM Area/City" in lines
    assert "      leave the terminal (Ctrl-D does" in lines  # one column: the description below


async def test_help_in_two_columns_when_wide(engine, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out, width=lambda: 120)
    await app.handle_line("frobnicate")
    lines = out.getvalue().splitlines()
    assert lines[0] == "Unknown command 'frobnicate'. mldebt teaches technical debt in ML systems. Commands:"
    exit_row = next(line for line in lines if line.lstrip().startswith("exit "))
    assert exit_row.split(None, 1)[1].strip() == "leave the terminal (Ctrl-D does too); an open quiz is kept"
    assert all(len(line) <= 120 for line in lines)


async def test_practice_says_correct_without_zero_points(engine, alice, bank):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.handle_line("practice")
    q = bank.question(app.card.question_id)
    letter = next(c.letter for c in app.card.choices if c.text == q.answer_text)
    await app.handle_line(letter)
    assert "✔ Correct!\n" in out.getvalue() and "+0 points" not in out.getvalue()


async def test_accuracy_counts_first_attempts_and_skips_do_not_make_it_100(engine, alice, bank):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.handle_line("challenge")
    q = bank.question(app.card.question_id)
    right = next(c.letter for c in app.card.choices if c.text == q.answer_text)
    await app.handle_line(next(x for x in "ABCD" if x != right))  # wrong first attempt
    await app.handle_line(right)  # saved at the second: points, but not accuracy
    await app.handle_line("s")
    await app.handle_line("s")
    await app.handle_line("stats")
    text = out.getvalue()
    assert "answered 1 · accuracy 0% (right at the first attempt)" in text
    assert f"By topic: {q.topic} 0/1" in text


async def test_quit_names_the_open_question_quit_not_skipped(engine, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.handle_line("challenge")
    await app.handle_line("q")
    text = out.getvalue()
    assert ": quit\n" in text and "skipped" not in text
    assert app.card is None


async def test_end_of_input_says_saved_only_when_a_quiz_is_open(engine, alice):
    out = io.StringIO()
    assert await ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out).run() == 0
    assert out.getvalue().endswith("mldebt> \nBye.\n")
    out = io.StringIO()
    assert await ConsoleApp(engine, alice, stdin=io.StringIO("challenge\n"), stdout=out).run() == 0
    assert out.getvalue().endswith("\nBye. Your quiz is saved; `resume` picks up where you left off.\n")


async def test_an_answer_typed_for_a_closed_question_is_not_sent_to_the_next(engine, clock, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    scheduler = Scheduler(engine, clock)
    scheduler.register("console", app.deliver)
    await app.handle_line("challenge")
    typed_for = app.card
    clock.advance(typed_for.time_limit)
    await scheduler.tick()  # the time-out lands while the player is still typing
    assert app.card.progress == "2/5"
    await app.handle_line("b", typed_for)
    assert ("! Not sent: you typed B for question 1/5, which closed before you pressed Enter. "
            "Question 2/5 is open now.") in out.getvalue()
    assert (await engine.resume(alice))[0].attempts_left == 2  # nothing reached question 2


async def test_start_names_an_open_quiz_and_shows_it(engine, alice):
    await engine.start(alice, "challenge")
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.welcome_back()
    text = out.getvalue()
    assert text.startswith("Welcome back: your mastery challenge is still open. Answer below, or `quit` to end it.")
    assert "── 1/5 ·" in text and app.card is not None


async def test_daily_post_in_the_terminal_has_no_chat_markup(engine, clock, alice):
    from datetime import UTC, datetime

    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    scheduler = Scheduler(engine, clock)
    scheduler.register_daily("console", app)
    clock.set(datetime(2026, 6, 1, 8, 30, tzinfo=UTC))
    await app.handle_line("daily set terminal 08:00 UTC")
    assert "  #terminal: every day at 08:00 UTC; today's question is being posted now" in out.getvalue()
    await scheduler.tick()
    await app.handle_line("daily status")
    await app.handle_line("daily now")
    text = out.getvalue()
    assert "<#" not in text and "next 2026-06-01" not in text
    assert "  #terminal: every day at 08:00 UTC, next 2026-06-02 08:00 UTC" in text
    assert "! Today's question is already posted in #terminal; one per day." in text
    assert [line[:5] for line in text.splitlines() if line[2:4] in ("A)", "B)", "C)", "D)")] == \
        ["  A) ", "  B) ", "  C) ", "  D) "]


async def test_on_a_terminal_log_lines_go_above_the_prompt_too(engine, alice):
    import logging
    import sys

    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from adapters.console.tty import TtyInput

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig sets it up at start-up
    real = handler.stream
    root.addHandler(handler)
    try:
        with create_pipe_input() as pipe:
            tty = TtyInput(ConsoleApp(engine, alice), InMemoryHistory(), input=pipe, output=DummyOutput())
            with tty.attached():
                assert sys.stderr is not real and handler.stream is sys.stderr  # the proxy above the prompt
            assert handler.stream is real
    finally:
        root.removeHandler(handler)
