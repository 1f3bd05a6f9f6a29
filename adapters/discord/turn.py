"""One turn: the replies of one engine call, shown on Discord.

A turn happens on a surface: an interaction being answered (a slash command or a click) or, for a
time-out found by the scheduler, the stored interaction webhook of a route. Both can read and edit
the message showing the current question and send new messages, so the same code shows a click's
feedback and a time-out.

Acks first: an interaction is acknowledged before any quiz work (a click with a deferred update,
type 6; a command with a deferred private "thinking" message, type 5), so the acknowledgement never
queues behind the database or another click's rendering. Everything after it is an edit of the
original message or a followup: the edited question card, then the other messages, then the badge,
then the public celebration. Private replies (refusals included) stay private: the first one of a
command replaces its private "thinking" message, the others are ephemeral followups.

Every Discord call goes through errors.call, so a failure arrives here classified. When the
interaction is gone before its result could be shown (Discord closed it, or kept failing), the
result is noted with the engine and shown on the player's next interaction; nothing is raised.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot import errors
from bot.platform_errors import Permanent, PlatformError, Transient
from bot.replies import BadgeAwarded, Feedback, Hint, Player, Reply, Skipped, TimeUp

from .components import read_buttons
from .errors import ACK_TIMEOUT, Attempt, call
from .render import Outgoing, apply_to_card, badge_note, compose
from .routes import Route, remember

if TYPE_CHECKING:
    from .client import MlDebtBot

log = logging.getLogger(__name__)



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
    done = 0  # Discord calls of this surface that succeeded

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

    async def ack(self, *, update: bool) -> bool:
        """Acknowledge now, before any work. False when Discord has already closed the interaction.

        `update`: a click (deferred update: the clicked message is edited later); otherwise a
        command (a deferred private "thinking" message that the first private reply replaces).
        A transient failure is ambiguous (Discord may have the ack), so the turn goes on and its
        followups tell; an interaction already closed (10062) gets no work at all: nothing is
        written for a click the player was told had failed.
        """
        response = self.interaction.response
        attempt = Attempt("acknowledge the interaction")
        try:
            if update:
                await call(response.defer(), attempt, limit=ACK_TIMEOUT)
            else:
                await call(response.defer(ephemeral=True, thinking=True), attempt, limit=ACK_TIMEOUT)
                self._thinking = True
        except Transient as exc:
            log.warning("acknowledging interaction %s: %s; going on", self.interaction.id, exc.detail)
            self._thinking = not update
        except Permanent as exc:
            if exc.reason == "already_acknowledged":
                self._thinking = not update
                return True
            log.info("interaction %s not acknowledged: %s; nothing done", self.interaction.id, exc.detail)
            return False
        return True

    async def read_card(self) -> tuple[int, list[discord.Embed], list[Any]] | None:
        message = self.interaction.message
        if message is None or not message.embeds:
            return None
        return message.id, list(message.embeds), list(message.components)

    async def edit_card(self, embeds: list[discord.Embed], view: discord.ui.View | None) -> None:
        await call(self.interaction.edit_original_response(embeds=embeds, view=view),
                   Attempt("update the question card"))

    async def send(self, out: Outgoing) -> int | None:
        if self._thinking and out.private:
            self._thinking = False
            message = await call(self.interaction.edit_original_response(
                content=out.content, embeds=out.embeds, view=out.view), Attempt("answer the command"))
            return message.id
        message = await call(self.interaction.followup.send(**_send_kwargs(out), ephemeral=out.private, wait=True),
                             Attempt("send a followup message", channel_id=self.interaction.channel_id))
        return message.id

    def route(self, message_id: int, question_id: str) -> Route | None:
        return Route.of(self.interaction, message_id, question_id)

    async def finish(self) -> None:
        if self._thinking:  # nothing private was sent: the "thinking…" message must not stay
            self._thinking = False
            await call(self.interaction.edit_original_response(content="Done."), Attempt("answer the command"))


class WebhookSurface(Surface):
    """A stored interaction webhook (the scheduler's time-outs); valid while the token lives."""

    def __init__(self, client: discord.Client, route: Route, player: Player) -> None:
        self.route_ = route
        self.webhook = route.webhook(client)
        self.player = player
        self.guild = client.get_guild(int(player.tenant)) if player.tenant.isdigit() else None

    async def read_card(self) -> tuple[int, list[discord.Embed], list[Any]] | None:
        try:
            message = await call(self.webhook.fetch_message(self.route_.message_id),
                                 Attempt("read the question card"))
        except Permanent as exc:
            if exc.reason != "message_not_found":
                raise
            return None  # deleted by the player: show the result as a new message instead
        return message.id, list(message.embeds), list(message.components)

    async def edit_card(self, embeds: list[discord.Embed], view: discord.ui.View | None) -> None:
        await call(self.webhook.edit_message(self.route_.message_id, embeds=embeds, view=view),
                   Attempt("update the question card"))

    async def send(self, out: Outgoing) -> int | None:
        message = await call(self.webhook.send(**_send_kwargs(out), ephemeral=out.private, wait=True),
                             Attempt("send a message to the player"))
        return message.id

    def route(self, message_id: int, question_id: str) -> Route | None:
        r = self.route_
        return Route(r.application_id, r.token, message_id, r.channel_id, question_id, r.expires_at)


_CARD_UPDATES = (Hint, Feedback, TimeUp, Skipped)
_RESULTS = (Feedback, TimeUp, Skipped)


async def present(bot: MlDebtBot, surface: Surface, replies: Sequence[Reply], *,
                  card_question: str | None = None, retryable: bool = False) -> bool:
    """Show one turn's replies. `card_question`: the question the surface's current message shows.

    True if everything was shown. A Discord failure stops the messages of the turn (the next
    ones would fail the same way) but not its badge: the role grant and the celebration are outbox
    entries, delivered whatever happens to the interaction. A result that could not be shown is noted for the next interaction.
    `retryable` (an outbox delivery): a failure of the very first call is raised instead, so the
    outbox retries or fails the entry; once something was shown, a retry would show it twice.
    """
    first = surface.done
    try:
        await _show(bot, surface, replies, card_question)
        shown = True
    except PlatformError as exc:
        if retryable and surface.done == first:
            raise
        shown = False
        await _unshown(bot, surface, replies, exc)
    for badge in (r for r in replies if isinstance(r, BadgeAwarded)):
        await _badge(bot, surface, badge, shown)
    if shown:
        try:
            await surface.finish()
        except PlatformError as exc:
            log.info("could not close the turn of player %s: %s", surface.player.user, exc.detail)
    return shown


async def _show(bot: MlDebtBot, surface: Surface, replies: Sequence[Reply], card_question: str | None) -> None:
    rest = [r for r in replies if not isinstance(r, BadgeAwarded)]
    updates: list[Reply] = []
    while card_question and rest and isinstance(rest[0], _CARD_UPDATES) and rest[0].question_id == card_question:
        updates.append(rest.pop(0))
    if updates:
        card = await surface.read_card()
        surface.done += 1
        if card is None:
            rest = updates + rest
        else:
            message_id, embeds, components = card
            buttons = read_buttons(components)
            embed, view = apply_to_card(embeds[-1], buttons, updates)
            await surface.edit_card(embeds[:-1] + [embed], view)
            surface.done += 1
            if not (isinstance(updates[-1], Feedback) and updates[-1].final) and \
                    not isinstance(updates[-1], TimeUp | Skipped):
                await _remember(bot, surface, message_id, updates[-1].session_id, card_question)
    for out in compose(rest):
        message_id = await surface.send(out)
        surface.done += 1
        if out.card is not None and message_id is not None:
            await _remember(bot, surface, message_id, out.card.session_id, out.card.question_id)


async def _unshown(bot: MlDebtBot, surface: Surface, replies: Sequence[Reply], exc: PlatformError) -> None:
    """The turn's result could not be shown: one log line, and the engine keeps it for next time."""
    result = next((r for r in replies if isinstance(r, _RESULTS)), None)
    noted = False
    if result is not None and isinstance(surface, InteractionSurface):
        try:
            noted = await bot.engine.note_unseen(surface.player, result.session_id, result.question_id)
        except errors.Busy:
            log.warning("could not note the unseen result of player %s (database busy)", surface.player.user)
    log.info("could not show player %s their replies (%s: %s)%s", surface.player.user, exc.reason, exc.detail,
             "; shown on their next interaction" if noted else "")


async def _remember(bot: MlDebtBot, surface: Surface, message_id: int, session_id: str, question_id: str) -> None:
    route = surface.route(message_id, question_id)
    if route is not None:
        await remember(bot.engine, session_id, route)


async def _badge(bot: MlDebtBot, surface: Surface, badge: BadgeAwarded, shown: bool) -> None:
    """Tell the player about their badge. Its role grant and public celebration are outbox entries,
    written with the badge and delivered by the scheduler's worker (woken by the new entries), so a
    crash or a dead interaction loses neither."""
    if not shown:
        return
    try:
        await surface.send(Outgoing(embeds=[badge_note(badge, bot.roles.role_for(badge.badge))]))
    except PlatformError as exc:
        log.warning("could not tell player %s about the badge (%s: %s)", badge.player.user, exc.reason, exc.detail)
