"""Tiny runs of the engine, memory and bank benchmarks, so they cannot rot (seconds, not minutes)."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.common import RESULTS

EXPECTED = {
    "engine": {"bank", "answers_per_s", "p50_ms", "p99_ms", "raw_insert_commit_per_s", "ratio_engine_to_raw",
               "baseline_answers_per_s", "ratio_to_baseline", "alone_p50_ms", "per_answer", "round_trip_us",
               "stores", "per_run"},
    "memory": {"bank", "players", "baseline_mb", "after_mb", "peak_mb", "delta_per_player_kb",
               "one_by_one_delta_per_player_kb", "per_run"},
    "bank": {"questions", "challenge_sets", "warm_cache_s", "cold_cache_s", "load_bank_s", "safe_load_s",
             "ratio_load_to_safe_load", "per_run"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smoke_run_writes_its_results(name: str) -> None:
    out = RESULTS / f"{name}.smoke.json"
    out.unlink(missing_ok=True)
    assert main([name, "--smoke", "--runs", "2"]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == name and data["smoke"] is True
    assert EXPECTED[name] <= data.keys(), EXPECTED[name] - data.keys()
    assert len(data["per_run"]) == 2
    assert data["table"] and all(set(row) == {"figure", "measured", "target", "ok"} for row in data["table"])


def test_open_loop_smoke_run_measures_every_store_from_the_scheduled_arrival() -> None:
    out = RESULTS / "engine-open-loop.smoke.json"
    out.unlink(missing_ok=True)
    assert main(["engine", "--smoke", "--runs", "1", "--open-loop", "200"]) == 0
    data = json.loads(out.read_text())
    assert data["offered_per_s"] == 200 and len(data["per_run"]) == 1
    for figures in data["per_run"][0].values():
        # about 200 Poisson arrivals in the one-second smoke run: each answered or counted as unserved
        assert 120 <= figures["answers"] + figures["no_idle_player"] <= 280 and figures["answers"] >= 60
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
