"""Two things slack-bolt does not do for us, kept apart so they are easy to drop later.

1. slack-bolt (seen in 1.30.0) parses a form body as an interactivity payload whenever the raw
   body contains the substring "payload", so `/mldebt practice payloads` (or a channel or user
   named like that) parses as {} and Slack gets a 404. `install_form_body_fix` rebinds the parser
   bolt's request class uses, only if the installed bolt still has the bug.
2. bolt has no filter for Events API redeliveries (`X-Slack-Retry-Num`); `skip_event_retries`
   acks them without running the listeners again. Button clicks and commands need no filter: the
   engine records an answer once per idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import slack_bolt.request.async_request as async_request
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

_FORM = "application/x-www-form-urlencoded"


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """bolt's parser, but a form is an interactivity payload only if it has a `payload` field."""
    if not body:
        return {}
    if content_type == "application/json" or body.startswith("{"):
        return json.loads(body)
    params = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in params:
        return json.loads(params["payload"])
    return params


def bolt_has_payload_bug() -> bool:
    return async_request.parse_body("text=payload", _FORM) == {}


def install_form_body_fix() -> None:
    if bolt_has_payload_bug():
        async_request.parse_body = parse_body  # type: ignore[assignment]


async def skip_event_retries(req: AsyncBoltRequest, resp: BoltResponse,
                             next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
    """Global middleware: a redelivered event was already handled; answer 200 and stop."""
    if req.body.get("type") == "event_callback" and req.headers.get("x-slack-retry-num"):
        return BoltResponse(status=200, body="")
    return await next()
