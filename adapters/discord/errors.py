"""Every Discord failure, classified in one place: `call()` is the only way the adapter talks to Discord.

discord.py raises HTTPException (and its Forbidden/NotFound/DiscordServerError), RateLimited,
aiohttp client errors, OSError and timeouts; a 5xx may come with an HTML page or nothing at all.
`classify` turns each into a bot.platform_errors `Transient` (retry later: 429, 5xx, empty or HTML
bodies, timeouts, dropped connections) or `Permanent` (a human must change something, or nobody
can: missing permission, unknown channel/role/message/guild, an interaction Discord already closed),
with a short `reason`, one line of `detail` and the `fix` an admin can apply, worded for the call
that failed (`Attempt`). `call` also bounds every call with a timeout, so a hanging Discord never
holds a player's feedback or the scheduler for long.

Nothing else in the adapter catches a discord.py exception: a Discord error never escapes it as
anything but these two classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import discord

from bot.platform_errors import Permanent, PlatformError, Transient

log = logging.getLogger(__name__)

T = TypeVar("T")

ACK_TIMEOUT = 2.5  # seconds: Discord wants the acknowledgement within 3 s of the click
CALL_TIMEOUT = 5.0  # seconds: any other call (discord.py's own 5xx retries included)

# Discord JSON error codes this bot meets, by name (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
UNKNOWN_CHANNEL, UNKNOWN_GUILD, UNKNOWN_MEMBER, UNKNOWN_MESSAGE = 10003, 10004, 10007, 10008
UNKNOWN_ROLE, UNKNOWN_WEBHOOK, UNKNOWN_INTERACTION = 10011, 10015, 10062
ALREADY_ACKNOWLEDGED, UNAUTHORIZED, MISSING_ACCESS, MISSING_PERMISSIONS, INVALID_FORM_BODY = (
    40060, 40001, 50001, 50013, 50035)

RETRY_ROLES = "then run /mldebt-admin retry-roles"
DAILY_SET = "/mldebt-admin daily set"


@dataclass(frozen=True)
class Attempt:
    """What the bot was doing when Discord failed, so the fix names the right channel or role.

    `what` completes "while trying to ...". `guild` and `role` let a refused role grant say
    whether the permission or the role order is the problem; `then` ends a channel permission's fix.
    """

    what: str
    channel_id: int | str | None = None
    role_name: str | None = None
    guild: discord.Guild | None = None
    role: discord.Role | None = None
    then: str = f"then run {DAILY_SET} again"  # what follows a channel permission's fix


def _channel(attempt: Attempt) -> str:
    return f"<#{attempt.channel_id}>" if attempt.channel_id else "that channel"


def _body(exc: discord.HTTPException) -> str:
    """How Discord's body looked: a JSON message, an HTML page, or nothing."""
    text = (exc.text or "").strip()
    if not text:
        return "an empty body"
    if text.startswith("<"):
        return "an HTML page"
    return f"\"{text[:120]}\""


