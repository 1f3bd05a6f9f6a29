"""The Slack adapter: slash command, button clicks and App Home -> engine calls; replies -> Block Kit.

It holds no quiz rules: text goes to `bot.commands.handle_text`, clicks to `handle_action`, and
whatever comes back is rendered (blocks.py). Every listener acks at once with an empty body and
does the work in a bolt lazy listener, so Slack always gets its answer within 3 seconds.

How a quiz looks: the command's answer is an ephemeral message posted to the command's
response_url. A click replaces that message through the click's response_url: the answered
question loses its buttons and shows the result and explanation, followed by the next question
(or the summary). Replacing, not appending, also makes a redelivered or double click harmless:
the engine replays the same feedback and the message is replaced with the same content.

Idempotency key of a click: team, user and the button's action id (which names the session, the
question and the choice). A second click on the same button, or the same payload delivered twice,
is the same answer; a different choice is a new attempt.

Time-outs come from the scheduler (`deliver`), which gets the route stored with the session: the
latest response_url and the channel. If the response_url no longer works, the message goes out
with chat.postEphemeral instead. Daily questions are public channel posts (daily.py); a click on
one gets private feedback in a new message and leaves the post alone.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import errors
from bot.commands import Action, handle_action, handle_text, help_reply
from bot.config import Settings
from bot.engine import Delivery, QuizEngine
from bot.replies import BadgeAwarded, Feedback, Hint, Player, QuestionCard, Rejected, Reply, Stats
from bot.scheduler import Scheduler

from .blocks import Renderer
from .bolt_fixes import install_form_body_fix, skip_event_retries
from .daily import SlackDailyPoster
from .grants import UserGroupGrants
from .mrkdwn import unesc
from .web import ResponseUrlError, make_client, post_to_response_url

log = logging.getLogger(__name__)

PLATFORM = "slack"
COMMAND = "/mldebt"
ACTION_IDS = re.compile(r"^mldebt:")
ADMIN_COMMANDS = {"admin", "daily"}  # the commands whose outcome depends on being a workspace admin
SORRY = Rejected("Sorry, something went wrong on our side; it has been logged. Please try again.", "Internal")
_SEND_ERRORS = (ResponseUrlError, aiohttp.ClientError, OSError, TimeoutError, ValueError)


@dataclass(frozen=True)
class Route:
    """Where to reach a player later without a fresh event: stored by the engine with the session."""

    response_url: str | None
    channel: str | None

    def encode(self) -> str:
        return json.dumps({"response_url": self.response_url, "channel": self.channel}, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | None) -> Route:
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        url, channel = data.get("response_url"), data.get("channel")
        return cls(url if isinstance(url, str) else None, channel if isinstance(channel, str) else None)


def _command_player(body: dict[str, Any]) -> Player:
    return Player(PLATFORM, body.get("team_id") or "", body["user_id"], body.get("user_name") or "")


def _action_player(body: dict[str, Any]) -> Player:
    user = body["user"]
    team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
    return Player(PLATFORM, team, user["id"], user.get("username") or user.get("name") or "")


class SlackQuiz:
    """The translator between bolt's listeners and the engine (one per app)."""

    def __init__(self, settings: Settings, engine: QuizEngine, client: AsyncWebClient) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.render = Renderer(engine.bank)
        self.daily = SlackDailyPoster(client, self.render)
        self.grants: UserGroupGrants | None = None
        if settings.slack_badge_usergroup_id:
            self.grants = UserGroupGrants(engine, client, settings.slack_badge_usergroup_id)
            engine.grant_platforms.add(PLATFORM)

    # -- listeners (bolt injects arguments by name) -----------------------------------------------

    async def on_command(self, body: dict[str, Any]) -> None:
        player = _command_player(body)
        route = Route(body.get("response_url"), body.get("channel_id"))
        try:
            text = unesc(body.get("text") or "")  # `<#C1|name>`, `<@U1>` and `<!here>` stay Slack tokens
            words = text.lower().split()
            is_admin = bool(words) and words[0] in ADMIN_COMMANDS and await self._is_admin(player)
            replies = await handle_text(self.engine, player, text, route=route.encode(), is_admin=is_admin,
                                        celebrate_default=self.settings.celebrate)
        except Exception:
            log.exception("%s %r failed for %s", COMMAND, body.get("text"), player.user)
            replies = [SORRY]
        await self.show(player, route, replies, replace=False)

    async def on_action(self, body: dict[str, Any]) -> None:
        player = _action_player(body)
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        route = Route(body.get("response_url"), channel)
        action_id = body["actions"][0]["action_id"]
        action = Action.decode(action_id)
        on_a_public_post = action is not None and action.kind == "d"  # the daily question: never replace it
        try:
            replies = await handle_action(self.engine, player, action_id,
                                          f"{player.tenant}.{player.user}.{action_id}", route=route.encode())
            if on_a_public_post or any(isinstance(r, Rejected) for r in replies):
                # a refusal, or feedback on the public daily post: a new private message, the clicked
                # message stays as it is
                await self.show(player, route, replies, replace=False)
                return
            if any(isinstance(r, Hint) or (isinstance(r, Feedback) and not r.final) for r in replies):
                replies = await self._with_current_question(player, route, replies)
        except Exception:
            log.exception("button %s failed for %s", action_id, player.user)
            await self.show(player, route, [SORRY], replace=False)
            return
        await self.show(player, route, replies, replace=True)

    async def on_home(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") != "home":  # the event also fires for the Messages tab
            return
        player = Player(PLATFORM, body.get("team_id") or "", event["user"])
        try:
            stats = next(r for r in await self.engine.stats(player) if isinstance(r, Stats))
            await self.client.views_publish(user_id=player.user, view=self.render.home(stats, help_reply()))
        except Exception:
            log.exception("publishing the App Home for %s failed", player.user)

    # -- the scheduler's hook ------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> None:
        """A time-out: replace the player's quiz message (or post a new one) with what the engine said."""
        await self.show(delivery.player, Route.decode(delivery.route), delivery.replies, replace=True)

    # -- showing replies -------------------------------------------------------------------------

    async def show(self, player: Player, route: Route, replies: Sequence[Reply], *, replace: bool) -> None:
        """Private replies as one ephemeral message; a badge also as a public celebration and a grant."""
        private = [r for r in replies if r.private or isinstance(r, BadgeAwarded)]
        if private and await self._send_private(player, route, self.render.message(private), replace=replace):
            # a question now shown in a message reached through this response_url: its time-out goes there
            for card in (r for r in private if isinstance(r, QuestionCard)):
                await self.engine.set_route(card.session_id, card.question_id, route.encode())
        for reply in replies:
            if reply.private:
                continue
            if isinstance(reply, BadgeAwarded):
                await self._celebrate(route, reply)
            else:
                await self._send_public(route, self.render.message([reply]))
        for reply in replies:
            if isinstance(reply, BadgeAwarded) and self.grants is not None and reply.player.platform == PLATFORM:
                await self.grants.grant(reply.player, reply.badge)

    async def _send_private(self, player: Player, route: Route, message: dict[str, Any], *, replace: bool) -> bool:
        """Ephemeral, through the response_url (replacing the quiz message if asked, else or failing that
        as a new message), and as a last resort chat.postEphemeral in the route's channel.

        True when the response_url took it (so later updates can go the same way)."""
        if route.response_url:
            for replacing in (True, False) if replace else (False,):
                body = {**message, "response_type": "ephemeral", "replace_original": replacing}
                try:
                    await post_to_response_url(route.response_url, body)
                    return True
                except _SEND_ERRORS as exc:
                    log.warning("response_url post (replace_original=%s) failed: %s", replacing, exc)
        if not route.channel:
            log.error("cannot reach %s: no working response_url and no channel", player.user)
            return False
        try:
            await self.client.chat_postEphemeral(channel=route.channel, user=player.user, **message)
        except SlackApiError as exc:
            log.error("chat.postEphemeral to %s failed: %s", player.user, exc.response.get("error"))
        return False

    async def _send_public(self, route: Route, message: dict[str, Any]) -> None:
        """In the channel: through the response_url (no scope or membership needed), else chat.postMessage."""
        if route.response_url:
            try:
                await post_to_response_url(route.response_url,
                                           {**message, "response_type": "in_channel", "replace_original": False})
                return
            except _SEND_ERRORS as exc:
                log.warning("in_channel response_url post failed (%s); trying chat.postMessage", exc)
        if not route.channel:
            return
        try:
            await self.client.chat_postMessage(channel=route.channel, **message)
        except SlackApiError as exc:
            log.error("chat.postMessage to %s failed: %s", route.channel, exc.response.get("error"))

    async def _celebrate(self, route: Route, badge: BadgeAwarded) -> None:
        if await self.engine.tenant_flag(PLATFORM, badge.player.tenant, "celebrate", self.settings.celebrate):
            await self._send_public(route, self.render.celebration(badge))

    async def _with_current_question(self, player: Player, route: Route, replies: Sequence[Reply]) -> list[Reply]:
        """After a hint or a wrong first try the question is still open: show it again, updated."""
        try:
            current = await self.engine.resume(player, route=route.encode())
        except errors.QuizError:
            return list(replies)
        # the refreshed card shows the hint itself, so the Hint reply is not repeated
        return [r for r in replies if not isinstance(r, Hint)] + current

    async def _is_admin(self, player: Player) -> bool:
        """Workspace admins and owners, per users.info (needs the users:read scope)."""
        try:
            user = (await self.client.users_info(user=player.user))["user"]
        except SlackApiError as exc:
            log.warning("users.info for %s failed (%s); treating them as not an admin (is users:read granted?)",
                        player.user, exc.response.get("error"))
            return False
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


class QuizApp(AsyncApp):
    """bolt's AsyncApp, plus the adapter it dispatches to (`quiz`), for the runner and tests."""

    quiz: SlackQuiz


async def _ack(ack) -> None:
    await ack()


class _QuietTokenWarning(logging.Filter):
    """bolt reads SLACK_BOT_TOKEN from the environment even when given a client built from it, then
    warns that the token "will be unused": true and harmless here, and alarming in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOG = logging.getLogger("slack_bolt")


def build_app(settings: Settings, engine: QuizEngine, *, scheduler: Scheduler | None = None,
              client: AsyncWebClient | None = None) -> QuizApp:
    """The one factory: a bolt AsyncApp wired to the engine (and to the scheduler for time-outs).

    `client` defaults to a Web API client for `settings.slack_bot_token`; tests pass one pointed at
    a fake Slack. Without a signing secret (Socket Mode) the app gets a random one, so any HTTP
    request that reaches it anyway fails verification.
    """
    if client is None:
        if not settings.slack_bot_token:
            raise ValueError("build_app needs SLACK_BOT_TOKEN (or a client)")
        client = make_client(settings.slack_bot_token)
    install_form_body_fix()
    if not any(isinstance(f, _QuietTokenWarning) for f in BOLT_LOG.filters):
        BOLT_LOG.addFilter(_QuietTokenWarning())
    app = QuizApp(client=client, signing_secret=settings.slack_signing_secret or secrets.token_hex(32),
                  process_before_response=False, logger=BOLT_LOG)
    quiz = SlackQuiz(settings, engine, client)
    app.quiz = quiz
    app.middleware(skip_event_retries)
    app.command(COMMAND)(ack=_ack, lazy=[quiz.on_command])
    app.action(ACTION_IDS)(ack=_ack, lazy=[quiz.on_action])
    app.event("app_home_opened")(quiz.on_home)
    if scheduler is not None:
        scheduler.register(PLATFORM, quiz.deliver)
        scheduler.register_daily(PLATFORM, quiz.daily)
    return app
