"""The one place that classifies every Slack outbound failure (see bot/platform_errors.py).

slack_sdk raises `SlackApiError` for an `{"ok": false}` answer, but also for a non-JSON body (an HTML
502 page), and then its `response` is aiohttp's raw response, whose `.get` does not exist; a
text/plain 5xx even fails inside slack_sdk with an AttributeError. Timeouts and refused connections
arrive as asyncio/aiohttp/OS errors. `classify` turns any of them into a Transient or a Permanent
with a stable reason and the fix an admin should make; `slack_call` wraps one Web API call so
nothing else escapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.platform_errors import Permanent, PlatformError, Transient

T = TypeVar("T")

REINSTALL = "Reinstall the app to the workspace (api.slack.com/apps > your app > Install App)."
# error code -> (scope, gone, fix); a fix may name {channel}
PERMANENT: dict[str, tuple[str, bool, str | None]] = {
    "account_inactive": ("tenant", False, REINSTALL),
    "token_revoked": ("tenant", False, REINSTALL),
    "token_expired": ("tenant", False, REINSTALL),
    "invalid_auth": ("tenant", False, "Check SLACK_BOT_TOKEN, then " + REINSTALL[0].lower() + REINSTALL[1:]),
    "not_authed": ("tenant", False, "Set SLACK_BOT_TOKEN."),
    "team_access_not_granted": ("tenant", False, REINSTALL),
    "org_login_required": ("tenant", False, REINSTALL),
    "ekm_access_denied": ("tenant", False, "An admin of the workspace's key management blocked the app."),
    "missing_scope": ("target", False, "Add the scope {needed} (api.slack.com/apps > OAuth & Permissions), "
                                       "reinstall the app, then run `/mldebt admin retry`."),
    "not_in_channel": ("target", False, "Invite the bot to {channel}: type /invite @mldebt there."),
    "channel_not_found": ("target", True, "The channel {channel} is gone or the bot cannot see it: choose "
                                          "another with `daily set`, or invite the bot."),
    "is_archived": ("target", True, "Unarchive {channel}, or choose another channel with `daily set`."),
    "restricted_action": ("target", False, "A workspace setting stops apps posting in {channel}; an admin can "
                                           "allow it (Settings > Permissions), or choose another channel."),
    "restricted_action_read_only_channel": ("target", False, "{channel} is read-only; choose another channel."),
    "restricted_action_thread_only_channel": ("target", False, "{channel} only allows threads; choose another "
                                                               "channel."),
    "permission_denied": ("target", False, "Let apps change user groups (a paid plan; Settings > Permissions "
                                           "> User Groups), then run `/mldebt admin retry`."),
    "no_such_subteam": ("target", True, "The user group SLACK_BADGE_USERGROUP_ID does not exist: create it and "
                                        "set its id."),
    "subteam_max_users_exceeded": ("target", False, "The badge user group is full; use a new one."),
    "message_not_found": ("entry", False, None),
    "cant_update_message": ("entry", False, None),
    "user_not_found": ("entry", False, None),
    "user_not_in_channel": ("entry", False, None),
    "expired_url": ("entry", False, None),
    "used_url": ("entry", False, None),
    "no_such_url": ("entry", False, None),
    "msg_too_long": ("entry", False, None),
    "invalid_blocks": ("entry", False, None),
    "no_text": ("entry", False, None),
}
TRANSIENT_CODES = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                   "request_timeout", "timeout"}


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return max(1.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _response_fields(exc: SlackApiError) -> tuple[int | None, dict[str, Any], Any]:
    """(HTTP status, JSON body as a dict or {}, headers), whatever kind of response slack_sdk attached."""
    resp = exc.response
    status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
    data = getattr(resp, "data", None)
    return status, data if isinstance(data, dict) else {}, getattr(resp, "headers", None)


def classify(exc: BaseException, *, channel: str | None = None, what: str = "Slack call") -> PlatformError:
    """Any exception from a Slack call -> Transient or Permanent (see the module docstring)."""
    if isinstance(exc, PlatformError):
        return exc
    where = f"<#{channel}>" if channel else "the channel"
    if isinstance(exc, SlackApiError):
        status, data, headers = _response_fields(exc)
        code = data.get("error") if isinstance(data.get("error"), str) else None
        if status == 429 or code in ("ratelimited", "rate_limited"):
            return Transient("ratelimited", f"{what}: Slack rate limit", retry_after=_retry_after(headers))
        if code is None:  # an HTML error page, an empty or non-JSON body
            return Transient(f"http_{status or 'error'}", f"{what}: Slack answered HTTP {status} without JSON")
        if code in TRANSIENT_CODES or (status is not None and status >= 500):
            return Transient(code, f"{what}: Slack error {code}")
        scope, gone, fix = PERMANENT.get(code, ("entry", False, None))
        needed = data.get("needed") or "the app needs"
        return Permanent(code, f"{what}: Slack refused with {code}", fix.format(channel=where, needed=needed)
                         if fix else None, scope=scope, gone=gone)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Transient("timeout", f"{what}: no answer from Slack in time")
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 429:
            return Transient("ratelimited", f"{what}: Slack rate limit", retry_after=_retry_after(exc.headers))
        return Transient(f"http_{exc.status}", f"{what}: HTTP {exc.status}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Transient("connection_error", f"{what}: {type(exc).__name__}")
    # slack_sdk itself fails on some bodies (a text/plain 5xx: AttributeError in its validate())
    return Transient("bad_response", f"{what}: {type(exc).__name__}: {str(exc)[:120]}")


async def slack_call(call: Awaitable[T], *, channel: str | None = None, what: str = "Slack call") -> T:
    """Await one Slack call; any failure comes out as a classified PlatformError."""
    try:
        return await call
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise classify(exc, channel=channel, what=what) from exc
