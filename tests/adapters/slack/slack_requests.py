"""Build incoming Slack requests exactly as Slack sends them, correctly signed.

Slack signs every HTTP request with
    X-Slack-Request-Timestamp: <unix seconds>
    X-Slack-Signature: v0=<hex HMAC-SHA256(signing_secret, f"v0:{timestamp}:{raw_body}")>
The signature covers the raw body bytes, so sign the exact string you send and send
that string (never let an HTTP client re-encode a dict after signing).

Bodies:
    slash command  -> application/x-www-form-urlencoded   command=/mldebt&text=...&response_url=...
    interactivity  -> application/x-www-form-urlencoded   payload=<url-encoded JSON>
    Events API     -> application/json                     {"type": "event_callback", "event": {...}}
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def signature(signing_secret: str, timestamp: int | str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


@dataclass
class SignedRequest:
    body: str
    headers: dict[str, str]

    def with_headers(self, **extra: str) -> SignedRequest:
        """Extra headers do not change the signature (only timestamp + body are signed)."""
        return SignedRequest(
            self.body, {**self.headers, **{k.replace("_", "-"): v for k, v in extra.items()}}
        )


def sign(
    body: str, signing_secret: str, *, content_type: str, timestamp: int | None = None, forge: bool = False
) -> SignedRequest:
    ts = int(time.time()) if timestamp is None else timestamp
    sig = signature(signing_secret, ts, body)
    if forge:  # a wrong secret: same shape, wrong HMAC
        sig = signature(signing_secret + "-wrong", ts, body)
    return SignedRequest(
        body=body,
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sig,
        },
    )


_IDS = itertools.count(1)


# ---------------------------------------------------------------- bodies
def slash_command_body(
    *,
    command: str = "/mldebt",
    text: str = "challenge",
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    team_id: str = "T0TEST",
    team_domain: str = "mldebt-test",
    channel_id: str = "C0QUIZ",
    channel_name: str = "quiz",
    response_url: str,
    trigger_id: str | None = None,
    api_app_id: str = "A0TEST",
) -> str:
    """A /mldebt body as Slack sends it; each call gets a fresh trigger_id unless one is given
    (Slack's is unique per invocation, and the app answers a repeated one only once)."""
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"1337.{next(_IDS)}.abcdef",
    }
    return urlencode(fields)  # quote_plus: spaces -> "+", "/" -> "%2F", like Slack


def block_actions_payload(
    *,
    action_id: str,
    value: str,
    block_id: str = "quiz_answers",
    response_url: str,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    team_id: str = "T0TEST",
    team_domain: str = "mldebt-test",
    channel_id: str = "C0QUIZ",
    message_ts: str = "1700000000.000100",
    is_ephemeral: bool = False,
    action_ts: str | None = None,
    button_text: str = "Answer",
    message: dict | None = None,
    trigger_id: str = "1337.43.abcdef",
) -> dict[str, Any]:
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": "A0TEST",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "quiz"},
        "message": message or {"type": "message", "ts": message_ts, "text": "quiz", "blocks": []},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": button_text, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts or f"{time.time():.6f}",
            }
        ],
    }
    if is_ephemeral:  # Slack sends no `message` for a click on an ephemeral message
        del payload["message"]
    return payload


def interactivity_body(payload: dict) -> str:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


def event_callback_body(
    event: dict, *, team_id: str = "T0TEST", event_id: str | None = None, api_app_id: str = "A0TEST"
) -> str:
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": team_id,
            "api_app_id": api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev0{next(_IDS)}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": "U0BOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


def app_home_opened_event(user: str = "U0ALICE", tab: str = "home") -> dict:
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


# ---------------------------------------------------------------- signed shortcuts
def signed_slash_command(secret: str, **kw) -> SignedRequest:
    ts = kw.pop("timestamp", None)
    forge = kw.pop("forge", False)
    return sign(slash_command_body(**kw), secret, content_type=FORM, timestamp=ts, forge=forge)


def signed_block_action(
    secret: str, *, timestamp: int | None = None, forge: bool = False, **kw
) -> SignedRequest:
    return sign(
        interactivity_body(block_actions_payload(**kw)),
        secret,
        content_type=FORM,
        timestamp=timestamp,
        forge=forge,
    )


def signed_event(
    secret: str,
    event: dict,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    **kw,
) -> SignedRequest:
    req = sign(event_callback_body(event, **kw), secret, content_type=JSON, timestamp=timestamp)
    if retry_num is not None:  # Events API redeliveries carry these two headers
        req = SignedRequest(
            req.body,
            {**req.headers, "X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason},
        )
    return req
