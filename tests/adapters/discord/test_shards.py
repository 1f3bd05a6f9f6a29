"""Two Discord processes on one database, each running one of two shards, under SimCord.

SimCord runs the real discord.py AutoShardedClient with the shard ids it was given and routes each
guild's gateway events (and interactions) to the shard `(guild id >> 22) % 2`, as Discord does. It
holds one bot per event loop, so the two processes take turns on the same fake Discord (as in a
rolling restart); each has its own engine, store connection and scheduler on the one SQLite file.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest
import simcord

from adapters.discord import runner
from adapters.discord.client import MlDebtBot, ShardedMlDebtBot, build_bot, describe_shards, shard_filter
from adapters.main import main
from bot.bank import Bank
from bot.cli import open_core
from bot.clock import FakeClock
from bot.config import Settings
from bot.engine import QuizEngine
from bot.outbox import ShardFilter
from bot.scheduler import Scheduler
from bot.store import Store, store_for
from tests.adapters.discord.helpers import card, field_names
from tests.fakes.bank import write_bank

TOKEN = "A" * 24 + "." + "B" * 6 + "." + "C" * 27  # shaped like a bot token; never sent anywhere

@dataclass
class Process:
    """What one `mldebt run` with DISCORD_SHARD_IDS holds: its engine, scheduler and bot."""

    settings: Settings
    store: Store
    engine: QuizEngine
    scheduler: Scheduler
    bot: MlDebtBot

    def rebuild(self) -> MlDebtBot:
        """The process's bot again (a restart of the same process on the same shards)."""
        self.bot = build_bot(self.settings, self.engine)
        self.bot.attach(self.scheduler)
        return self.bot


@pytest.fixture(params=["sqlite", "postgres"])
async def processes(request, tmp_path: Path, bank: Bank, clock: FakeClock):
    """Starts a process on shards `ids` of 2; all of them on one database (SQLite file or PostgreSQL)."""
    made: list[Process] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    async def start(*ids: int) -> Process:
        settings = Settings(database=tmp_path / "quiz.sqlite3", database_url=url, discord_shard_count=2,
                            discord_shard_ids=ids)
        store = store_for(url or settings.database)
        await store.open()
        engine = QuizEngine(store, bank, clock, rng=random.Random(len(made)))
        process = Process(settings, store, engine, Scheduler(engine, clock), None)  # type: ignore[arg-type]
        process.rebuild()
        made.append(process)
        return process

    yield start
    for p in made:
        await p.store.close()


@asynccontextmanager
async def running(bot: MlDebtBot) -> AsyncIterator[simcord.Env]:
    """SimCord around `bot`, with discord.py's clock on SimCord's (interaction tokens age in its time)."""
    env = simcord.Env(bot)
    await env.start()
    try:
        with env.time_context():
            yield env
        assert env.errors == []
    finally:
        await env.shutdown()


def syncs(env: simcord.Env) -> int:
    return sum(1 for r in env.http_requests if r.method == "PUT" and r.path.endswith("/commands"))


async def query(process: Process, sql: str) -> list[tuple]:
    async with process.store.transaction() as tx:
        return sorted(tuple(r) for r in await tx._all(sql, ()))


async def test_each_process_sees_only_its_shards_guilds_and_only_shard_0_syncs_commands(processes):
    a, b = await processes(0), await processes(1)
    assert isinstance(a.bot, ShardedMlDebtBot) and isinstance(a.bot, discord.AutoShardedClient)
    assert (a.bot.shard_count, a.bot.shard_ids) == (2, [0])
    async with running(a.bot) as env:
        zero, one = env.create_guild("Zero", shard_id=0), env.create_guild("One", shard_id=1)
        await env.settle()
        assert [g.id for g in a.bot.guilds] == [zero.id]
        assert a.bot.get_guild(zero.id).shard_id == 0 and a.bot.get_guild(one.id) is None
        assert syncs(env) == 1  # the process running shard 0 pushed the commands

        alice = zero.add_member(env.create_user("alice"))
        started = await alice.slash(zero.create_text_channel("quiz"), "mldebt challenge")
        assert started.response.embeds[0].title == "Mastery challenge · 1/5"

        await env.restart_bot(b.bot)
        assert [g.id for g in b.bot.guilds] == [one.id]
        assert syncs(env) == 1  # shard 1's process did not sync
        carol = one.add_member(env.create_user("carol"))
        started = await carol.slash(one.create_text_channel("quiz"), "mldebt challenge")
        assert started.response.embeds[0].title == "Mastery challenge · 1/5"


def mod_of(env: simcord.Env, guild: simcord.GuildHandle, name: str) -> simcord.MemberActor:
    role = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    return guild.add_member(env.create_user(name), roles=[role])


async def outbox_rows(process: Process) -> list[tuple]:
    return await query(process, "SELECT tenant, kind, status, attempts FROM outbox")


