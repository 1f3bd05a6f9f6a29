"""Runs the configured platform adapters side by side on one engine and one scheduler."""

from __future__ import annotations

import asyncio
import logging

from bot.cli import Core

log = logging.getLogger(__name__)


async def serve(core: Core) -> int:
    tasks: list[asyncio.Task] = []
    if core.settings.slack_enabled:
        from adapters.slack.runner import run_slack

        tasks.append(asyncio.create_task(run_slack(core), name="slack"))
    if core.settings.discord_enabled:
        from adapters.discord.runner import run_discord

        tasks.append(asyncio.create_task(run_discord(core), name="discord"))
    tasks.append(core.scheduler.start())
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