def _retry_after(exc: discord.HTTPException) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for value in (headers.get("Retry-After"), headers.get("X-RateLimit-Reset-After")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except ValueError:
            continue
    try:  # discord.py keeps only the message of a JSON body; a 429 also carries retry_after in it
        data = json.loads(exc.text) if exc.text and exc.text.startswith("{") else {}
        return float(data["retry_after"]) if "retry_after" in data else None
    except (ValueError, TypeError):
        return None


def _role_refused(attempt: Attempt, exc: discord.HTTPException) -> Permanent:
    guild, role = attempt.guild, attempt.role
    me = guild.me if guild is not None else None
    name = attempt.role_name or (role.name if role is not None else "the badge role")
    if me is not None and not me.guild_permissions.manage_roles:
        return Permanent("missing_permission", "The bot lacks the Manage Roles permission.",
                         f"Server Settings > Roles > {me.top_role.name}: turn on Manage Roles, {RETRY_ROLES}.",
                         scope="target")
    if me is not None and role is not None and role >= me.top_role:
        return Permanent("role_above_bot", f"The role \"{role.name}\" is not below the bot's highest role "
                                           f"\"{me.top_role.name}\".",
                         f"Server Settings > Roles: drag \"{me.top_role.name}\" above \"{role.name}\", {RETRY_ROLES}.",
                         scope="target")
    return Permanent("missing_permission", f"Discord refused to grant \"{name}\" ({exc.status}, code {exc.code}: "
                                           f"{exc.text}).",
                     f"Give mldebt the Manage Roles permission and move its role above \"{name}\", {RETRY_ROLES}.",
                     scope="target")


def _http(exc: discord.HTTPException, attempt: Attempt) -> PlatformError:
    status, code = exc.status, exc.code
    while_ = f"while trying to {attempt.what}"
    if status == 429:
        retry = _retry_after(exc)
        wait = f"; retry after {retry:g} s" if retry is not None else ""
        return Transient("rate_limited", f"Discord rate-limited the bot {while_}{wait}.", retry_after=retry)
    if status >= 500:
        return Transient(f"http_{status}", f"Discord answered {status} with {_body(exc)} {while_}.")
    if code in (UNKNOWN_INTERACTION, UNKNOWN_WEBHOOK):
        return Permanent("interaction_expired", f"Discord had already closed the interaction {while_} (3 s to "
                                                "acknowledge, 15 minutes to follow up).")
    if code == ALREADY_ACKNOWLEDGED:
        return Permanent("already_acknowledged", f"The interaction was already acknowledged {while_}.")
    if code == UNKNOWN_MESSAGE:
        return Permanent("message_not_found", f"The message was deleted {while_}.")
    if code == UNKNOWN_CHANNEL:
        return Permanent("channel_not_found", f"The channel {_channel(attempt)} no longer exists {while_}.",
                         f"Pick another channel with {DAILY_SET}.", scope="target", gone=True)
    if code == UNKNOWN_ROLE:
        name = attempt.role_name or "the badge role"
        return Permanent("role_not_found", f"The role \"{name}\" was deleted {while_}.",
                         f"Nothing to re-create by hand: mldebt creates \"{name}\" again, {RETRY_ROLES}.",
                         scope="target", gone=True)
    if code == UNKNOWN_GUILD:
        return Permanent("guild_not_found", f"mldebt is no longer in this server {while_}.",
                         "Add mldebt to the server again (the link from `mldebt discord invite-url`).",
                         scope="tenant", gone=True)
    if code == UNKNOWN_MEMBER:
        return Permanent("member_not_found", "The player is no longer a member of this server; the role is "
                                             "granted if they come back and an admin retries.")
    if status == 401 or code == UNAUTHORIZED:
        return Permanent("unauthorized", f"Discord rejected the bot token {while_}.",
                         "Reset the token in the Developer Portal (Bot > Reset Token) and update DISCORD_TOKEN.",
                         scope="tenant")
    if status == 403 or code in (MISSING_PERMISSIONS, MISSING_ACCESS):
        if attempt.role_name is not None or attempt.role is not None:
            return _role_refused(attempt, exc)
        if code == MISSING_ACCESS:
            return Permanent("missing_access", f"mldebt cannot see {_channel(attempt)} {while_}.",
                             f"Give mldebt View Channel in {_channel(attempt)}, or pick another channel with "
                             f"{DAILY_SET}.", scope="target")
        return Permanent("missing_permission", f"mldebt lacks a permission in {_channel(attempt)} {while_}.",
                         f"Give mldebt View Channel, Send Messages and Embed Links in {_channel(attempt)} "
                         f"(the channel's Permissions tab), {attempt.then}.", scope="target")
    if code == INVALID_FORM_BODY or status == 400:
        return Permanent("invalid_request", f"Discord rejected the request as malformed {while_} "
                                            f"(code {code}: {exc.text[:200]}).",
                         "A bug in mldebt: report it with this line.")
    return Permanent(f"http_{status}", f"Discord answered {status} (code {code}: {exc.text[:200]}) {while_}.")


def classify(exc: BaseException, attempt: Attempt) -> PlatformError:
    """The class of one failed Discord call. Anything unexpected is a bug, not Discord's: re-raise it."""
    if isinstance(exc, PlatformError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return Transient("rate_limited", f"Discord rate-limited the bot while trying to {attempt.what}; retry "
                                         f"after {exc.retry_after:g} s.", retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        return _http(exc, attempt)
    if isinstance(exc, TimeoutError):
        return Transient("timeout", f"Discord did not answer in time while trying to {attempt.what}.")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Transient("connection_error", f"The connection to Discord failed while trying to {attempt.what} "
                                             f"({type(exc).__name__}).")
    raise TypeError(f"not a Discord failure: {exc!r}") from exc


DISCORD_FAILURES = (discord.HTTPException, discord.RateLimited, aiohttp.ClientError, TimeoutError, OSError)


async def call(awaitable: Awaitable[T], attempt: Attempt, *, limit: float = CALL_TIMEOUT) -> T:
    """Await one Discord call within `limit` seconds; raise only Transient or Permanent for Discord failures."""
    try:
        async with asyncio.timeout(limit):
            return await awaitable
    except DISCORD_FAILURES as exc:
        raise classify(exc, attempt) from exc


def describe(error: PlatformError) -> str:
    """The stored reason an admin reads: what happened, then the fix."""
    return f"{error.detail} Fix: {error.fix}" if error.fix else error.detail
