"""The composition root: the `mldebt` command with every adapter wired in."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.cli import Core, Frontends
from bot.cli import main as cli_main
from bot.replies import Player

if TYPE_CHECKING:
    from adapters.console.app import ConsoleApp

CONNECT_HINT = ("No Slack or Discord token configured: playing in the terminal. To connect a workspace, set "
                "SLACK_BOT_TOKEN or DISCORD_TOKEN (see .env.example and the README).")


async def run_console(core: Core, args: argparse.Namespace) -> int:
    from adapters.console.app import PLATFORM, TENANT, ConsoleApp

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "player"
    # no standard input at all (a closed fd 0, as under some CI runners) reads as an empty one
    stdin = sys.stdin if sys.stdin is not None else io.StringIO()
    app = ConsoleApp(core.engine, Player(PLATFORM, TENANT, user, user), stdin=stdin)
    interactive = stdin.isatty() and sys.stdout is not None and sys.stdout.isatty()
    terminal = None
    if interactive:
        from adapters.console.tty import attach_terminal

        terminal = attach_terminal(app)
    core.scheduler.register(PLATFORM, app.deliver)
    core.scheduler.register_daily(PLATFORM, app)
    with terminal.attached() if terminal is not None else contextlib.nullcontext():
        scheduler = core.scheduler.start()
        try:
            return await _console_session(app, args)
        finally:
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)


async def _console_session(app: ConsoleApp, args: argparse.Namespace) -> int:
    if args.command == "play":
        topic = args.topic or args.topic_arg
        if args.mode == "learn":
            first = f"learn {topic}" if topic else "topics"
            return await app.run(first_command=first)
        first = " ".join(x for x in (args.mode, topic, args.difficulty) if x)
        return await app.run(first_command=first, exit_when_finished=True)
    app.write(CONNECT_HINT)
    app.write("Type `challenge` to start, `help` for every command, `exit` to leave.")
    await app.welcome_back()
    return await app.run()


async def run_servers(core: Core, args: argparse.Namespace) -> int:
    from adapters.serve import serve

    return await serve(core)


async def discord_sync(core: Core, args: argparse.Namespace) -> int:
    from adapters.discord.commands_cli import sync_commands
    from adapters.discord.runner import quiet_voice_warnings

    quiet_voice_warnings()
    return await sync_commands(core)


async def discord_invite_url(core: Core, args: argparse.Namespace) -> int:
    from adapters.discord.commands_cli import print_invite_url

    return await print_invite_url(core)


FRONTENDS = Frontends(
    console=run_console,
    servers=run_servers,
    extra={"discord sync": discord_sync, "discord invite-url": discord_invite_url},
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return cli_main(argv, FRONTENDS)
    except KeyboardInterrupt:
        print("\nBye.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
