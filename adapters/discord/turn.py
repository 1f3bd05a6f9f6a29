"""One turn: the replies of one engine call, shown on Discord.

A turn happens on a surface: an interaction being answered (a slash command or a click) or, for a
time-out found by the scheduler, the stored interaction webhook of a route. Both can read and edit
the message showing the current question and send new messages, so the same code shows a click's
feedback and a time-out.

Order within a turn: first the reply that acknowledges the interaction (the edited question card,
or the first message), then the other messages, then the badge (the role grant may take a few
Discord calls, which is fine once the interaction is acknowledged), then the public celebration.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from bot.replies import BadgeAwarded, Feedback, Hint, Player, Reply, Skipped, TimeUp

from .components import read_buttons
from .render import Outgoing, apply_to_card, badge_note, celebration, compose
from .routes import Route, remember

if TYPE_CHECKING:
    from .client import MlDebtBot

log = logging.getLogger(__name__)

ACK_BUDGET = 2.0  # seconds: Discord wants the first response within 3; defer if the engine is slower
T = TypeVar("T")


def _send_kwargs(out: Outgoing) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if out.content:
        kwargs["content"] = out.content
    if out.embeds:
        kwargs["embeds"] = out.embeds
    if out.view is not None:
        kwargs["view"] = out.view
    return kwargs


class Surface(ABC):
    """Where a turn's replies go."""

    player: Player
    guild: discord.Guild | None = None
    member: discord.Member | None = None

    @abstractmethod
    async def read_card(self) -> tuple[int, list[discord.Embed], list[Any]] | None:
        """The message showing the question being acted on: (id, embeds, components)."""

    @abstractmethod
    async def edit_card(self, embeds: list[discord.Embed], view: discord.ui.View | None) -> None: ...

    @abstractmethod
    async def send(self, out: Outgoing) -> int | None: ...

    @abstractmethod
    def route(self, message_id: int, question_id: str) -> Route | None: ...

    async def finish(self) -> None:  # noqa: B027 - a hook with a default that does nothing
        """Make sure the interaction got a response (nothing to do for a webhook)."""


