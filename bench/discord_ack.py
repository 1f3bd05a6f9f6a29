"""Discord ack: 200 and 2,000 button clicks at once through SimCord; time from each click to its acknowledgement.

The bot is the real one (`build_bot` on the real engine and SqliteStore, FakeClock, so nothing times
out), run by SimCord 3.2.1 in-process. Each run: N members each open a challenge
(`/mldebt challenge`, not timed), then all N click an answer on their own question (right or wrong
at random) in one burst without settling (bench/simcord_timing.py, SimCord internals), in two ways:
back to back (each emission is parsed by discord.py at once, so no callback runs until the whole
burst is parsed and the figure is mostly SimCord's and discord.py's cost per click), and one per
turn of the event loop (the bot's callbacks, and its work behind the acks, run between clicks, as
when a gateway reader awaits each event). The figure, per click, is from its emission to the bot's first interaction
callback (the acknowledgement Discord wants within 3 s), both stamped with `time.perf_counter()`:
SimCord's own clock is virtual. The burst is over when every click has its acknowledgement (not
when SimCord settles: see simcord_timing.py); the follow-ups (edited cards, next questions) are
then settled, untimed. The adapter acknowledges every click first (a deferred update, type 6) and
only then calls the engine and edits the card.

The reference, in the same run and the same harness: a trivial discord.py bot whose button (the same
DynamicItem mechanism) only calls `interaction.response.defer()`; N members click it at once.
Targets (issue 11): p99 <= 1.2x the reference's p99 in the same run, at 200 and at 2,000 clicks,
and the slowest acknowledgement under 3 s at 2,000.

SimCord's REST is synchronous and has no network or rate limits, so these figures are the bot's and
the simulator's CPU on one event loop: the queue N clicks form.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import simcord
from discord.ext import commands

from adapters.discord.client import build_bot
from bot.bank import Bank
from bot.clock import FakeClock
from bot.config import Settings
from bot.engine import QuizEngine
from bot.store import SqliteStore
from tests.adapters.discord.helpers import custom_id, right, wrong

from .common import RESULTS, median, percentile, report, verdict
from .engine import bench_bank
from .simcord_timing import emit_click, initial_responses, install_request_stamps

TARGET_RATIO = 1.2  # adapter p99 / reference p99, same run
TARGET_MAX_S = 3.0  # the slowest acknowledgement at 2,000 clicks
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class DeferButton(discord.ui.DynamicItem[discord.ui.Button], template=r"ref:(?P<n>[0-9]+)"):
    """The reference's only button: acknowledge, nothing else."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(custom_id=f"ref:{n}", label="Go"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: Any, match: Any, /) -> DeferButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer()


class ReferenceBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(DeferButton)


def _limit(n: int) -> float:
    """Real seconds SimCord may take to settle n clicks' work (2,000 follow-ups on a busy machine)."""
    return max(120.0, n * 0.5)


def _members(env: simcord.Env, n: int) -> tuple[Any, list[Any]]:
    guild = env.create_guild("Bench")
    channel = guild.create_text_channel("quiz")
    return channel, [guild.add_member(env.create_user(f"p{i}", global_name=f"Player {i}")) for i in range(n)]


