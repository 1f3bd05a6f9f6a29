"""The discord.py bot: `build_bot(settings, engine)` is the one factory (tests and `mldebt run`).

The bot translates: an app command or a click becomes a bot.commands call with the player
`Player("discord", guild id, user id, display name)`, and the replies are shown by turn.present.
It keeps nothing about quizzes in memory: sessions, deadlines, where each question is shown and
the outbox (time-outs, badge celebrations, role grants, daily posts) are in the database, and the
buttons carry ids only, so a restarted bot (or a second process) picks up where the last one stopped.

Intents: guilds only (the role cache and guild events). No message content, no members: members
come with each interaction, and a pending grant fetches its member over REST.

Shards (DISCORD_SHARD_COUNT, DISCORD_SHARD_IDS): the same bot on discord.py's AutoShardedClient,
running only this process's shards. Discord sends a guild's events and interactions to the shard
`(guild id >> 22) % count`, so the guild cache (roles, channels) and everything a guild's players do
land in the one process that runs its shard; the outbox worker claims only entries of those guilds
(`shard_filter`), so time-outs, grants, celebrations and daily posts are sent by that process too,
and the commands are synced by the process that runs shard 0 only (`syncs_commands`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.commands import Action, handle_action, handle_text
from bot.config import Settings
from bot.engine import Delivery, QuizEngine
from bot.errors import QuizError
from bot.outbox import OutboxEntry, ShardFilter, loads
from bot.platform_errors import Permanent, PlatformError
from bot.replies import BadgeAwarded, Feedback, Player, Rejected, Reply, Skipped, TimeUp
from bot.scheduler import Scheduler

from .components import QuizButton
from .daily import FIND_LIMIT, DailyPoster
from .errors import ACK_TIMEOUT, Attempt, call
from .render import Outgoing, celebration
from .roles import PLATFORM, RoleGranter
from .routes import Route
from .sync import sync_if_changed
from .tree import command_groups
from .turn import InteractionSurface, WebhookSurface, present

log = logging.getLogger(__name__)

WORK_SLOTS = 8  # acknowledged interactions worked on at once; the store runs one transaction at a time anyway
SORRY = "Something went wrong on our side; please try again. If it keeps happening, tell a server admin."
NOT_ADMIN = "You need the Manage Server permission for `/mldebt-admin` commands."
NOT_IN_GUILD = "mldebt works inside a server: use it in a server channel."


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    return wanted


def shard_filter(settings: Settings) -> ShardFilter | None:
    """The guilds this process delivers for: None when it runs every shard (or is not sharded)."""
    count, ids = settings.discord_shard_count, settings.discord_shard_ids
    if count is None or ids is None or len(ids) == count:
        return None
    return ShardFilter(PLATFORM, count, ids)


def syncs_commands(settings: Settings) -> bool:
    """One process pushes the command tree: the unsharded one, or the one running shard 0."""
    return settings.discord_shard_ids is None or 0 in settings.discord_shard_ids


def describe_shards(settings: Settings) -> str:
    """"shards 0-1, 3 of 4" for the start-up log line."""
    ids = settings.discord_shard_ids or ()
    runs: list[list[int]] = []
    for shard in ids:
        if runs and runs[-1][-1] == shard - 1:
            runs[-1].append(shard)
        else:
            runs.append([shard])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    return f"shard{'s' if len(ids) != 1 else ''} {text} of {settings.discord_shard_count}"


def player_of(interaction: discord.Interaction) -> Player:
    return Player(PLATFORM, str(interaction.guild_id), str(interaction.user.id), interaction.user.display_name)


def is_admin(interaction: discord.Interaction) -> bool:
    return interaction.guild_id is not None and interaction.permissions.manage_guild


class MlDebtTree(app_commands.CommandTree):
    # a method, not an attribute set later: test harnesses and discord.py wrap it at attach time
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("app command %s failed", interaction.command.qualified_name if interaction.command else "?",
                  exc_info=error)
        await _say_sorry(interaction)


async def _say_sorry(interaction: discord.Interaction) -> None:
    """A bug on our side: tell the user privately (a followup once acknowledged), never raise."""
    response = interaction.response
    try:
        if response.is_done():
            await call(interaction.followup.send(SORRY, ephemeral=True), Attempt("apologise"))
        else:
            await call(response.send_message(SORRY, ephemeral=True), Attempt("apologise"), limit=ACK_TIMEOUT)
    except PlatformError as exc:
        log.warning("could not tell the user about the failure: %s", exc.detail)


class MlDebtBot(commands.Bot):
    def __init__(self, settings: Settings, engine: QuizEngine, *, sync_commands: bool = True,
                 **client_options: Any) -> None:
        super().__init__(command_prefix=commands.when_mentioned, help_command=None, intents=intents(),
                         allowed_mentions=discord.AllowedMentions.none(), tree_cls=MlDebtTree, **client_options)
        self.settings = settings
        self.engine = engine
        self.sync_commands = sync_commands
        self.roles = RoleGranter(self.get_guild, settings.discord_mastery_role)
        self.daily = DailyPoster(self)
        # the work behind acknowledged interactions, a few at a time: acknowledgements never queue
        # behind a burst's rendering and database round trips (bench/discord_ack.py)
        self.work_slots = asyncio.Semaphore(WORK_SLOTS)
        engine.grant_platforms.add(PLATFORM)  # every new badge also writes its role grant to the outbox
        engine.channel_probes[PLATFORM] = self.probe_channel  # `daily set` checks the channel first
        for group in command_groups():
            self.tree.add_command(group)

    def attach(self, scheduler: Scheduler) -> None:
        """Deliver this platform's outbox entries through `scheduler`'s worker: time-outs, badge role
        grants and celebrations, daily posts and reveals (a rebuilt bot replaces the last one's), of
        the guilds on this process's shards only."""
        scheduler.outbox.shard(PLATFORM, shard_filter(self.settings))
        scheduler.register(PLATFORM, self.deliver)
        scheduler.deliver(PLATFORM, "grant", self.roles.send)
        scheduler.deliver(PLATFORM, "celebration", self.send_celebration, self.find_celebration)
        scheduler.register_daily(PLATFORM, self.daily)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(QuizButton)
        if self.sync_commands:
            await sync_if_changed(self.engine, self, self.tree)

    async def probe_channel(self, tenant: str, channel: str) -> None:
        """Can the bot post the daily question in `channel`? Raises Permanent with the fix if not."""
        guild = self.get_guild(int(tenant)) if tenant.isdigit() else None
        if guild is None or guild.me is None:
            return  # not in the cache (yet): the first post will tell, through the outbox
        target = guild.get_channel(int(channel)) if channel.isdigit() else None
        if target is None:
            raise Permanent("channel_not_found", "that channel does not exist in this server",
                            "Choose an existing text channel.", scope="target", gone=True)
        perms = target.permissions_for(guild.me)
        missing = [name for name, ok in (("View Channel", perms.view_channel), ("Send Messages", perms.send_messages),
                                         ("Embed Links", perms.embed_links)) if not ok]
        if missing:
            raise Permanent("missing_permission", f"the bot lacks {', '.join(missing)} there",
                            f"Give the bot {', '.join(missing)} in <#{channel}> (Edit Channel > Permissions), then "
                            "run `daily set` again.", scope="target")

    # -- events -----------------------------------------------------------------------------------

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Added (back) to a server: resume what its removal paused (grants included, by the outbox)."""
        await self.engine.tenant_restored(PLATFORM, str(guild.id))

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Kicked, banned or the server deleted: pause its daily posts and grants instead of failing them."""
        await self.engine.tenant_removed(PLATFORM, str(guild.id), "guild_removed",
                                         "Add mldebt to the server again (the link from `mldebt discord invite-url`).")

    # -- commands and clicks ----------------------------------------------------------------------

    async def run_text(self, interaction: discord.Interaction, text: str, *, admin_only: bool = False) -> None:
        """An app command, as the core's command text: acknowledged first, then run and shown."""
        if interaction.guild_id is None:
            await _refuse_outside_guild(interaction)
            return
        player = player_of(interaction)
        surface = InteractionSurface(interaction, player)
        if not await surface.ack(update=False):
            return
        async with self.work_slots:
            if admin_only and not is_admin(interaction):
                await present(self, surface, [Rejected(NOT_ADMIN, "NotAdmin")])
                return
            try:
                replies = await handle_text(self.engine, player, text, is_admin=is_admin(interaction),
                                            celebrate_default=self.settings.celebrate)
                await present(self, surface, [*await self.engine.unseen(player), *replies])
            except Exception:
                log.exception("command %r failed", text[:80])
                await _apologise(surface)

    async def on_quiz_click(self, interaction: discord.Interaction, custom_id: str) -> None:
        """A question button (a DynamicItem, so it works for messages from before a restart)."""
        if interaction.guild_id is None:
            await _refuse_outside_guild(interaction)
            return
        player = player_of(interaction)
        surface = InteractionSurface(interaction, player)
        if not await surface.ack(update=True):
            return
        async with self.work_slots:
            await self._click(surface, player, custom_id)

    async def _click(self, surface: InteractionSurface, player: Player, custom_id: str) -> None:
        interaction = surface.interaction
        try:
            action = Action.decode(custom_id)
            on_card = action.question_id if action is not None and action.kind in "ahs" else None
            replies = await handle_action(self.engine, player, custom_id, str(interaction.id))
            if on_card is not None and action is not None and _closed(replies):
                replies = await self._outcome(player, action, replies)
            unseen = await self.engine.unseen(player)
            if unseen and on_card not in (r.question_id for r in unseen if isinstance(r, Feedback | TimeUp | Skipped)):
                replies = [*replies, *unseen]  # the clicked card itself shows its own result
            await present(self, surface, replies, card_question=on_card)
        except Exception:
            # discord.py would only log an exception escaping a DynamicItem callback
            log.exception("click %s failed", custom_id)
            await _apologise(surface)

    async def _outcome(self, player: Player, action: Action, refused: list[Reply]) -> list[Reply]:
        """A click on a closed question: what happened to it, and the current question."""
        try:
            return await self.engine.question_outcome(player, action.session_id, action.question_id)
        except QuizError:
            return refused

    async def retry_roles_command(self, interaction: discord.Interaction) -> None:
        """The admin fixed the cause: the outbox retries this server's failed and paused grants now
        (`admin retry`, a trigger: the scheduler's worker grants them, `status` shows what still waits)."""
        player = player_of(interaction)
        surface = InteractionSurface(interaction, player)
        if not await surface.ack(update=False):
            return
        if not is_admin(interaction):
            await present(self, surface, [Rejected(NOT_ADMIN, "NotAdmin")])
            return
        await present(self, surface, await self.engine.retry_deliveries(player,
                                                                        celebrate_default=self.settings.celebrate))

    # -- the outbox's celebration -----------------------------------------------------------------

    def _celebration_of(self, entry: OutboxEntry) -> tuple[BadgeAwarded, int, str]:
        data = loads(entry.payload)
        badge: BadgeAwarded = data["badge"]
        route = Route.decode(data.get("route"))
        channel = int(data.get("channel") or (route.channel_id if route is not None else 0))
        guild = self.roles.guild(entry.tenant)
        name = self.roles.role_for(badge.badge)
        role = discord.utils.get(guild.roles, name=name) if guild is not None and name else None
        return badge, channel, celebration(badge, role.mention if role is not None else None)

    async def send_celebration(self, entry: OutboxEntry) -> str | None:
        """Post a badge's public celebration in the channel where it was earned (unless turned off)."""
        badge, channel, content = self._celebration_of(entry)
        if not await self.engine.tenant_flag(PLATFORM, entry.tenant, "celebrate", self.settings.celebrate):
            return "off"
        if not channel:
            log.info("badge of %s: no channel known to celebrate in", badge.player.user)
            return None
        message = await call(self.get_partial_messageable(channel).send(content),
                             Attempt("post the badge celebration", channel_id=channel,
                                     then="so that the next badges are celebrated there"))
        return str(message.id)

    async def find_celebration(self, entry: OutboxEntry) -> str | None:
        """After an interrupted attempt: the celebration if it was posted already (recent channel history)."""
        badge, channel, content = self._celebration_of(entry)
        if not channel:
            return None
        # the first attempt may have been worded before the role existed (no mention)
        return await call(self._find_message(channel, {content, celebration(badge, None)}),
                          Attempt("look for an earlier badge celebration", channel_id=channel))

    async def _find_message(self, channel: int, contents: set[str]) -> str | None:
        me = self.user
        async for message in self.get_partial_messageable(channel).history(limit=FIND_LIMIT):
            if me is not None and message.author.id == me.id and message.content in contents:
                return str(message.id)
        return None

    # -- the scheduler's time-outs ----------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> None:
        """A question timed out: update its card (and show what comes next) via the stored route.

        The outbox's time-out sender: raises Transient/Permanent only when nothing was shown yet
        (a retry is then safe); a later failure is logged and the player sees the rest next time.
        """
        route = Route.decode(delivery.route)
        if route is None:
            log.info("time-out in session %s recorded; no Discord message to update", delivery.session_id)
            return
        if not route.usable(discord.utils.utcnow()):
            log.info("time-out in session %s recorded; the interaction token expired, so the player sees it "
                     "on their next click or /mldebt resume", delivery.session_id)
            return
        surface = WebhookSurface(self, route, delivery.player)
        timed_out = next((r.question_id for r in delivery.replies if isinstance(r, TimeUp)), None)
        on_card = route.question_id if timed_out == route.question_id else None
        await present(self, surface, delivery.replies, card_question=on_card, retryable=True)


async def _apologise(surface: InteractionSurface) -> None:
    """A bug on our side after the acknowledgement: a private apology (replacing "thinking…")."""
    try:
        await surface.send(Outgoing(content=SORRY))
    except PlatformError as exc:
        log.warning("could not tell the user about the failure: %s", exc.detail)


async def _refuse_outside_guild(interaction: discord.Interaction) -> None:
    try:
        await call(interaction.response.send_message(NOT_IN_GUILD, ephemeral=True), Attempt("answer a direct message"),
                   limit=ACK_TIMEOUT)
    except PlatformError as exc:
        log.info("could not answer an interaction outside a server: %s", exc.detail)


def _closed(replies: list[Reply]) -> bool:
    return len(replies) == 1 and isinstance(replies[0], Rejected) and \
        replies[0].reason in ("QuestionClosed", "SessionClosed")


class ShardedMlDebtBot(MlDebtBot, commands.AutoShardedBot):
    """The same bot on discord.py's AutoShardedClient: this process's shards on their own gateway
    connections, one guild cache (see the module docstring)."""


def build_bot(settings: Settings, engine: QuizEngine, *, sync_commands: bool = True) -> MlDebtBot:
    """The Discord bot on this engine. `sync_commands=False` skips the start-up sync (the CLI syncs);
    a sharded process that does not run shard 0 never syncs at start-up."""
    if settings.discord_shard_count is None:
        return MlDebtBot(settings, engine, sync_commands=sync_commands)
    return ShardedMlDebtBot(settings, engine, sync_commands=sync_commands and syncs_commands(settings),
                            shard_count=settings.discord_shard_count, shard_ids=list(settings.discord_shard_ids or ()))
