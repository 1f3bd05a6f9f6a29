"""`python -m bench NAME [--smoke]`: run one benchmark (see bench/README.md)."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("leaderboard", "engine", "memory", "bank", "slack-ack", "discord-ack", "fanout")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("name", choices=BENCHMARKS)
    p.add_argument("--smoke", action="store_true", help="a tiny run that only checks the benchmark works")
    p.add_argument("--runs", type=int, default=3, help="repeat the measurement; medians are reported")
    p.add_argument("--open-loop", type=float, metavar="RATE",
                   help="engine only: Poisson arrivals at RATE answers/s, latency from the scheduled arrival")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                   help="engine only: postgres runs bench/engine_pg.py (several processes on one database; "
                        "with --open-loop, RATE is spread over the processes)")
    p.add_argument("--processes", default=None, metavar="N,N,...",
                   help="engine --store postgres: the process counts to run (default 1,2,4); fanout: N bot "
                        "processes on one PostgreSQL, one killed halfway (bench/fanout_pg.py)")
    args = p.parse_args(argv)
    if args.open_loop is not None and args.name != "engine":
        p.error("--open-loop is an option of the engine benchmark")
    if args.name == "fanout" and args.processes is not None:
        if not args.processes.isdigit() or int(args.processes) < 2:
            p.error("fanout --processes takes one process count of at least 2")
        from bench import fanout_pg

        return fanout_pg.main(smoke=args.smoke, runs=args.runs, processes=int(args.processes))
    if args.store == "postgres":
        if args.name != "engine":
            p.error("--store postgres is an option of the engine benchmark")
        try:
            processes = tuple(int(n) for n in (args.processes or "1,2,4").split(","))
        except ValueError:
            p.error("--processes takes process counts like 1,2,4")
        if not processes or min(processes) < 1:
            p.error("--processes takes process counts like 1,2,4")
        from bench import engine_pg

        return engine_pg.main(smoke=args.smoke, runs=args.runs, processes=processes, open_loop_rate=args.open_loop)
    module = importlib.import_module(f"bench.{args.name.replace('-', '_')}")
    extra = {"open_loop": args.open_loop} if args.open_loop is not None else {}
    return module.main(smoke=args.smoke, runs=args.runs, **extra)


if __name__ == "__main__":
    sys.exit(main())
