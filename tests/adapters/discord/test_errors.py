"""adapters/discord/errors.py: each discord.py failure maps to one class, reason and fix (no I/O)."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import pytest

from adapters.discord.errors import Attempt, call, classify, describe
from bot.platform_errors import Permanent, Transient


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status, self.reason, self.headers = status, "x", headers or {}


def http(status: int, code: int = 0, message: str = "", cls: type = discord.HTTPException, **headers: str):
    body = {"message": message, "code": code} if code or message else message
    return cls(_Response(status, headers), body)


POST = Attempt("post the daily question", channel_id=42)


@pytest.mark.parametrize(("exc", "cls", "reason", "scope"), [
    (http(403, 50013, "Missing Permissions", discord.Forbidden), Permanent, "missing_permission", "target"),
    (http(403, 50001, "Missing Access", discord.Forbidden), Permanent, "missing_access", "target"),
    (http(404, 10003, "Unknown Channel", discord.NotFound), Permanent, "channel_not_found", "target"),
    (http(404, 10011, "Unknown Role", discord.NotFound), Permanent, "role_not_found", "target"),
    (http(404, 10008, "Unknown Message", discord.NotFound), Permanent, "message_not_found", "entry"),
    (http(404, 10004, "Unknown Guild", discord.NotFound), Permanent, "guild_not_found", "tenant"),
    (http(404, 10062, "Unknown interaction", discord.NotFound), Permanent, "interaction_expired", "entry"),
    (http(404, 10015, "Unknown Webhook", discord.NotFound), Permanent, "interaction_expired", "entry"),
    (http(400, 40060, "Interaction has already been acknowledged."), Permanent, "already_acknowledged", "entry"),
    (http(400, 50035, "Invalid Form Body"), Permanent, "invalid_request", "entry"),
    (http(401, 0, "401: Unauthorized"), Permanent, "unauthorized", "tenant"),
    (http(404, 10007, "Unknown Member", discord.NotFound), Permanent, "member_not_found", "entry"),
    (http(429, 0, "You are being rate limited.", **{"Retry-After": "1.5"}), Transient, "rate_limited", None),
    (http(502, 0, "<html><h1>502 Bad Gateway</h1></html>", discord.DiscordServerError), Transient, "http_502", None),
    (http(500, 0, "", discord.DiscordServerError), Transient, "http_500", None),
    (discord.RateLimited(12.0), Transient, "rate_limited", None),
    (TimeoutError(), Transient, "timeout", None),
    (aiohttp.ServerTimeoutError("read timeout"), Transient, "timeout", None),
    (aiohttp.ClientConnectionError("reset"), Transient, "connection_error", None),
    (aiohttp.ServerDisconnectedError(), Transient, "connection_error", None),
    (ConnectionResetError(104, "reset"), Transient, "connection_error", None),
])
def test_every_failure_has_a_class(exc, cls, reason, scope):
    error = classify(exc, POST)
    assert type(error) is cls and error.reason == reason
    if scope is not None:
        assert error.scope == scope
    assert error.detail and "\n" not in error.detail


def test_the_details_and_fixes_an_admin_reads():
    html = classify(http(503, 0, "<html>oops</html>", discord.DiscordServerError), POST)
    assert html.detail == "Discord answered 503 with an HTML page while trying to post the daily question."
    empty = classify(http(502, 0, "", discord.DiscordServerError), POST)
    assert "with an empty body" in empty.detail
    limited = classify(http(429, 0, "slow down", **{"Retry-After": "2.5"}), POST)
    assert limited.retry_after == 2.5
    gone = classify(http(404, 10003, "Unknown Channel", discord.NotFound), POST)
    assert describe(gone) == ("The channel <#42> no longer exists while trying to post the daily question. Fix: "
                              "Pick another channel with /mldebt-admin daily set.")
    assert gone.gone
    role = classify(http(403, 50013, "Missing Permissions", discord.Forbidden),
                    Attempt("grant the role", role_name="Technical Debt Mastery"))
    assert role.fix == ("Give mldebt the Manage Roles permission and move its role above \"Technical Debt Mastery\", "
                        "then run /mldebt-admin retry-roles.")
    guild = classify(http(404, 10004, "Unknown Guild", discord.NotFound), POST)
    assert guild.fix == "Add mldebt to the server again (the link from `mldebt discord invite-url`)."


def test_a_bug_is_not_a_discord_failure():
    with pytest.raises(TypeError, match="not a Discord failure"):
        classify(KeyError("x"), POST)


async def test_call_bounds_and_classifies():
    async def hang():
        await asyncio.Event().wait()

    async def refuse():
        raise http(403, 50013, "Missing Permissions", discord.Forbidden)

    with pytest.raises(Transient) as slow:
        await call(hang(), POST, limit=0.001)
    assert slow.value.reason == "timeout"
    with pytest.raises(Permanent) as refused:
        await call(refuse(), POST)
    assert refused.value.reason == "missing_permission" and isinstance(refused.value.__cause__, discord.Forbidden)
    with pytest.raises(ZeroDivisionError):  # a bug in the bot is not classified away
        await call(_bug(), POST)


async def _bug():
    return 1 / 0
