"""Slack's text conventions: escaping user and bank text, date tokens, Block Kit size limits.

Slack reads `&`, `<` and `>` in `text` and mrkdwn fields as markup (`<!channel>`, `<@U1>`,
`<url|label>`), so every piece of text we did not build on purpose goes through `esc`. slack_sdk
has no helper for this. Nothing else is HTML-escaped: Slack would show `&#x27;` literally.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SECTION_LIMIT = 3000  # characters in a section's text
BUTTON_LIMIT = 75  # characters in a button's label
FALLBACK_LIMIT = 3000  # characters we put in a message's top-level `text`


def esc(text: str) -> str:
    """Escape Slack's three control characters (ampersand first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unesc(text: str) -> str:
    """Slack's text as typed: Slack sends `&`, `<`, `>` of typed text escaped (ampersand last here)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """Cut `text` to `limit` characters, marking the cut; never splits an escape like `&amp;`."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def slack_date(when: datetime, tokens: str = "{time_secs}", *, fallback: str | None = None) -> str:
    """`<!date^UNIX^TOKENS|FALLBACK>`: Slack shows the instant in each reader's own time zone.

    The fallback is what clients that cannot render the token show; by default the UTC time.
    """
    unix = int(when.timestamp())
    if fallback is None:
        fallback = datetime.fromtimestamp(unix, UTC).strftime("%H:%M:%S UTC")
    return f"<!date^{unix}^{tokens}|{esc(fallback).replace('|', '/')}>"


def mention(user_id: str) -> str:
    """A user mention built from an id Slack gave us (ids are [A-Z0-9]; anything else is escaped)."""
    return f"<@{user_id}>" if user_id.isalnum() else esc(user_id)


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,30}$")
_ESCAPED_CHANNEL_REF = re.compile(r"&lt;#([CGD][A-Z0-9]{2,30})&gt;")


def channel(ref: str) -> str:
    """A channel link for a Slack channel id; any other reference (a typed name) as escaped text."""
    return f"<#{ref}>" if _CHANNEL_ID.match(ref) else "#" + esc(ref.lstrip("#"))


def esc_with_channels(text: str) -> str:
    """`esc`, then turn escaped `<#C123>` channel references (as the core writes them) back into links.

    A channel link pings nobody, and only Slack channel ids qualify, so nothing else is un-escaped.
    """
    return _ESCAPED_CHANNEL_REF.sub(r"<#\1>", esc(text))