async def test_each_process_delivers_only_its_guilds_entries_whoever_wrote_them(processes, clock, tmp_path):
    a, b = await processes(0), await processes(1)
    async with running(a.bot) as env:
        zero, one = env.create_guild("Zero", shard_id=0), env.create_guild("One", shard_id=1)
        q0, q1 = zero.create_text_channel("quiz"), one.create_text_channel("quiz")
        await env.settle()
        # a guild on the other shard: its interactions never reach this process
        stray = await one.add_member(env.create_user("stray")).slash(q1, "mldebt challenge")
        assert not stray.acknowledged

        await mod_of(env, zero, "mod0").slash(q0, "mldebt-admin daily set", channel=q0, time="09:00", timezone="UTC")
        alice = zero.add_member(env.create_user("alice"))
        card0 = (await alice.slash(q0, "mldebt challenge")).response
        await env.restart_bot(b.bot)
        await mod_of(env, one, "mod1").slash(q1, "mldebt-admin daily set", channel=q1, time="09:00", timezone="UTC")
        carol = one.add_member(env.create_user("carol"))
        card1 = (await carol.slash(q1, "mldebt challenge")).response

        # shard 1's process closes both questions and queues both daily posts (facts, for any guild)...
        clock.advance(121)
        closed = await b.scheduler.tick()
        await env.settle()
        assert sorted(d.player.tenant for d in closed) == sorted([str(zero.id), str(one.id)])
        assert await query(b, "SELECT tenant, status FROM daily_posts") == sorted(
            [(str(zero.id), "queued"), (str(one.id), "posted")])
        # ...but sends only its own guild's: shard 0's wait for the process that runs shard 0
        assert field_names(card1)[0].startswith("⏰ Time's up!") and len(q1.history()) == 1
        assert not field_names(card0) and q0.history() == []
        g0, g1 = str(zero.id), str(one.id)
        assert await outbox_rows(b) == sorted([(g0, "daily_post", "pending", 0), (g0, "timeout", "pending", 0),
                                                (g1, "daily_post", "sent", 1), (g1, "timeout", "sent", 1)])
        wake = await b.engine.next_wakeup(b.scheduler.outbox.routes(), b.scheduler.outbox.shards)
        assert wake > clock.now()  # shard 0's due entries do not keep shard 1's scheduler spinning
        assert await b.engine.next_wakeup(b.scheduler.outbox.routes()) <= clock.now()  # (they are due)

        # shard 0's process comes back: it delivers its guild's entries, and nothing is sent twice
        await env.restart_bot(a.rebuild())
        assert await a.scheduler.tick() == []
        await env.settle()
        assert field_names(card0)[0].startswith("⏰ Time's up!") and card(card0).session_id
        assert len(q0.history()) == 1 and len(q1.history()) == 1
        assert await outbox_rows(a) == sorted([(g0, "daily_post", "sent", 1), (g0, "timeout", "sent", 1),
                                                (g1, "daily_post", "sent", 1), (g1, "timeout", "sent", 1)])
        await b.scheduler.outbox.run_once()
        assert len(q0.history()) == 1 and len(q1.history()) == 1


def test_only_a_process_short_of_some_shards_filters_and_the_log_names_its_shards(engine):
    def settings(ids) -> Settings:
        return Settings(discord_shard_count=4, discord_shard_ids=ids)

    assert shard_filter(Settings()) is None and shard_filter(settings((0, 1, 2, 3))) is None
    assert shard_filter(settings((2, 3))).ids == (2, 3)
    assert describe_shards(settings((0, 1, 3))) == "shards 0-1, 3 of 4"
    assert describe_shards(settings((2,))) == "shard 2 of 4"
    assert type(build_bot(Settings(), engine)) is MlDebtBot  # unset: the unsharded client, as before


async def test_the_runner_starts_the_sharded_bot_on_its_shards_only(tmp_path, monkeypatch, caplog):
    settings = Settings(database=tmp_path / "q.sqlite3", question_bank=(write_bank(tmp_path / "bank"),),
                        discord_token=TOKEN, discord_shard_count=4, discord_shard_ids=(2, 3))
    core = await open_core(settings)
    built: list[MlDebtBot] = []
    real_build = runner.build_bot

    def build(*args, **kw) -> MlDebtBot:
        built.append(real_build(*args, **kw))
        return built[-1]

    async def refuse(self, token):  # Discord's answer to a bad token, under discord.py's real login
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(runner, "build_bot", build)
    monkeypatch.setattr(discord.http.HTTPClient, "static_login", refuse)
    caplog.set_level(logging.INFO, logger="adapters.discord.runner")
    try:
        with pytest.raises(runner.DiscordStartError, match="Discord rejected DISCORD_TOKEN"):
            await runner.run_discord(core)
        [bot] = built
        assert isinstance(bot, ShardedMlDebtBot) and (bot.shard_count, bot.shard_ids) == (4, [2, 3])
        assert not bot.sync_commands
        assert core.scheduler.outbox.shards == (ShardFilter("discord", 4, (2, 3)),)
        assert "Discord: running shards 2-3 of 4; the process running shard 0 syncs the commands" in caplog.messages
    finally:
        await core.close()


def test_a_bad_shard_setting_stops_mldebt_run_with_one_line(monkeypatch, tmp_path, capsys):
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLDEBT_DATABASE", str(tmp_path / "quiz.sqlite3"))
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "2-5")
    assert main(["--env-file", os.devnull, "run"]) == 2
    assert capsys.readouterr().err.strip() == ("mldebt: invalid setting DISCORD_SHARD_IDS: shard 5 is outside 0-3 "
                                               "(DISCORD_SHARD_COUNT is 4)")