async def _burst(env: simcord.Env, clicks: list[tuple[Any, Any, str]], per_turn: bool) -> dict:
    gc.collect()  # both bots: the set-up's garbage is not collected in the middle of the timed burst,
    # and the set-up's live objects are not walked by the collections the burst triggers: SimCord
    # keeps everything it stored (the process tracked 418,000 objects after the adapter's 2,000
    # challenges, 262,000 after the reference's run), and measured without this, collections took
    # 523 of the 995 ms of the adapter's 2,000-click emission (225 of 861 ms for the reference): a
    # cost of the simulator's memory, paid before any callback of either bot runs
    gc.freeze()
    try:
        log = install_request_stamps(env, expect=len(clicks))
        emitted = []
        for member, message, cid in clicks:
            emitted.append(emit_click(env, member, message, cid))
            if per_turn:  # the bot's callbacks (and its work behind the acks) run between clicks
                await asyncio.sleep(0)
        emit_ms = (emitted[-1][1] - emitted[0][1]) * 1000
        await asyncio.wait_for(log.answered.wait(), _limit(len(clicks)))
    finally:
        gc.unfreeze()
    t0 = time.perf_counter()
    await env.settle(timeout=_limit(len(clicks)))  # the follow-ups (next question cards) and anything else left
    settle_s = time.perf_counter() - t0
    firsts = initial_responses(log)
    latencies, kinds = [], Counter()
    for result, stamp in emitted:
        assert result.acknowledged, "a click was not acknowledged"
        at, kind = firsts[result._interaction.id]
        latencies.append((at - stamp) * 1000)
        kinds[kind] += 1
    return {"p50_ms": median(latencies), "p99_ms": percentile(latencies, 99), "max_ms": max(latencies),
            "min_ms": min(latencies), "emit_all_ms": emit_ms, "settle_s": settle_s,
            "callback_types": dict(sorted(kinds.items())), "n": len(latencies)}


async def adapter_run(tmp: Path, bank: Bank, n: int, seed: int, per_turn: bool = False) -> dict:
    db = tmp / f"discord-{n}-{seed}{'-turns' if per_turn else ''}.sqlite3"  # a fresh database: the bot syncs its commands
    store = SqliteStore(db)
    await store.open()
    engine = QuizEngine(store, bank, FakeClock(NOW), rng=random.Random(seed))
    rng = random.Random(seed)
    answers_at: list[tuple[float, float]] = []  # (start, end) of every engine.answer in the burst
    answer = engine.answer
    all_answered = asyncio.Event()

    async def timed_answer(*args: Any, **kwargs: Any) -> Any:  # bench-only instrumentation
        t0 = time.perf_counter()
        try:
            return await answer(*args, **kwargs)
        finally:
            answers_at.append((t0, time.perf_counter()))
            if len(answers_at) == n:
                all_answered.set()
    try:
        async with simcord.run(build_bot(Settings(database=db), engine), settle_timeout=_limit(n)) as env:
            channel, members = _members(env, n)
            t0 = time.perf_counter()
            clicks = []
            for member in members:
                message = (await member.slash(channel, "mldebt challenge")).response
                letter = right(bank, message) if rng.random() < 0.6 else wrong(bank, message)
                clicks.append((member, message, custom_id(message, letter)))
            setup_s = time.perf_counter() - t0
            engine.answer = timed_answer  # type: ignore[method-assign]
            result = await _burst(env, clicks, per_turn)
            # engine work SimCord counted as parked (waiting on the database thread) finishes here
            await asyncio.wait_for(all_answered.wait(), _limit(n))
        async with store.transaction() as tx:
            answers = await tx._all("SELECT COUNT(*) FROM answers")  # type: ignore[attr-defined]
    finally:
        await store.close()
    assert answers[0][0] == n, f"{answers[0][0]} answers stored for {n} clicks"
    span = max(e for _, e in answers_at) - min(s for s, _ in answers_at)
    inside = [e - s for s, e in answers_at]
    return {**result, "setup_s": setup_s, "engine_span_ms": span * 1000, "engine_per_answer_ms": span / n * 1000,
            "engine_call_p50_ms": median(inside) * 1000, "engine_call_max_ms": max(inside) * 1000}


async def reference_run(n: int, per_turn: bool = False) -> dict:
    async with simcord.run(ReferenceBot(), settle_timeout=_limit(n)) as env:
        channel, members = _members(env, n)
        view = discord.ui.View(timeout=None)
        view.add_item(DeferButton(1))
        message = await env.bot.get_channel(channel.id).send("Go", view=view)
        return await _burst(env, [(m, message, "ref:1") for m in members], per_turn)


