"""A slack-bolt parsing bug worked around, kept apart so it is easy to drop later.

slack-bolt (seen in 1.30.0) parses a form body as an interactivity payload whenever the raw
   body contains the substring "payload", so `/mldebt practice payloads` (or a channel or user
   named like that) parses as {} and Slack gets a 404. `install_form_body_fix` rebinds the parser
   bolt's request class uses, only if the installed bolt still has the bug.

(Retries are handled by ids stored in the database: a command's trigger_id, an event's event_id.)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import slack_bolt.request.async_request as async_request

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
