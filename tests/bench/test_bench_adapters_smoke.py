"""Tiny runs of the Slack ack, Discord ack and fanout benchmarks, so they cannot rot (seconds, not minutes)."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import BENCHMARKS, main
from bench.common import RESULTS

EXPECTED = {
    "slack-ack": {"runs", "20"},
    "discord-ack": {"clicks", "p50_ms", "p99_ms", "reference_p50_ms", "reference_p99_ms", "ratio_p99",
                    "by_clicks", "engine_per_answer_ms", "per_run"},
    "fanout": {"channels", "rate_per_s", "floor_s", "clean_total_s", "clean_ratio", "clean_lost", "clean_duplicated",
               "clean_claim_s", "clean_sending_s", "killed_total_s", "killed_lease_wait_s", "killed_lost",
               "killed_duplicated", "db_mismatched", "rate_bound_sending_s", "rate_bound_429", "per_run"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smoke_run_writes_its_results(name: str) -> None:
    assert name in BENCHMARKS
    out = RESULTS / f"{name}.smoke.json"
    out.unlink(missing_ok=True)
    assert main([name, "--smoke", "--runs", "1"]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == name and data["smoke"] is True
    assert EXPECTED[name] <= data.keys(), EXPECTED[name] - data.keys()
    runs = data["20"]["per_run"] if name == "slack-ack" else data["per_run"]
    assert len(runs) == 1
    assert data["table"] and all(set(row) == {"figure", "measured", "target", "ok"} for row in data["table"])
    if name == "fanout":  # exactly once holds even at smoke size, killed halfway or not
        for scenario in runs[0].values():
            assert (scenario["lost"], scenario["duplicated"], scenario["db_mismatched"]) == (0, 0, 0), scenario


def test_fanout_with_three_processes_on_one_postgresql_and_a_kill(postgres_server, monkeypatch) -> None:
    """`bench fanout --processes 3 --smoke`: three bot processes on the session's server, one SIGKILLed."""
    monkeypatch.setenv("MLDEBT_BENCH_POSTGRES_URL", postgres_server.url)
    out = RESULTS / "fanout-processes.smoke.json"
    out.unlink(missing_ok=True)
    assert main(["fanout", "--processes", "3", "--smoke"]) == 0
    data = json.loads(out.read_text())
    assert (data["benchmark"], data["processes"], data["smoke"]) == ("fanout-processes", 3, True)
    [run] = data["per_run"]
    killed = run["killed"]
    assert (killed["lost"], killed["duplicated"], killed["db_mismatched"]) == (0, 0, 0), killed
    assert killed["db_rows"] == killed["outbox_sent"] == killed["channels"]


@pytest.mark.parametrize(("processes", "offered"), [(1, None), (2, 200)])
def test_engine_on_postgresql(postgres_server, monkeypatch, processes, offered) -> None:
    """`bench engine --store postgres --smoke`: one process in the closed loop, then two at an offered
    load, on the session's server; each answer's round trips are counted."""
    monkeypatch.setenv("MLDEBT_BENCH_POSTGRES_URL", postgres_server.url)
    name = "engine_postgres" if offered is None else "engine_postgres-open-loop"
    out = RESULTS / f"{name}.smoke.json"
    out.unlink(missing_ok=True)
    extra = [] if offered is None else ["--open-loop", str(offered)]
    assert main(["engine", "--store", "postgres", "--processes", str(processes), "--smoke", *extra]) == 0
    data = json.loads(out.read_text())
    assert (data["benchmark"], data["smoke"], data["offered_per_s"]) == (name, True, offered)
    [run] = data["postgres"][str(processes)]
    assert run["processes"] == processes and run["rollbacks_per_answer"] >= 0
    if offered is None:  # 20 players, each answering its challenge to the end
        assert run["answers"] >= 20 * 5
    else:  # about 200 Poisson arrivals in the one-second run, some of them finding no idle player
        assert 120 <= run["answers"] + run["no_idle_player"] <= 280 and run["answers"] >= 60
    # an answer is one transaction: BEGIN and COMMIT, and at least its read and its write between them
    assert run["control_trips_per_answer"] >= 2 and run["round_trips_per_answer"] >= 4
    assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert len(data["sqlite"]) == 1 and len(data["pgbench_tps"]) == 1
