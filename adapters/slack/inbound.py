"""What a signed Slack payload must look like before anything reads ids out of it.

bolt reads ids out of a payload as soon as it builds its request (and again for every middleware's
arguments), so a signed payload of an odd shape (empty `actions`, a numeric `action_id`, no `user`)
used to fail inside bolt with a 500. The HTTP handler (web.py) and the app's middleware (app.py)
ask `shape_problem` first and acknowledge-and-ignore what the listeners cannot handle.
"""

from __future__ import annotations

from typing import Any


def shape_problem(body: dict[str, Any]) -> str | None:
    """Why a signed payload cannot be one the listeners handle, or None if it can."""
    if not isinstance(body, dict):
        return "not an object"
    if body.get("command") is not None:
        if not all(isinstance(body.get(k), str) and body.get(k) for k in ("user_id", "team_id")):
            return "slash command without user_id/team_id"
        return None
    kind = body.get("type")
    if kind == "block_actions":
        actions, user = body.get("actions"), body.get("user")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return "block_actions without actions"
        if not isinstance(actions[0].get("action_id"), str):
            return "block_actions with a non-text action_id"
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            return "block_actions without a user"
        if body.get("team") is not None and not isinstance(body.get("team"), dict):
            return "block_actions with a malformed team"
        return None
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event"
        return None
    if kind == "url_verification":
        return None
    return f"unexpected payload type {str(kind)[:40]!r}"
