"""The app commands: `/mldebt ...` for everyone, `/mldebt-admin ...` for server admins.

Each subcommand is one small function that turns its options into the core's command text and
hands it to `bot.run_text`; the core (bot.commands) does the rest and every reply is rendered the
same way. A new core command is one more function here.

Why two roots: Discord applies `default_member_permissions` to a whole top-level command only,
never to a subcommand. `/mldebt-admin` carries Manage Server as its default permission, so members
without it do not even see it (a server admin can still change that in Server Settings >
Integrations), and every admin command checks Manage Server again at run time.
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot.bank import DIFFICULTIES

if TYPE_CHECKING:
    from .client import MlDebtBot

ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)


def _bot(interaction: discord.Interaction) -> MlDebtBot:
    return interaction.client  # type: ignore[return-value]


async def run(interaction: discord.Interaction, *words: str | None) -> None:
    await _bot(interaction).run_text(interaction, " ".join(w for w in words if w))


async def topic_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    needle = current.strip().lower()
    topics = sorted(_bot(interaction).engine.bank.topics.values(), key=lambda t: t.id)
    return [app_commands.Choice(name=f"{t.title} ({t.id})"[:100], value=t.id) for t in topics
            if needle in t.id.lower() or needle in t.title.lower()][:25]


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


async def timezone_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    needle = current.strip().lower()
    return [app_commands.Choice(name=z, value=z) for z in _zones() if needle in z.lower()][:25]


DIFFICULTY_CHOICES = [app_commands.Choice(name=d, value=d) for d in DIFFICULTIES]


class MlDebtCommands(app_commands.Group):
    """`/mldebt`: the quiz."""

    def __init__(self) -> None:
        super().__init__(name="mldebt", description="Learn technical debt in ML systems with timed quizzes",
                         guild_only=True)

    @app_commands.command(name="challenge", description="The Mastery challenge: 5 timed questions; 5/5 earns the badge")
    async def challenge(self, interaction: discord.Interaction) -> None:
        await run(interaction, "challenge")

    @app_commands.command(name="practice", description="Untimed practice with worked solutions")
    @app_commands.describe(topic="Only this topic", difficulty="Only this difficulty")
    @app_commands.autocomplete(topic=topic_autocomplete)
    @app_commands.choices(difficulty=DIFFICULTY_CHOICES)
    async def practice(self, interaction: discord.Interaction, topic: str | None = None,
                       difficulty: str | None = None) -> None:
        await run(interaction, "practice", topic, difficulty)

    @app_commands.command(name="test", description="10 timed questions across difficulties, with a report")
    async def test(self, interaction: discord.Interaction) -> None:
        await run(interaction, "test")

    @app_commands.command(name="review", description="The questions you missed, back on a spaced schedule")
    async def review(self, interaction: discord.Interaction) -> None:
        await run(interaction, "review")

    @app_commands.command(name="learn", description="A topic's concept card (or the list of topics)")
    @app_commands.describe(topic="The topic to read about")
    @app_commands.autocomplete(topic=topic_autocomplete)
    async def learn(self, interaction: discord.Interaction, topic: str | None = None) -> None:
        await run(interaction, "learn", topic)

    @app_commands.command(name="topics", description="The topics and their practice problems")
    async def topics(self, interaction: discord.Interaction) -> None:
        await run(interaction, "topics")

    @app_commands.command(name="hint", description="A hint for your current question")
    async def hint(self, interaction: discord.Interaction) -> None:
        await run(interaction, "hint")

    @app_commands.command(name="skip", description="Skip your current question")
    async def skip(self, interaction: discord.Interaction) -> None:
        await run(interaction, "skip")

    @app_commands.command(name="resume", description="Show your current question again")
    async def resume(self, interaction: discord.Interaction) -> None:
        await run(interaction, "resume")

    @app_commands.command(name="quit", description="End your current quiz")
    async def quit(self, interaction: discord.Interaction) -> None:
        await run(interaction, "quit")

    @app_commands.command(name="stats", description="Your points, accuracy, streak, badges, team and rank")
    async def stats(self, interaction: discord.Interaction) -> None:
        await run(interaction, "stats")

    @app_commands.command(name="leaderboard", description="Top 10 and your own rank")
    @app_commands.describe(kind="Players or teams", period="This week, this month or all time",
                           per_member="Teams: rank by points per member")
    async def leaderboard(self, interaction: discord.Interaction, kind: Literal["players", "teams"] = "players",
                          period: Literal["week", "month", "all"] = "week", per_member: bool = False) -> None:
        await run(interaction, "leaderboard", kind, period, "per-member" if per_member else None)

    @app_commands.command(name="daily", description="When and where the daily question is posted")
    async def daily(self, interaction: discord.Interaction) -> None:
        await run(interaction, "daily", "status")

    @app_commands.command(name="help", description="What mldebt can do")
    async def help(self, interaction: discord.Interaction) -> None:
        await run(interaction, "help")

    team = app_commands.Group(name="team", description="Teams in this server")

    @team.command(name="create", description="Create a team and join it")
    @app_commands.describe(name="3-32 characters: letters, digits, spaces, - _ .")
    async def team_create(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 64]) -> None:
        await run(interaction, "team", "create", name)

    @team.command(name="join", description="Join a team")
    async def team_join(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 64]) -> None:
        await run(interaction, "team", "join", name)

    @team.command(name="leave", description="Leave your team")
    async def team_leave(self, interaction: discord.Interaction) -> None:
        await run(interaction, "team", "leave")

    @team.command(name="list", description="The teams of this server")
    async def team_list(self, interaction: discord.Interaction) -> None:
        await run(interaction, "team", "list")


async def run_admin(interaction: discord.Interaction, *words: str | None) -> None:
    await _bot(interaction).run_text(interaction, " ".join(w for w in words if w), admin_only=True)


class AdminCommands(app_commands.Group):
    """`/mldebt-admin`: hidden from members without Manage Server, and checked again at run time."""

    def __init__(self) -> None:
        super().__init__(name="mldebt-admin", description="mldebt settings for this server (Manage Server)",
                         guild_only=True, default_permissions=ADMIN_PERMISSIONS)

    @app_commands.command(name="status", description="Pending badge roles with their reasons; celebration on/off")
    async def status(self, interaction: discord.Interaction) -> None:
        await run_admin(interaction, "admin", "status")

    @app_commands.command(name="celebrate", description="Post (or not) a public message when someone earns the badge")
    async def celebrate(self, interaction: discord.Interaction, state: Literal["on", "off"]) -> None:
        await run_admin(interaction, "admin", "celebrate", state)

    @app_commands.command(name="timezone", description="The time zone of leaderboard weeks/months and streaks")
    @app_commands.describe(name="An IANA time zone, e.g. Europe/Berlin")
    @app_commands.autocomplete(name=timezone_autocomplete)
    async def timezone(self, interaction: discord.Interaction, name: str) -> None:
        await run_admin(interaction, "admin", "timezone", name)

    @app_commands.command(name="items", description="Questions this server's answers show to be broken, and why")
    @app_commands.describe(count="How many flagged questions to show (default 10)")
    async def items(self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 25] = 10) -> None:
        await run_admin(interaction, "admin", "items", str(count))

    @app_commands.command(name="retry-roles", description="After fixing the cause: try the refused Mastery roles again now")
    async def retry_roles(self, interaction: discord.Interaction) -> None:
        await _bot(interaction).retry_roles_command(interaction)

    daily = app_commands.Group(name="daily", description="The daily question")

    @daily.command(name="set", description="Post a daily question in a channel at a local time")
    @app_commands.describe(channel="Where to post", time="Local time, HH:MM (24 h)",
                           timezone="An IANA time zone, e.g. Europe/Berlin")
    @app_commands.autocomplete(timezone=timezone_autocomplete)
    async def daily_set(self, interaction: discord.Interaction, channel: discord.TextChannel,
                        time: app_commands.Range[str, 1, 5], timezone: str) -> None:
        await run_admin(interaction, "daily", "set", channel.mention, time, timezone)

    @daily.command(name="off", description="Stop the daily question (in one channel, or the only one)")
    async def daily_off(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await run_admin(interaction, "daily", "off", channel.mention if channel else None)

    @daily.command(name="now", description="Post today's daily question now (still one per day)")
    async def daily_now(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await run_admin(interaction, "daily", "now", channel.mention if channel else None)


def command_groups() -> list[app_commands.Group]:
    return [MlDebtCommands(), AdminCommands()]
