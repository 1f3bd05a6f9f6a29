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
    args = p.parse_args(argv)
    module = importlib.import_module(f"bench.{args.name.replace('-', '_')}")
    return module.main(smoke=args.smoke, runs=args.runs)


if __name__ == "__main__":
    sys.exit(main())
