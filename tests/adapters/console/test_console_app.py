"""The console adapter in-process, with a FakeClock: time-outs arrive from the scheduler."""

from __future__ import annotations

import asyncio
import io

from adapters.console.app import ConsoleApp, render
from bot.replies import TimeUp
from bot.scheduler import Scheduler


async def test_time_up_is_shown_without_input(engine, clock, alice):
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out, live_countdown=False)
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
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out, live_countdown=False)
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
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out, live_countdown=False)
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