def main(smoke: bool = False, runs: int = 3) -> int:
    sizes = (10, 20) if smoke else (200, 2000)
    # the clicks emitted back to back (the ack waits for the whole burst to be parsed), and one per
    # turn of the event loop (the bot's callbacks and its work run between clicks)
    cases = {**{str(n): (n, False) for n in sizes}, **{f"{n} per turn": (n, True) for n in sizes}}
    load_before = os.getloadavg()
    per_run: list[dict] = []
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        tmp = Path(tmp_name)
        bank, bank_used = bench_bank(tmp)
        asyncio.run(reference_run(5))  # warm-up, not kept: first-use costs of both bots and of SimCord
        asyncio.run(adapter_run(tmp, bank, 5, 99))
        for run in range(runs):
            per_run.append({case: {"reference": asyncio.run(reference_run(n, per_turn)),
                                   "adapter": asyncio.run(adapter_run(tmp, bank, n, run, per_turn))}
                            for case, (n, per_turn) in cases.items()})
    load_after = os.getloadavg()

    def med(case: str, kind: str, key: str) -> float:
        return median([r[case][kind][key] for r in per_run])

    rows = []
    figures: dict[str, dict] = {}
    for case, (n, per_turn) in cases.items():
        label = f"{n} clicks" + (", one per loop turn" if per_turn else "")
        p50, p99 = med(case, "adapter", "p50_ms"), med(case, "adapter", "p99_ms")
        slowest = med(case, "adapter", "max_ms")
        ref50, ref99 = med(case, "reference", "p50_ms"), med(case, "reference", "p99_ms")
        ratio = median([r[case]["adapter"]["p99_ms"] / r[case]["reference"]["p99_ms"] for r in per_run])
        figures[case] = {"p50_ms": p50, "p99_ms": p99, "max_ms": slowest, "reference_p50_ms": ref50,
                         "reference_p99_ms": ref99, "reference_max_ms": med(case, "reference", "max_ms"),
                         "ratio_p99": ratio, "engine_per_answer_ms": med(case, "adapter", "engine_per_answer_ms"),
                         "emit_all_ms": med(case, "adapter", "emit_all_ms"),
                         "reference_emit_all_ms": med(case, "reference", "emit_all_ms"),
                         "settle_s": med(case, "adapter", "settle_s")}
        rows += [
            (f"{label}: click -> ack, p50 / p99 (reference: defer() only)",
             f"{p50:.1f} / {p99:.1f} ms ({ref50:.1f} / {ref99:.1f} ms)", "-", "-"),
            (f"{label}: p99 / reference p99, median of the runs' ratios", f"{ratio:.2f}x",
             f"<= {TARGET_RATIO}x", verdict(ratio <= TARGET_RATIO) if not smoke else "smoke"),
        ]
        if n == sizes[-1]:
            rows.append((f"{label}: slowest ack (reference)",
                         f"{slowest:.0f} ms ({figures[case]['reference_max_ms']:.0f} ms)",
                         f"< {TARGET_MAX_S * 1000:.0f} ms",
                         verdict(slowest < TARGET_MAX_S * 1000) if not smoke else "smoke"))
        rows.append((f"{label}: emitting them all (reference)",
                     f"{figures[case]['emit_all_ms']:.0f} ms ({figures[case]['reference_emit_all_ms']:.0f} ms)",
                     "-", "-"))
        rows.append((f"{label}: engine.answer for all, per answer; then follow-ups settled in",
                     f"{figures[case]['engine_per_answer_ms']:.2f} ms; {figures[case]['settle_s']:.2f} s",
                     "-", "-"))
    first = figures[str(sizes[0])]
    report("discord-ack", rows, {
        "bank": bank_used, "clicks": list(cases), "runs": runs, "load_average_before_after": [load_before, load_after],
        "p50_ms": first["p50_ms"], "p99_ms": first["p99_ms"], "reference_p50_ms": first["reference_p50_ms"],
        "reference_p99_ms": first["reference_p99_ms"], "ratio_p99": first["ratio_p99"],
        "engine_per_answer_ms": first["engine_per_answer_ms"], "by_clicks": figures, "per_run": per_run,
    }, smoke)
    return 0
