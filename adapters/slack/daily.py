"""Daily question posts in Slack channels: the scheduler's DailyPoster for the "slack" platform.

The engine decides when a post is due and claims it in the database; this only sends it. A post
is a chat.postMessage carrying message metadata with the post id, so `find` can tell whether an
interrupted earlier attempt already posted it (conversations.history, which needs the
channels:history / groups:history scopes; without them `find` reports nothing and the post is
sent again). The reveal edits the post with chat.update. The bot must be in the channel.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.replies import DailyPost, DailyReveal

from .blocks import Renderer

log = logging.getLogger(__name__)

METADATA_TYPE = "mldebt_daily_post"
# errors after which looking again cannot help: the post cannot be there, or we cannot see it
_NOT_FINDABLE = {"missing_scope", "not_in_channel", "channel_not_found"}
# errors after which an edit cannot help: the message is gone or no longer ours to edit
_NOT_EDITABLE = {"message_not_found", "channel_not_found", "cant_update_message", "not_in_channel"}


def message_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


class SlackDailyPoster:
    def __init__(self, client: AsyncWebClient, render: Renderer) -> None:
        self.client = client
        self.render = render

    async def post(self, post: DailyPost) -> str:
        resp = await self.client.chat_postMessage(
            channel=post.channel, **self.render.daily_post(post),
            metadata={"event_type": METADATA_TYPE, "event_payload": {"post_id": post.post_id}})
        return message_ref(resp["channel"], resp["ts"])

    async def find(self, post: DailyPost) -> str | None:
        try:
            resp = await self.client.conversations_history(channel=post.channel, include_all_metadata=True,
                                                           limit=100)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in _NOT_FINDABLE:
                log.warning("cannot look for daily post %s in %s (%s); posting it again", post.post_id,
                            post.channel, error)
                return None
            raise  # a transient failure: the claim's lease runs out and the scheduler looks again
        for message in resp.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == METADATA_TYPE and (meta.get("event_payload") or {}).get("post_id") \
                    == post.post_id:
                return message_ref(post.channel, message["ts"])
        return None

    async def reveal(self, reveal: DailyReveal) -> None:
        if not reveal.message_ref or ":" not in reveal.message_ref:
            log.warning("daily post %s has no message to edit; nothing to reveal", reveal.post_id)
            return
        channel, ts = reveal.message_ref.split(":", 1)
        try:
            await self.client.chat_update(channel=channel, ts=ts, **self.render.daily_reveal(reveal))
        except SlackApiError as exc:
            if exc.response.get("error") not in _NOT_EDITABLE:
                raise
            log.warning("could not edit daily post %s (%s); leaving it", reveal.post_id, exc.response.get("error"))
