"""The daily question on Discord: the scheduler's DailyPoster (post, find after a crash, reveal).

The daily post is a normal public channel message, so it is reachable with the bot token for ever
(unlike the ephemeral challenge messages): posting needs View Channel, Send Messages and Embed
Links there, and `find` (after a crash mid-post) reads the channel's recent history. Answers come
back as `mldebt:d:` button clicks and are answered privately.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.commands import Action
from bot.platform_errors import Permanent
from bot.replies import DailyPost, DailyReveal

from .components import daily_view
from .errors import Attempt, call
from .render import daily_embed, reveal_embed

if TYPE_CHECKING:
    from .client import MlDebtBot

log = logging.getLogger(__name__)

FIND_LIMIT = 50  # messages to look through for a post an interrupted attempt may have sent


class DailyPoster:
    def __init__(self, bot: MlDebtBot) -> None:
        self.bot = bot

    def _channel(self, channel_id: str) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(int(channel_id))

    async def post(self, post: DailyPost) -> str:
        """Send the post; a Discord failure is raised classified (errors.py), with the fix for the admin."""
        letters = [c.letter for c in post.choices]
        message = await call(self._channel(post.channel).send(
            embed=daily_embed(post), view=daily_view(post.post_id, post.question_id, letters)),
            Attempt("post the daily question", channel_id=post.channel))
        return str(message.id)

    async def find(self, post: DailyPost) -> str | None:
        return await call(self._find(post), Attempt("look for an earlier daily post", channel_id=post.channel))

    async def _find(self, post: DailyPost) -> str | None:
        me = self.bot.user
        async for message in self._channel(post.channel).history(limit=FIND_LIMIT):
            if me is not None and message.author.id != me.id:
                continue
            for row in message.components:
                for child in getattr(row, "children", []):
                    action = Action.decode(getattr(child, "custom_id", None) or "")
                    if action is not None and action.kind == "d" and action.session_id == post.post_id:
                        return str(message.id)
        return None

    async def reveal(self, reveal: DailyReveal) -> None:
        if reveal.message_ref is None:
            log.warning("daily post %s has no message to reveal in", reveal.post_id)
            return
        letters = [c.letter for c in reveal.choices]
        view = daily_view(reveal.post_id, reveal.question_id, letters, correct=reveal.answer_letter, closed=True)
        message = self._channel(reveal.channel).get_partial_message(int(reveal.message_ref))
        try:
            await call(message.edit(embed=reveal_embed(reveal), view=view),
                       Attempt("reveal the daily answer", channel_id=reveal.channel))
        except Permanent as exc:
            if exc.reason != "message_not_found":
                raise
            log.warning("daily post %s was deleted before its reveal; nothing to edit", reveal.post_id)
