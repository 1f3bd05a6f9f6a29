"""Slack ack: 200 (and 2,000) signed slash commands and button clicks at once, over the real HTTP server.

The server is what `mldebt run` starts in HTTP mode: `build_app` (the bolt AsyncApp with the
adapter's listeners, request signatures checked) behind `build_web_app` + `serve_http` on
127.0.0.1 (random port), on the real engine and SqliteStore, with its Web API client and every
response_url pointed at the loopback fake Slack of the tests. Each run: 100 players open a
challenge first (not timed), then the burst: 100 `/mldebt challenge` from new players and 100
answer clicks on the questions the first 100 were shown, shuffled, all sent at once from a separate
process (bench/http_burst.py), each on its own connection. The figure is the time from sending a
request to its HTTP 200 (Slack's ack, the 3-second limit). The replies themselves go out afterwards
(the adapter's bounded work queue, adapters/slack/work.py); the run waits for all of them and checks
that every request got its reply. The same at 2,000 (1,000 + 1,000): the slowest ack must stay
under Slack's 3 s.

The reference, in the same run and hit the same way (same 200 signed bodies, same client): a bare
aiohttp handler on the same machine that answers 200 at once, so the ratio is the adapter's cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from adapters.slack.app import QuizApp, build_app
from adapters.slack.web import EVENTS_PATH, build_web_app, make_client, serve_http
from bot.clock import SystemClock
from bot.config import Settings
from bot.engine import QuizEngine
from bot.store import SqliteStore
from tests.adapters.slack.fake_slack import FakeSlack
from tests.adapters.slack.tracker import BackgroundTracker
from tests.adapters.slack.workspace import BOT_TOKEN, SECRET, TEAM, Workspace, letter

from .common import RESULTS, median, percentile, report, verdict
from .engine import bench_bank

TARGET_RATIO_P99 = 1.5  # at 200: p99 within 1.5x the bare aiohttp handler's p99 in the same run
TARGET_MAX_MS = 3000.0  # at 2,000: the slowest ack under Slack's 3 s
ROOT = Path(__file__).resolve().parent.parent


async def _bare(_request: web.Request) -> web.Response:
    return web.Response(status=200)


async def serve_reference() -> tuple[web.AppRunner, int]:
    """The reference: an aiohttp handler that answers 200 at once, served the same way as the bot."""
    app = web.Application()
    app.router.add_post(EVENTS_PATH, _bare)
    return await serve_http(app, "127.0.0.1", 0)


def fire(url: str, requests: list[dict], tmp: Path, warm: str) -> dict:
    """Run one burst from a separate process (blocking: call it in a thread); `warm` takes the warm-up."""
    path = tmp / "burst.json"
    path.write_text(json.dumps(requests))
    out = subprocess.run([sys.executable, "-m", "bench.http_burst", url, str(path), warm], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Dispatches:
    """Wraps the app's `async_dispatch` (bench only) to stamp when each request entered and left bolt."""

    def __init__(self, app: QuizApp) -> None:
        self.marks: list[tuple[float, float]] = []
        real = app.async_dispatch

        async def stamped(req):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return await real(req)
            finally:
                self.marks.append((t0, time.perf_counter()))

        app.async_dispatch = stamped  # type: ignore[method-assign]


def ack_only(app: QuizApp) -> QuizApp:
    """Diagnostic twin of the adapter: the same listeners and middleware, with the lazy work removed,
    so that its figure is the ack path alone (the handler's checks, then bolt's dispatch behind the
    ack), without the replies' work on the same event loop."""
    for listener in app._async_listeners:
        listener.lazy_functions = []
    return app


