"""The `mldebt` command: parsing, start-up checks and the bank tools.

Start-up problems (a bad setting, an invalid bank, an unwritable database) print one clear line per
problem and exit non-zero; no traceback. The platform adapters are wired in by adapters/main.py,
which passes them in as `Frontends` (bot/ never imports adapters).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
    bank = load_bank(settings.question_bank or None, time_limit_scale=settings.time_limit_scale,
                     cache_dir=settings.bank_cache_dir)
    store = store_for(settings.database_url or settings.database)
    await store.open()
    engine = QuizEngine(store, bank, clock, timezone=settings.timezone)
    return Core(settings, bank, store, engine, Scheduler(engine, clock), clock)


Runner = Callable[[Core, argparse.Namespace], Awaitable[int]]

# seconds to wait before each new attempt to reach a platform at start-up; then the bot gives up
STARTUP_RETRY_DELAYS = (2.0, 5.0, 10.0, 20.0, 30.0)


class StartupFailed(Exception):
    """A platform could not be started (unreachable, or a token refused). The message says what
    failed and what to do; the command prints it as one line and exits with status 1."""


def settle_heap() -> None:
    """Take what start-up built (modules, the question bank, the schema) out of the garbage
    collector's way before serving: every full collection walks every tracked object, and each
    answer in flight waits through it. Measured in single 10 s runs of the engine's open-loop bench
    on a quiet machine: the longest full collection 12-14 ms instead of 29-31 ms, answer p99 12-14 ms
    instead of 15-20 ms (bench/README.md)."""
    gc.collect()
    gc.freeze()


async def connect_with_retries(what: str, attempt: Callable[[], Awaitable[None]], *, transient: tuple[type, ...],
                               describe: Callable[[BaseException], str] = str,
                               delays: Sequence[float] = STARTUP_RETRY_DELAYS,
                               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                               quiet: Sequence[str] = ()) -> None:
    """Run `attempt` until it succeeds; a transient error is one log line and a wait (growing per
    `delays`), never a traceback; when the waits are used up, StartupFailed. The `quiet` loggers
    (a library's own per-try chatter) are held to warnings meanwhile, so each try stays one line."""
    loggers = [logging.getLogger(name) for name in quiet]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        await _retry(what, attempt, transient, describe, delays, sleep)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


async def _retry(what: str, attempt: Callable[[], Awaitable[None]], transient: tuple[type, ...],
                 describe: Callable[[BaseException], str], delays: Sequence[float],
                 sleep: Callable[[float], Awaitable[None]]) -> None:
    for n, delay in enumerate([*delays, None], 1):
        try:
            await attempt()
            return
        except transient as exc:
            reason = describe(exc)
            if delay is None:
                raise StartupFailed(f"{what} failed {n} times ({reason}); giving up. Check the network "
                                    "and start again.") from None
            log.warning("%s failed (%s); retrying in %g s (attempt %d of %d)", what, reason, delay, n + 1,
                        len(delays) + 1)
            await sleep(delay)


@dataclass
class Frontends:
    """Entry points provided by the adapters package."""

    console: Runner
    servers: Runner  # Slack and/or Discord, whichever is configured
    extra: dict[str, Runner]  # e.g. "discord sync", "discord invite-url"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mldebt", description="A quiz bot that teaches technical debt in ML systems.")
    p.add_argument("--env-file", help="settings file to read; it must exist (default: .env if present; /dev/null for none)")
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
    report = bank_sub.add_parser("report", help="item analysis of the stored answers: which questions to fix")
    report.add_argument("paths", nargs="*", type=Path)
    report.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    report.add_argument("--output", type=Path, help="write the report to this file (default: standard output)")
    report.add_argument("--min-answers", type=int, metavar="N", help="answers a question needs before any flag "
                        "(default 30)")
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
        bank = load_bank(paths)  # never from the cache: a check always parses and validates every file
    except BankError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} found.", file=err)
        return 1
    practice = sum(1 for q in bank.questions.values() if q.solution is not None)
    print(f"OK: {len(bank.questions)} questions in {len(bank.topics)} topics, {practice} practice problems, "
          f"{len(bank.challenge_sets)} challenge sets.", file=out)
    return 0


def _valid_bank(paths: Sequence[Path] | None, err) -> Bank | None:
    """The bank for a report over it, or None after one line saying to run the full check."""
    try:
        return load_bank(paths)
    except BankError as exc:
        print(f"The bank is invalid ({len(exc.problems)} problems); run `mldebt bank check`.", file=err)
        return None


def cmd_bank_stats(paths: Sequence[Path] | None, out=None, err=None) -> int:
    from .bank_stats import coverage_report

    out, err = out or sys.stdout, err or sys.stderr
    bank = _valid_bank(paths, err)
    if bank is None:
        return 1
    report, ok = coverage_report(bank)
    print(report, file=out)
    return 0 if ok else 1


def cmd_bank_report(paths: Sequence[Path] | None, database: Path | str, fmt: str = "table",
                    output: Path | None = None, min_answers: int | None = None, out=None, err=None) -> int:
    """Item analysis over the answers stored in `database` (a SQLite file or a postgresql:// URL);
    see bot/item_analysis.py."""
    from .item_analysis import MIN_ANSWERS, analyse
    from .item_report import RENDERERS

    out, err = out or sys.stdout, err or sys.stderr
    bank = _valid_bank(paths, err)
    if bank is None:
        return 1
    if isinstance(database, Path) and not database.is_file():
        print(f"No database at {database}: nothing has been answered yet (or set MLDEBT_DATABASE).", file=err)
        return 1

    async def read():
        store = store_for(database)
        await store.open()
        try:
            async with store.transaction() as tx:
                return await tx.item_answers(None, None)
        finally:
            await store.close()

    report = analyse(asyncio.run(read()), bank.questions, MIN_ANSWERS if min_answers is None else min_answers)
    text = RENDERERS[fmt](report)
    if output is None:
        out.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"Wrote {output}: {len(report.items)} questions, {len(report.flagged)} flagged.", file=out)
    return 0


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
    if args.env_file is not None and not Path(args.env_file).exists():
        return _fail(f"--env-file {args.env_file}: no such file")
    try:
        settings = Settings.load(env_file=args.env_file or ".env")
    except SettingsError as exc:
        return _fail(f"invalid setting {exc}")
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bank":
        paths = _bank_paths(args, settings)
        if args.bank_command == "report":
            return cmd_bank_report(paths, settings.database_url or settings.database, args.format, args.output, args.min_answers)
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
            settle_heap()
            return await frontends.servers(core, args)
        return await frontends.console(core, args)
    except StartupFailed as exc:
        print(f"mldebt: {exc}", file=sys.stderr)
        return 1
    finally:
        await core.close()


if __name__ == "__main__":
    sys.exit(main())
