"""Shared helpers: timing statistics, the results table and the JSON file each benchmark writes."""

from __future__ import annotations

import asyncio
import json
import platform
import random
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def verdict(met: bool) -> str:
    """The table's `ok` column for a figure that has a target."""
    return "yes" if met else "MISS"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def per_run_figures(per_run: list[dict]) -> tuple:
    """`med(kind, key)` and `worst(kind, key)` over runs that each map a scenario kind to its figures."""

    def med(kind: str, key: str) -> float:
        return median([r[kind][key] for r in per_run])

    def worst(kind: str, key: str) -> int:
        return max(r[kind][key] for r in per_run)

    return med, worst


async def poisson_arrivals(rate: float, duration: float, rng: random.Random, idle: deque,
                           arrive: Callable[..., Awaitable[None]]) -> tuple[float, int]:
    """Open loop: start `arrive(*idle.popleft(), due)` at Poisson times (mean `rate` a second) for
    `duration` seconds, an arrival that finds no idle player counted as missed; returns (t0, missed)
    once every arrival has finished. Only the tasks in flight are kept: keeping every finished one
    would grow the heap by `rate` tasks a second, and each full garbage collection with it."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()
    missed = 0
    t0 = due = loop.time()
    while True:
        due += rng.expovariate(rate)
        if due > t0 + duration:
            break
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if not idle:
            missed += 1
            continue
        task = asyncio.create_task(arrive(*idle.popleft(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return t0, missed


def report(name: str, rows: list[tuple[str, str, str, str]], data: dict, smoke: bool) -> Path:
    """Print a table (figure, measured, target, verdict) and write bench/results/NAME.json."""
    widths = [max(len(r[i]) for r in rows + [("figure", "measured", "target", "ok")]) for i in range(4)]
    header = ("figure", "measured", "target", "ok")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    out = RESULTS / (f"{name}.smoke.json" if smoke else f"{name}.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "smoke": smoke, "when": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
               "table": [dict(zip(header, r, strict=True)) for r in rows], **data}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
