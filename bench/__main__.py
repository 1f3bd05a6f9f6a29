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
    args = p.parse_args(argv)
    if args.open_loop is not None and args.name != "engine":
        p.error("--open-loop is an option of the engine benchmark")
    module = importlib.import_module(f"bench.{args.name.replace('-', '_')}")
    extra = {"open_loop": args.open_loop} if args.open_loop is not None else {}
    return module.main(smoke=args.smoke, runs=args.runs, **extra)


if __name__ == "__main__":
    sys.exit(main())
