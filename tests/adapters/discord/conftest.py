"""SimCord fixtures: the real bot from build_bot on the test engine, a guild with two members.

The engine runs on the FakeClock (quiz deadlines); SimCord has its own virtual clock (Discord's side:
interaction tokens, the 3-second acknowledgement). The scheduler is driven with `tick()`; its outbox
worker delivers the bot's time-outs, role grants, celebrations and daily posts (as `MlDebtBot.attach`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import discord
import pytest
import pytest_asyncio
import simcord

from adapters.discord.client import MlDebtBot, build_bot
from bot.bank import Bank
from bot.clock import FakeClock
from bot.config import Settings
from bot.engine import QuizEngine
from bot.scheduler import Scheduler
from tests.adapters.discord.faults import Faults, install


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database=tmp_path / "quiz.sqlite3")


@pytest.fixture
def make_bot(settings: Settings, engine: QuizEngine):
    """A fresh client on the same engine and database: what a restarted process would build."""
    def factory(**overrides) -> MlDebtBot:
        return build_bot(replace(settings, **overrides) if overrides else settings, engine)
    return factory


@pytest.fixture
def simcord_bot(make_bot) -> MlDebtBot:
    return make_bot()


@dataclass
class World:
    env: simcord.Env
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor
    engine: QuizEngine
    bank: Bank
    clock: FakeClock
    scheduler: Scheduler
    db: Path

    def query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()

    def admin(self, name: str = "mod") -> simcord.MemberActor:
        """A member with Manage Server (and nothing else)."""
        role = self.guild.roles.get("Mods") or self.guild.create_role(
            "Mods", permissions=discord.Permissions(manage_guild=True))
        return self.guild.add_member(self.env.create_user(name, global_name=name.title()), roles=[role])


class _CurrentBot:
    """Scheduler hooks that always reach the bot of the current generation (after restarts too)."""

    def __init__(self, env: simcord.Env) -> None:
        self.env = env

    async def deliver(self, delivery) -> None:
        await self.env.bot.deliver(delivery)

    async def grant(self, entry):
        return await self.env.bot.roles.send(entry)

    async def celebrate(self, entry):
        return await self.env.bot.send_celebration(entry)

    async def find_celebration(self, entry):
        return await self.env.bot.find_celebration(entry)

    async def post(self, post):
        return await self.env.bot.daily.post(post)

    async def find(self, post):
        return await self.env.bot.daily.find(post)

    async def reveal(self, reveal):
        return await self.env.bot.daily.reveal(reveal)


@pytest_asyncio.fixture
async def world(simcord_env, engine: QuizEngine, bank: Bank, clock: FakeClock, tmp_path: Path) -> World:
    env = simcord_env
    guild = env.create_guild("ML Guild")
    channel = guild.create_text_channel("quiz")
    alice = guild.add_member(env.create_user("alice", global_name="Alice"))
    bob = guild.add_member(env.create_user("bob", global_name="Bob"))
    scheduler = Scheduler(engine, clock)
    current = _CurrentBot(env)
    scheduler.register("discord", current.deliver)
    scheduler.deliver("discord", "grant", current.grant)
    scheduler.deliver("discord", "celebration", current.celebrate, current.find_celebration)
    scheduler.register_daily("discord", current)
    return World(env, guild, channel, alice, bob, engine, bank, clock, scheduler, tmp_path / "quiz.sqlite3")


@pytest.fixture
def faults(world: World, monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Per-call failure injection on SimCord's transports (see faults.py)."""
    injected = Faults(world.env)
    install(monkeypatch, injected)
    return injected