class InteractionSurface(Surface):
    def __init__(self, interaction: discord.Interaction, player: Player) -> None:
        self.interaction = interaction
        self.player = player
        self.guild = interaction.guild
        self.member = interaction.user if isinstance(interaction.user, discord.Member) else None
        self._thinking = False  # a deferred "thinking…" original is waiting for its content

    async def defer(self, *, update: bool = False) -> None:
        if update:
            await self.interaction.response.defer()  # the clicked message is edited later
        else:
            await self.interaction.response.defer(ephemeral=True, thinking=True)
            self._thinking = True

    async def within_ack(self, work: Awaitable[T], *, update: bool) -> T:
        """Run the engine call; if it is not done within the budget, acknowledge first (defer)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
        if not done:
            await self.defer(update=update)
        return await task

    async def read_card(self) -> tuple[int, list[discord.Embed], list[Any]] | None:
        message = self.interaction.message
        if message is None or not message.embeds:
            return None
        return message.id, list(message.embeds), list(message.components)

    async def edit_card(self, embeds: list[discord.Embed], view: discord.ui.View | None) -> None:
        response = self.interaction.response
        if not response.is_done():
            await response.edit_message(embeds=embeds, view=view)
        else:
            await self.interaction.edit_original_response(embeds=embeds, view=view)

    async def send(self, out: Outgoing) -> int | None:
        response = self.interaction.response
        kwargs = _send_kwargs(out)
        if not response.is_done():
            callback = await response.send_message(**kwargs, ephemeral=out.private)
            return callback.message_id
        if self._thinking and out.private:
            self._thinking = False
            message = await self.interaction.edit_original_response(
                content=out.content, embeds=out.embeds, view=out.view)
            return message.id
        message = await self.interaction.followup.send(**kwargs, ephemeral=out.private, wait=True)
        return message.id

    def route(self, message_id: int, question_id: str) -> Route | None:
        return Route.of(self.interaction, message_id, question_id)

    async def finish(self) -> None:
        response = self.interaction.response
        if not response.is_done():
            if self.interaction.type is discord.InteractionType.component:
                await response.defer()
            else:
                await response.send_message("Done.", ephemeral=True)
        elif self._thinking:
            self._thinking = False
            await self.interaction.edit_original_response(content="Done.")


class WebhookSurface(Surface):
    """A stored interaction webhook (the scheduler's time-outs); valid while the token lives."""

    def __init__(self, client: discord.Client, route: Route, player: Player) -> None:
        self.route_ = route
        self.webhook = route.webhook(client)
        self.player = player
        self.guild = client.get_guild(int(player.tenant)) if player.tenant.isdigit() else None

    async def read_card(self) -> tuple[int, list[discord.Embed], list[Any]] | None:
        try:
            message = await self.webhook.fetch_message(self.route_.message_id)
        except discord.NotFound:  # deleted by the player: show the result as a new message instead
            return None
        return message.id, list(message.embeds), list(message.components)

    async def edit_card(self, embeds: list[discord.Embed], view: discord.ui.View | None) -> None:
        await self.webhook.edit_message(self.route_.message_id, embeds=embeds, view=view)

    async def send(self, out: Outgoing) -> int | None:
        message = await self.webhook.send(**_send_kwargs(out), ephemeral=out.private, wait=True)
        return message.id

    def route(self, message_id: int, question_id: str) -> Route | None:
        r = self.route_
        return Route(r.application_id, r.token, message_id, r.channel_id, question_id, r.expires_at)


_CARD_UPDATES = (Hint, Feedback, TimeUp, Skipped)


async def present(bot: MlDebtBot, surface: Surface, replies: Sequence[Reply], *,
                  card_question: str | None = None) -> None:
    """Show one turn's replies. `card_question`: the question the surface's current message shows."""
    rest = list(replies)
    updates: list[Reply] = []
    while card_question and rest and isinstance(rest[0], _CARD_UPDATES) and rest[0].question_id == card_question:
        updates.append(rest.pop(0))
    if updates:
        card = await surface.read_card()
        if card is None:
            rest = updates + rest
        else:
            message_id, embeds, components = card
            buttons = read_buttons(components)
            embed, view = apply_to_card(embeds[-1], buttons, updates)
            await surface.edit_card(embeds[:-1] + [embed], view)
            if not (isinstance(updates[-1], Feedback) and updates[-1].final) and \
                    not isinstance(updates[-1], TimeUp | Skipped):
                await _remember(bot, surface, message_id, updates[-1].session_id, card_question)
    for out in compose(rest):
        message_id = await surface.send(out)
        if out.card is not None and message_id is not None:
            await _remember(bot, surface, message_id, out.card.session_id, out.card.question_id)
    for badge in (r for r in replies if isinstance(r, BadgeAwarded)):
        await _badge(bot, surface, badge)
    await surface.finish()


async def _remember(bot: MlDebtBot, surface: Surface, message_id: int, session_id: str, question_id: str) -> None:
    route = surface.route(message_id, question_id)
    if route is not None:
        await remember(bot.engine, session_id, route)


async def _badge(bot: MlDebtBot, surface: Surface, badge: BadgeAwarded) -> None:
    """Grant the role (recorded as done or pending by the engine), tell the player, celebrate."""
    role_name = bot.roles.role_for(badge.badge)
    guild = surface.guild
    granted, role = False, None
    if guild is not None:
        member = surface.member if surface.member is not None and str(surface.member.id) == badge.player.user \
            else None
        result = await bot.roles.grant(guild, badge.player, badge.badge, member=member)
        granted, role = result.ok, result.role
    else:
        log.warning("guild %s unavailable; the badge role stays pending and is retried", badge.player.tenant)
    await surface.send(Outgoing(embeds=[badge_note(badge, role_name, granted)]))
    tenant = badge.player.tenant
    if await bot.engine.tenant_flag(badge.player.platform, tenant, "celebrate", bot.settings.celebrate):
        mention = role.mention if granted and role is not None else None
        await surface.send(Outgoing(content=celebration(badge, mention), private=False))