async def one_run(ws: Workspace, tracker: BackgroundTracker, bare_tracker: BackgroundTracker, urls: dict[str, str],
                  dispatches: Dispatches, tmp: Path, run: int, commands: int, clicks: int) -> dict:
    rng = random.Random(run)
    # players with an open challenge, whose answer clicks are part of the burst
    requests: list[tuple[str, dict, str]] = []
    for i in range(clicks):
        user = ws.user(f"U{run}K{i:04d}", f"clicker{i}", channel="C0QUIZ")
        message = await user.command("challenge")
        assert message is not None, "the challenge was not shown"
        req = user.click_request(message, letter(ws.bank, message, correct=rng.random() < 0.6))
        rid = next(reversed(ws.fake.response_urls))  # the click's response_url, made by click_request
        requests.append(("click", {"body": req.body, "headers": req.headers}, rid))
    for i in range(commands):
        user = ws.user(f"U{run}C{i:04d}", f"newcomer{i}", channel="C0QUIZ")
        req, url = user.command_request("challenge")
        requests.append(("command", {"body": req.body, "headers": req.headers}, url.rsplit("/", 1)[1]))
    rng.shuffle(requests)
    bodies = [r[1] for r in requests]

    reference = await asyncio.to_thread(fire, urls["reference"], bodies, tmp, urls["reference"])
    c0 = time.thread_time()
    bare_ack = await asyncio.to_thread(fire, urls["ack_only"], bodies, tmp, urls["reference"])
    await bare_tracker.idle(within=120)  # its bolt dispatches run behind its acks: done before the next burst
    ack_only_cpu = time.thread_time() - c0
    dispatches.marks.clear()
    c0 = time.thread_time()
    adapter = await asyncio.to_thread(fire, urls["adapter"], bodies, tmp, urls["reference"])
    await tracker.idle(within=120)
    adapter_cpu = time.thread_time() - c0
    replies_done = time.perf_counter()  # same monotonic clock as the burst process (CLOCK_MONOTONIC)

    for name, burst in (("reference", reference), ("ack-only", bare_ack), ("adapter", adapter)):
        bad = [r for r in burst["results"] if (r["status"], r["body"]) != (200, "")]
        assert not bad, f"{name}: {len(bad)} requests not acknowledged with an empty 200: {bad[:3]}"
    unanswered = [kind for kind, _, rid in requests if not ws.fake.response_urls[rid].posts]
    assert not unanswered, f"{len(unanswered)} requests got no reply: {unanswered[:5]}"

    def stats(burst: dict, kinds: tuple[str, ...] = ("command", "click")) -> dict:
        ms = [r["ms"] for r, (kind, _, _) in zip(burst["results"], requests, strict=True) if kind in kinds]
        return {"p50_ms": median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms), "n": len(ms)}

    start = adapter["started"]
    entered = sorted((t0 - start) * 1000 for t0, _ in dispatches.marks)
    inside = [(t1 - t0) * 1000 for t0, t1 in dispatches.marks]
    n = len(requests)
    return {
        "adapter": stats(adapter), "reference": stats(reference), "ack_only": stats(bare_ack),
        "adapter_commands": stats(adapter, ("command",)), "adapter_clicks": stats(adapter, ("click",)),
        "adapter_burst_wall_ms": adapter["wall_ms"], "reference_burst_wall_ms": reference["wall_ms"],
        "all_replies_sent_s": replies_done - start,
        "last_entered_dispatch_ms": entered[-1], "dispatch_p50_ms": median(inside),
        "loop_cpu_per_request_ms": adapter_cpu / n * 1000, "ack_only_loop_cpu_per_request_ms": ack_only_cpu / n * 1000,
    }


