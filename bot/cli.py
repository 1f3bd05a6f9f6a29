"""The `mldebt` command: parsing, start-up checks and the bank tools.

Start-up problems (a bad setting, an invalid bank, an unwritable database) print one clear line per
problem and exit non-zero; no traceback. The platform adapters are wired in by adapters/main.py,
which passes them in as `Frontends` (bot/ never imports adapters).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .bank import DIFFICULTIES, Bank, BankError, load_bank
from .clock import Clock, SystemClock
from .config import Settings, SettingsError
from .engine import QuizEngine
from .scheduler import Scheduler
from .store import Store, StoreUnavailable, store_for

log = logging.getLogger("mldebt")

PLAY_MODES = ("challenge", "practice", "test", "learn")


@dataclass
class Core:
    """Everything the adapters share: one engine, one store, one scheduler."""

    settings: Settings
    bank: Bank
    store: Store
    engine: QuizEngine
    scheduler: Scheduler
    clock: Clock

    async def close(self) -> None:
        await self.store.close()


async def open_core(settings: Settings, clock: Clock | None = None) -> Core:
    clock = clock or SystemClock()
    bank = load_bank(settings.question_bank or None, time_limit_scale=settings.time_limit_scale)
    store = store_for(settings.database_url or settings.database)
    await store.open()
    engine = QuizEngine(store, bank, clock, timezone=settings.timezone)
    return Core(settings, bank, store, engine, Scheduler(engine, clock), clock)


Runner = Callable[[Core, argparse.Namespace], Awaitable[int]]


@dataclass
class Frontends:
    """Entry points provided by the adapters package."""

    console: Runner
    servers: Runner  # Slack and/or Discord, whichever is configured
    extra: dict[str, Runner]  # e.g. "discord sync", "discord invite-url"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mldebt", description="A quiz bot that teaches technical debt in ML systems.")
    p.add_argument("--env-file", default=".env", help="settings file to read (default: .env if present)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="start the bot: Slack and/or Discord if configured, else the terminal")
    play = sub.add_parser("play", help="play in the terminal")
    play.add_argument("mode", choices=PLAY_MODES)
    play.add_argument("topic_arg", nargs="?", metavar="TOPIC", help="topic (learn, practice)")
    play.add_argument("--topic", help="practice or learn this topic")
    play.add_argument("--difficulty", choices=DIFFICULTIES, help="practice this difficulty")
    bank = sub.add_parser("bank", help="question bank tools")
    bank_sub = bank.add_subparsers(dest="bank_command", metavar="ACTION", required=True)
    check = bank_sub.add_parser("check", help="validate question files; list every problem")
    check.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the configured bank)")
    stats = bank_sub.add_parser("stats", help="coverage by topic, type and difficulty")
    stats.add_argument("paths", nargs="*", type=Path)
    db = sub.add_parser("db", help="database tools")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("migrate", help="bring MLDEBT_DATABASE to the current schema and print its version")
    copy = db_sub.add_parser("copy", help="copy a SQLite installation into PostgreSQL, verified table by table")
    copy.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH", help="the SQLite file")
    copy.add_argument("--to", dest="target", required=True, metavar="postgresql://...", help="the PostgreSQL database")
    copy.add_argument("--replace", action="store_true", help="overwrite a target that already has rows")
    discord = sub.add_parser("discord", help="Discord tools")
    discord_sub = discord.add_subparsers(dest="discord_command", metavar="ACTION", required=True)
    discord_sub.add_parser("sync", help="push the slash commands to Discord now")
    discord_sub.add_parser("invite-url", help="print the URL that adds the bot to a server")
    return p


def _bank_paths(args: argparse.Namespace, settings: Settings | None) -> list[Path] | None:
    if args.paths:
        return list(args.paths)
    if settings is not None and settings.question_bank:
        return list(settings.question_bank)
    return None


def cmd_bank_check(paths: Sequence[Path] | None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        bank = load_bank(paths)
    except BankError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found.", file=err)
        return 1
    practice = sum(1 for q in bank.questions.values() if q.solution is not None)
    print(f"OK: {len(bank.questions)} questions in {len(bank.topics)} topics, {practice} practice problems, "
          f"{len(bank.challenge_sets)} challenge sets.", file=out)
    return 0


def cmd_bank_stats(paths: Sequence[Path] | None, out=None, err=None) -> int:
    from .bank_stats import coverage_report

    out, err = out or sys.stdout, err or sys.stderr
    try:
        bank = load_bank(paths)
    except BankError as exc:
        print(f"The bank is invalid ({len(exc.problems)} problems); run `mldebt bank check`.", file=err)
        return 1
    report, ok = coverage_report(bank)
    print(report, file=out)
    return 0 if ok else 1


def cmd_db(args: argparse.Namespace, settings: Settings, out=None) -> int:
    from . import dbtools

    out = out or sys.stdout
    if args.db_command == "migrate":
        try:
            version = asyncio.run(dbtools.migrate(settings.database_url or settings.database))
        except StoreUnavailable as exc:
            return _fail(str(exc))
        print(f"OK: schema version {version}.", file=out)
        return 0
    if not args.source.startswith("sqlite:"):
        return _fail("db copy: --from must be sqlite:PATH")
    if not args.target.startswith(("postgresql://", "postgres://")):
        return _fail("db copy: --to must be a postgresql:// URL")
    source = Path(args.source.removeprefix("sqlite:"))
    if not source.is_file():
        return _fail(f"db copy: no SQLite database at {source}")
    try:
        report = asyncio.run(dbtools.copy(source, args.target, replace=args.replace))
    except (dbtools.CopyError, StoreUnavailable) as exc:
        return _fail(f"db copy: {exc}")
    for t in report:
        print(f"{t.table:<16} {t.rows:>9} rows  verified", file=out)
    print(f"OK: {len(report)} tables, {sum(t.rows for t in report)} rows copied and verified.", file=out)
    return 0


def _fail(message: str) -> int:
    print(f"mldebt: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None, frontends: Frontends | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "run"
    try:
        settings = Settings.load(env_file=args.env_file)
    except SettingsError as exc:
        return _fail(f"invalid setting {exc}")
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bank":
        paths = _bank_paths(args, settings)
        return cmd_bank_check(paths) if args.bank_command == "check" else cmd_bank_stats(paths)
    if args.command == "db":
        return cmd_db(args, settings)
    if frontends is None:
        return _fail(f"'{args.command}' needs the adapters: run it as `mldebt {args.command}`")
    return asyncio.run(_run(args, settings, frontends))


async def _run(args: argparse.Namespace, settings: Settings, frontends: Frontends) -> int:
    try:
        core = await open_core(settings)
    except BankError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(f"the question bank has {len(exc.problems)} problem(s); the bot will not start")
    except StoreUnavailable as exc:
        return _fail(f"invalid setting MLDEBT_DATABASE: {exc}")
    try:
        if args.command == "play":
            return await frontends.console(core, args)
        if args.command == "discord":
            return await frontends.extra[f"discord {args.discord_command}"](core, args)
        if settings.slack_enabled or settings.discord_enabled:
            return await frontends.servers(core, args)
        return await frontends.console(core, args)
    finally:
        await core.close()


if __name__ == "__main__":
    sys.exit(main())
