"""Classified failures of platform calls: what the outbox worker and the admin status act on.

Each adapter has one place that turns whatever its platform library raised (an API error code, an
HTML 502 page, a timeout, a refused connection) into one of these two, so the core never needs to
know a Slack error code or a Discord status:

- `Transient`: try again later (429, 5xx, HTML or empty bodies, timeouts, connection errors), with
  backoff and jitter, honouring `retry_after` when the platform gave one;
- `Permanent`: trying again cannot help until a human changes something (a permission, a deleted
  channel, a revoked token). `scope` says how far the problem reaches: only this message
  ("entry"), everything that uses this channel/role/user group ("target"), or the whole workspace or
  server ("tenant"). `gone` marks a target that no longer exists (a deleted channel), which pauses
  what uses it at once instead of after the grace period a missing permission gets.

`reason` is short and stable (admin status and tests match on it), `detail` is one line of what
happened, `fix` is what a human should do (None when nobody can do anything).
"""

from __future__ import annotations

SCOPES = ("entry", "target", "tenant")


class PlatformError(Exception):
    """A classified failure of a platform call. Adapters raise only these out of their send paths."""

    def __init__(self, reason: str, detail: str = "", fix: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail or reason
        self.fix = fix


class Transient(PlatformError):
    """Retry with backoff and jitter; `retry_after` (seconds) is honoured when the platform gave one."""

    def __init__(self, reason: str, detail: str = "", fix: str | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(reason, detail, fix)
        self.retry_after = retry_after


class Permanent(PlatformError):
    """Stop; record the reason and the fix; tell the admin. See the module docstring for `scope`."""

    def __init__(self, reason: str, detail: str = "", fix: str | None = None, *, scope: str = "entry",
                 gone: bool = False) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
        super().__init__(reason, detail, fix)
        self.scope = scope
        self.gone = gone