async def measure(tmp: Path, runs: int, commands: int, clicks: int) -> tuple[list[dict], str]:
    bank, bank_used = bench_bank(tmp)
    settings = Settings(database=tmp / "slack.sqlite3", slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET,
                        http_host="127.0.0.1", http_port=0)
    store = SqliteStore(settings.database)
    await store.open()
    per_run: list[dict] = []
    async with FakeSlack(team_id=TEAM, scopes="commands,chat:write,users:read") as fake:
        engine = QuizEngine(store, bank, SystemClock())
        app = build_app(settings, engine, client=make_client(BOT_TOKEN, base_url=fake.base_url))
        tracker = BackgroundTracker(app)
        ws = Workspace(fake, app, tracker, bank)
        dispatches = Dispatches(app)
        bare = ack_only(build_app(settings, engine, client=make_client(BOT_TOKEN, base_url=fake.base_url)))
        bare_tracker = BackgroundTracker(bare)
        await Workspace(fake, bare, bare_tracker, bank).user().command("help")  # its auth.test, once
        runners = []
        try:
            urls = {}
            for name, web_app in (("adapter", build_web_app(app)), ("ack_only", build_web_app(bare))):
                runner, port = await serve_http(web_app, "127.0.0.1", 0)
                runners.append(runner)
                urls[name] = f"http://127.0.0.1:{port}{EVENTS_PATH}"
            runner, port = await serve_reference()
            runners.append(runner)
            urls["reference"] = f"http://127.0.0.1:{port}{EVENTS_PATH}"
            for run in range(runs):
                per_run.append(await one_run(ws, tracker, bare_tracker, urls, dispatches, tmp, run, commands, clicks))
        finally:
            for runner in runners:
                await runner.cleanup()
            await store.close()
    return per_run, bank_used


def main(smoke: bool = False, runs: int = 3) -> int:
    sizes = [(10, 10)] if smoke else [(100, 100), (1000, 1000)]
    load_before = os.getloadavg()
    results: dict[int, tuple[list[dict], str]] = {}
    for commands, clicks in sizes:
        with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
            results[commands + clicks] = asyncio.run(measure(Path(tmp), runs, commands, clicks))
    load_after = os.getloadavg()

    def med(per_run: list[dict], *keys: str) -> float:
        values = []
        for r in per_run:
            v = r
            for k in keys:
                v = v[k]
            values.append(v)
        return median(values)

    rows: list[tuple[str, str, str, str]] = []
    out: dict = {"runs": runs, "load_average_before_after": [load_before, load_after]}
    for n, (per_run, bank_used) in results.items():
        p50, p99, slowest = med(per_run, "adapter", "p50_ms"), med(per_run, "adapter", "p99_ms"), \
            med(per_run, "adapter", "max_ms")
        ref50, ref99 = med(per_run, "reference", "p50_ms"), med(per_run, "reference", "p99_ms")
        ratio = p99 / ref99
        if n <= 200:
            target, ok = f"p99 <= {TARGET_RATIO_P99}x reference", ratio <= TARGET_RATIO_P99
        else:
            target, ok = f"slowest < {TARGET_MAX_MS / 1000:.0f} s", slowest < TARGET_MAX_MS
        rows += [
            (f"{n} at once: time to HTTP 200, p50 / p99 / slowest", f"{p50:.1f} / {p99:.1f} / {slowest:.1f} ms",
             target, verdict(ok) if not smoke else "smoke"),
            (f"{n} at once: bare aiohttp reference, p50 / p99", f"{ref50:.1f} / {ref99:.1f} ms", "-", "-"),
            (f"{n} at once: adapter / reference p99", f"{ratio:.2f}x", "-", "-"),
            (f"{n} at once: every reply sent after", f"{med(per_run, 'all_replies_sent_s'):.2f} s", "-", "-"),
            (f"{n} at once: loop CPU per request, ack + reply / ack only",
             f"{med(per_run, 'loop_cpu_per_request_ms'):.2f} / {med(per_run, 'ack_only_loop_cpu_per_request_ms'):.2f} ms",
             "-", "-"),
        ]
        out[str(n)] = {"bank": bank_used, "p50_ms": p50, "p99_ms": p99, "max_ms": slowest,
                       "reference_p50_ms": ref50, "reference_p99_ms": ref99, "ratio_p99": ratio,
                       "all_replies_sent_s": med(per_run, "all_replies_sent_s"),
                       "loop_cpu_per_request_ms": med(per_run, "loop_cpu_per_request_ms"), "per_run": per_run}
    report("slack-ack", rows, out, smoke)
    return 0
