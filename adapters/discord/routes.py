"""Where a session's current question is shown, so the scheduler can update it later.

Challenge messages are ephemeral: Discord lets a bot reach them only through the webhook of the
interaction that created (or last updated) them, for 15 minutes after that interaction. So after
every message that shows an open question, the adapter stores a route with the session: the
application id, that interaction's token, the message id, the channel and when the token expires.
The engine keeps it as an opaque string and hands it back in `Delivery.route` on a time-out.

When the token has expired (a time limit scaled beyond 15 minutes, or a bot that was down), the
time-out is still recorded; the player sees it on their next click or `/mldebt resume`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import discord

from bot import errors
from bot.engine import QuizEngine

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=30)  # do not start a webhook call on a token about to die


@dataclass(frozen=True)
class Route:
    application_id: int
    token: str
    message_id: int
    channel_id: int
    question_id: str
    expires_at: float  # unix seconds

    def encode(self) -> str:
        return json.dumps({"v": 1, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def decode(cls, value: str | None) -> Route | None:
        if not value:
            return None
        try:
            data = json.loads(value)
            if data.pop("v", None) != 1:
                return None
            return cls(**data)
        except (ValueError, TypeError):
            return None

    def usable(self, now: datetime) -> bool:
        return now + TOKEN_MARGIN < datetime.fromtimestamp(self.expires_at, UTC)

    @classmethod
    def of(cls, interaction: discord.Interaction, message_id: int, question_id: str) -> Route:
        assert interaction.application_id is not None
        return cls(interaction.application_id, interaction.token, message_id, interaction.channel_id or 0,
                   question_id, (interaction.created_at + TOKEN_LIFETIME).timestamp())

    def webhook(self, client: discord.Client) -> discord.Webhook:
        return interaction_webhook(client, self.application_id, self.token)


def interaction_webhook(client: discord.Client, application_id: int, token: str) -> discord.Webhook:
    """The interaction's followup webhook rebuilt from stored ids (what `Interaction.followup` does).

    Type 3 (application webhook) is what allows ephemeral sends; `Webhook.partial` would build an
    incoming webhook that refuses them.
    """
    data = {"id": application_id, "type": 3, "token": token}
    return discord.Webhook.from_state(data=data, state=client._connection)  # noqa: SLF001


async def remember(engine: QuizEngine, session_id: str, route: Route) -> None:
    """Store the route on the session if that question is still the open one (one transaction).

    The engine takes a route on start/answer, but the message showing the next question only exists
    after the engine has answered, so the adapter records it afterwards.
    """
    try:
        await engine.set_route(session_id, route.question_id, route.encode())
    except errors.Busy:
        log.warning("could not store where session %s is shown (database busy); a time-out may go unseen",
                    session_id)
