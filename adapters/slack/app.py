"""The Slack adapter: slash command, button clicks and App Home -> engine calls; replies -> Block Kit.

It holds no quiz rules: text goes to `bot.commands.handle_text`, clicks to `handle_action`, and
whatever comes back is rendered (blocks.py). Every listener acks at once with an empty body; the
work waits in one bounded queue behind the acks (work.py), so Slack gets its answer first.

How a quiz looks: the command's answer is an ephemeral message posted to the command's
response_url. A click replaces that message through the click's response_url: the answered
question loses its buttons and shows the result and explanation, followed by the next question
(or the summary). Replacing, not appending, also makes a redelivered or double click harmless:
the engine replays the same feedback and the message is replaced with the same content.

Idempotency key of a click: team, user and the button's action id (which names the session, the
question and the choice). A second click on the same button, or the same payload delivered twice,
is the same answer; a different choice is a new attempt. A slash command is run once per
trigger_id, an event once per event_id (both stored in the database).

Time-outs, badge celebrations, user-group grants and daily posts are outbox entries (bot/outbox.py)
that this adapter's senders deliver: a time-out uses the route stored with the session (the latest
response_url and the channel); if the response_url no longer works, chat.postEphemeral instead.
Every Slack failure is classified (errors.py); none escapes as an exception. Daily questions are public channel posts (daily.py); a click on
one gets private feedback in a new message and leaves the post alone.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import errors
from bot.commands import Action, handle_action, handle_text, help_reply
from bot.config import Settings
from bot.engine import QuizEngine
from bot.outbox import OutboxEntry, loads
from bot.platform_errors import Permanent, PlatformError
from bot.replies import BadgeAwarded, Feedback, Hint, Player, QuestionCard, Rejected, Reply, Stats
from bot.scheduler import Scheduler, delivery_of

from .blocks import Renderer
from .bolt_fixes import install_form_body_fix
from .daily import SlackDailyPoster
from .errors import REINSTALL, slack_call
from .grants import UserGroupGrants
from .inbound import shape_problem
from .mrkdwn import unesc
from .oauth import (
    InstalledWorkspaces,
    OneWorkspace,
    SqlInstallationStore,
    SqlOAuthStateStore,
    WorkspaceClients,
    cipher_for,
    oauth_settings,
    redact_tokens_in_logs,
)
from .pacing import POST, Pacer
from .web import make_client, post_to_response_url
from .work import WorkQueue

log = logging.getLogger(__name__)

PLATFORM = "slack"
COMMAND = "/mldebt"
ACTION_IDS = re.compile(r"^mldebt:")
ADMIN_COMMANDS = {"admin", "daily"}  # the commands whose outcome depends on being a workspace admin
SORRY = Rejected("Sorry, something went wrong on our side; it has been logged. Please try again.", "Internal")
BUSY = ":hourglass: mldebt is very busy right now and could not take that; please try again in a minute."
LIFECYCLE_EVENTS = ("app_uninstalled", "tokens_revoked")


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

    def __init__(self, settings: Settings, engine: QuizEngine, client: AsyncWebClient, scheduler: Scheduler,
                 clients: WorkspaceClients | None = None, installations: SqlInstallationStore | None = None) -> None:
        """`client` is the app's own (SLACK_BOT_TOKEN's, or in OAuth mode one without a token); `clients`
        gives deliveries the client of their workspace (default: `client` for every workspace)."""
        self.settings = settings
        self.engine = engine
        self.clients = clients or OneWorkspace(client)
        self.installations = installations  # OAuth mode: the workspaces' installs
        self.outbox = scheduler.outbox
        self.render = Renderer(engine.bank)
        self.daily = SlackDailyPoster(
            client, self.render, pacer=Pacer({POST: settings.slack_post_rate} if settings.slack_post_rate else None),
            client_for=None if isinstance(self.clients, OneWorkspace) else self.clients.client)
        self.grants: UserGroupGrants | None = None
        # the workspace (and enterprise) this app is installed in, from bolt's auth.test
        self.installed: tuple[str | None, str | None] | None = None
        self._maybe_paused = True  # until the first valid request has resumed a tenant paused earlier
        # OAuth mode: workspaces whose install bolt's authorize found in this process (web.py acknowledges
        # their requests first); an uninstall seen here drops its workspace. One uninstalled through another
        # replica stays until this process restarts: its requests are then acknowledged and bolt, behind the
        # ack, refuses them as it would have inline (Slack stops sending them with the uninstall anyway).
        self.known_teams: set[str] = set()
        scheduler.deliver(PLATFORM, "timeout", self.send_timeout)
        scheduler.deliver(PLATFORM, "celebration", self.send_celebration)
        scheduler.register_daily(PLATFORM, self.daily)
        if settings.slack_badge_usergroup_id:
            self.grants = UserGroupGrants(self.clients, settings.slack_badge_usergroup_id, engine.store)
            engine.grant_platforms.add(PLATFORM)
            scheduler.deliver(PLATFORM, "grant", self.grants.send)
        engine.channel_probes[PLATFORM] = self.probe

    # -- middleware: tenancy, payload shape, lifecycle -------------------------------------------

    async def gate(self, req: AsyncBoltRequest, resp: BoltResponse,
                   next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        """Global middleware (after bolt verified the signature): refuse what this app must not serve.

        A signed payload of a shape the listeners do not handle is acknowledged and ignored; a
        request for another workspace or enterprise is refused with nothing written."""
        body = req.body
        problem = shape_problem(body)
        if problem is not None:
            log.warning("ignored a signed Slack request: %s", problem)
            return BoltResponse(status=200, body="")
        event = body.get("event") or {}
        if body.get("type") == "event_callback" and event.get("type") in LIFECYCLE_EVENTS:
            return await next()  # signed by Slack for this app: its team is the one that uninstalled
        if self.installations is not None:  # OAuth mode: bolt's authorize refused every workspace without an install
            result = req.context.authorize_result
            if result is not None and result.team_id:
                self.known_teams.add(result.team_id)  # its next requests are acknowledged before bolt runs
            return await next()
        result = req.context.authorize_result
        if result is not None:
            self.installed = (result.team_id, result.enterprise_id)
        if self.installed is not None:
            team = req.context.team_id
            enterprise = req.context.enterprise_id
            if (team and self.installed[0] and team != self.installed[0]) or \
                    (enterprise and self.installed[1] and enterprise != self.installed[1]):
                log.warning("refused a Slack request for workspace %s (installed in %s)", str(team)[:20],
                            self.installed[0])
                return BoltResponse(status=403, body="This app is not installed in that workspace.")
            if self._maybe_paused and self.installed[0]:
                self._maybe_paused = False
                if await self.engine.tenant_restored(PLATFORM, self.installed[0]):
                    log.info("Slack workspace %s is back: its deliveries resume", self.installed[0])
        return await next()

    async def on_lifecycle(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """app_uninstalled / tokens_revoked: pause the workspace's schedules and deliveries."""
        team = body.get("team_id") or ""
        if not await self.engine.first_sight(PLATFORM, f"event:{body.get('event_id')}"):
            return
        if event.get("type") == "tokens_revoked" and not ((event.get("tokens") or {}).get("bot")):
            return  # only user tokens were revoked; the bot's still works
        self._maybe_paused = True
        self.known_teams.discard(team)
        if self.installations is not None:
            removed = await self.installations.delete(team)
            self.clients.forget(team)
            log.info("Slack: workspace %s %s; %d install(s) deleted", team, event.get("type"), removed)
        await self.engine.tenant_removed(PLATFORM, team, "app_uninstalled" if event.get("type") == "app_uninstalled"
                                         else "tokens_revoked", REINSTALL)

    # -- listeners (bolt injects arguments by name) -----------------------------------------------

    async def installed_in(self, team: str) -> None:
        """A workspace installed the app (again): its new token from now on, its paused deliveries resume."""
        self.clients.forget(team)
        if await self.engine.tenant_restored(PLATFORM, team):
            log.info("Slack workspace %s is back: its deliveries resume", team)

    async def on_command(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        player = _command_player(body)
        route = Route(body.get("response_url"), body.get("channel_id"))
        trigger = body.get("trigger_id")
        if trigger and not await self.engine.first_sight(PLATFORM, f"trigger:{trigger}"):
            log.info("%s from %s delivered again (trigger %s); answered the first time", COMMAND, player.user,
                     str(trigger)[:40])
            return
        try:
            text = unesc(body.get("text") or "")  # `<#C1|name>`, `<@U1>` and `<!here>` stay Slack tokens
            words = text.lower().split()
            is_admin = bool(words) and words[0] in ADMIN_COMMANDS and await self._is_admin(player, client)
            replies = await handle_text(self.engine, player, text, route=route.encode(), is_admin=is_admin,
                                        celebrate_default=self.settings.celebrate)
        except Exception:
            log.exception("%s %r failed for %s", COMMAND, body.get("text"), player.user)
            replies = [SORRY]
        await self.show(player, route, replies, replace=False, client=client)

    async def on_action(self, body: dict[str, Any], client: AsyncWebClient) -> None:
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
                await self.show(player, route, replies, replace=False, client=client)
                return
            if any(isinstance(r, Hint) or (isinstance(r, Feedback) and not r.final) for r in replies):
                replies = await self._with_current_question(player, route, replies)
        except Exception:
            log.exception("button %s failed for %s", action_id, player.user)
            await self.show(player, route, [SORRY], replace=False, client=client)
            return
        await self.show(player, route, replies, replace=True, client=client)

    async def on_home(self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home" or not isinstance(event.get("user"), str):
            return  # the event also fires for the Messages tab
        if not await self.engine.first_sight(PLATFORM, f"event:{body.get('event_id')}"):
            return  # a redelivery of an event already handled
        player = Player(PLATFORM, body.get("team_id") or "", event["user"])
        try:
            stats = next(r for r in await self.engine.stats(player) if isinstance(r, Stats))
            await slack_call(client.views_publish(user_id=player.user, view=self.render.home(stats, help_reply())),
                             what="views.publish")
        except PlatformError as exc:
            log.warning("publishing the App Home for %s failed: %s", player.user, exc)

    async def busy(self, request: AsyncBoltRequest) -> None:
        """The work queue is full: tell the user instead of dropping their request silently."""
        url = request.context.response_url
        if url:
            try:
                await post_to_response_url(url, {"text": BUSY, "response_type": "ephemeral",
                                                 "replace_original": False})
            except PlatformError as exc:
                log.info("could not tell a user the bot is busy: %s", exc.reason)

    # -- outbox senders (the worker calls these; they raise only PlatformError) ----------------------

    async def send_timeout(self, entry: OutboxEntry) -> None:
        """A time-out: replace the player's quiz message (or post a new one) with what the engine said."""
        delivery = delivery_of(entry)
        route = Route.decode(delivery.route)
        private = [r for r in delivery.replies if r.private]
        client = await self.clients.client(delivery.player.tenant)
        if await self._send_private(delivery.player, route, self.render.message(private), replace=True,
                                    client=client):
            for card in (r for r in private if isinstance(r, QuestionCard)):
                await self.engine.set_route(card.session_id, card.question_id, route.encode())

    async def send_celebration(self, entry: OutboxEntry) -> str | None:
        data = loads(entry.payload)
        badge: BadgeAwarded = data["badge"]
        if not await self.engine.tenant_flag(PLATFORM, badge.player.tenant, "celebrate", self.settings.celebrate):
            return "off"
        await self._send_public(Route.decode(data["route"]), self.render.celebration(badge),
                                client=await self.clients.client(badge.player.tenant))
        return None

    async def probe(self, tenant: str, channel: str) -> None:
        """Can the bot post in `channel`? conversations.info: it exists, is not archived, the bot is in it."""
        client = await self.clients.client(tenant)
        info = await slack_call(client.conversations_info(channel=channel), channel=channel,
                                what="checking the channel")
        data = info.get("channel") or {}
        if data.get("is_archived"):
            raise Permanent("is_archived", f"<#{channel}> is archived", f"Unarchive <#{channel}> or choose another "
                            "channel.", scope="target", gone=True)
        if not data.get("is_member", False):
            raise Permanent("not_in_channel", "the bot is not a member of the channel",
                            f"Invite the bot to <#{channel}>: type /invite @mldebt there, then `daily set` again.",
                            scope="target")

    # -- showing replies -------------------------------------------------------------------------

    async def show(self, player: Player, route: Route, replies: Sequence[Reply], *, replace: bool,
                   client: AsyncWebClient) -> None:
        """Private replies as one ephemeral message; public ones in the channel. A badge's celebration and
        grant were written to the outbox with the badge: delivered here at once, through the worker."""
        private = [r for r in replies if r.private or isinstance(r, BadgeAwarded)]
        if private:
            try:
                took = await self._send_private(player, route, self.render.message(private), replace=replace,
                                                client=client)
            except PlatformError as exc:
                log.warning("could not show %s their reply: %s", player.user, exc)
                took = False
            if took:  # a question now shown in a message reached through this response_url: its time-out goes there
                for card in (r for r in private if isinstance(r, QuestionCard)):
                    await self.engine.set_route(card.session_id, card.question_id, route.encode())
        for reply in replies:
            if reply.private or isinstance(reply, BadgeAwarded):
                continue
            try:
                await self._send_public(route, self.render.message([reply]), client=client)
            except PlatformError as exc:
                log.warning("could not post a public reply for %s: %s", player.user, exc)
        if any(isinstance(r, BadgeAwarded) for r in replies):
            await self.outbox.run_once(kinds=("celebration", "grant"))

    async def _send_private(self, player: Player, route: Route, message: dict[str, Any], *, replace: bool,
                            client: AsyncWebClient) -> bool:
        """Ephemeral, through the response_url (replacing the quiz message if asked, else or failing that
        as a new message), and as a last resort chat.postEphemeral in the route's channel.

        True when the response_url took it (so later updates can go the same way); raises a
        PlatformError when nothing reached the player."""
        failure: PlatformError | None = None
        if route.response_url:
            for replacing in (True, False) if replace else (False,):
                body = {**message, "response_type": "ephemeral", "replace_original": replacing}
                try:
                    await post_to_response_url(route.response_url, body)
                    return True
                except PlatformError as exc:
                    failure = exc
                    log.warning("response_url post (replace_original=%s) failed: %s", replacing, exc.reason)
        if not route.channel:
            raise failure or Permanent("no_route", "no response_url or channel to reach the player")
        await slack_call(client.chat_postEphemeral(channel=route.channel, user=player.user, **message),
                         channel=route.channel, what="chat.postEphemeral")
        return False

    async def _send_public(self, route: Route, message: dict[str, Any], *, client: AsyncWebClient) -> None:
        """In the channel: through the response_url (no scope or membership needed), else chat.postMessage."""
        failure: PlatformError | None = None
        if route.response_url:
            try:
                await post_to_response_url(route.response_url,
                                           {**message, "response_type": "in_channel", "replace_original": False})
                return
            except PlatformError as exc:
                failure = exc
                log.warning("in_channel response_url post failed (%s); trying chat.postMessage", exc.reason)
        if not route.channel:
            raise failure or Permanent("no_route", "no response_url or channel to post in")
        await slack_call(client.chat_postMessage(channel=route.channel, **message), channel=route.channel,
                         what="chat.postMessage")

    async def _with_current_question(self, player: Player, route: Route, replies: Sequence[Reply]) -> list[Reply]:
        """After a hint or a wrong first try the question is still open: show it again, updated."""
        try:
            current = await self.engine.resume(player, route=route.encode())
        except errors.QuizError:
            return list(replies)
        # the refreshed card shows the hint itself, so the Hint reply is not repeated
        return [r for r in replies if not isinstance(r, Hint)] + current

    async def _is_admin(self, player: Player, client: AsyncWebClient) -> bool:
        """Workspace admins and owners, per users.info (needs the users:read scope). Only for a user of the
        installed workspace: this workspace's token is never used to ask about another's user."""
        if self.installed is not None and self.installed[0] and player.tenant != self.installed[0]:
            return False
        try:
            user = (await slack_call(client.users_info(user=player.user), what="users.info"))["user"]
        except PlatformError as exc:
            log.warning("users.info for %s failed (%s); treating them as not an admin (is users:read granted?)",
                        player.user, exc.reason)
            return False
        home = self.installed[0] if self.installed is not None and self.installed[0] else player.tenant
        if user.get("team_id") not in (None, home):
            return False
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


class QuizApp(AsyncApp):
    """bolt's AsyncApp, plus the adapter it dispatches to (`quiz`) and its work queue, for the runner and tests."""

    quiz: SlackQuiz
    work: WorkQueue


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
    """The one factory: a bolt AsyncApp wired to the engine and to the scheduler's outbox worker.

    `client` defaults to a Web API client for `settings.slack_bot_token`; tests pass one pointed at
    a fake Slack. Without a signing secret (Socket Mode) the app gets a random one, so any HTTP
    request that reaches it anyway fails verification. Without a scheduler (tests, tools) the app
    gets one of its own that is never started: its outbox worker still delivers a badge's
    celebration and grant right after the answer that earned it.

    In OAuth mode (settings.slack_oauth) `client` carries no token: bolt authorizes each request
    with its workspace's install and hands the listeners a client with that token; deliveries get
    theirs from the installs (oauth.py). Raises TokenKeyError for a missing or bad MLDEBT_TOKEN_KEY.
    """
    if client is None:
        if not settings.slack_bot_token and not settings.slack_oauth:
            raise ValueError("build_app needs SLACK_BOT_TOKEN (or a client)")
        client = make_client(settings.slack_bot_token)
    install_form_body_fix()
    if not any(isinstance(f, _QuietTokenWarning) for f in BOLT_LOG.filters):
        BOLT_LOG.addFilter(_QuietTokenWarning())
    # process_before_response: bolt runs the (empty) ack listener inline and returns the 200 at once;
    # with False it would start a task per ack and poll it every 10 ms. The work is queued either way.
    signing_secret = settings.slack_signing_secret or secrets.token_hex(32)
    scheduler = scheduler or Scheduler(engine, engine.clock)
    if settings.slack_oauth:
        redact_tokens_in_logs()
        installations = SqlInstallationStore(engine.store, engine.clock, cipher_for(settings))
        oauth = oauth_settings(settings, installations, SqlOAuthStateStore(engine.store, engine.clock), BOLT_LOG)
        app = QuizApp(client=client, signing_secret=signing_secret, process_before_response=True, logger=BOLT_LOG,
                      oauth_settings=oauth)
        quiz = SlackQuiz(settings, engine, client, scheduler, InstalledWorkspaces(installations, client),
                         installations)
        installations.on_saved = quiz.installed_in
    else:
        app = QuizApp(client=client, signing_secret=signing_secret, process_before_response=True, logger=BOLT_LOG)
        quiz = SlackQuiz(settings, engine, client, scheduler)
    app.quiz = quiz
    app.work = WorkQueue(BOLT_LOG, on_full=quiz.busy)
    app.listener_runner.lazy_listener_runner = app.work
    app.middleware(quiz.gate)
    app.command(COMMAND)(ack=_ack, lazy=[quiz.on_command])
    app.action(ACTION_IDS)(ack=_ack, lazy=[quiz.on_action])
    app.event("app_home_opened")(ack=_ack, lazy=[quiz.on_home])
    for name in LIFECYCLE_EVENTS:
        app.event(name)(ack=_ack, lazy=[quiz.on_lifecycle])
    return app
