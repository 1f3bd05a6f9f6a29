"""Wall-clock timing of button clicks under SimCord (uses SimCord internals: simcord==3.2.1 is pinned).

SimCord's clocks are virtual inside bot code (time.monotonic, discord.utils.utcnow, loop timers),
so every stamp here is `time.perf_counter()`. Actor verbs (`member.click`) are exclusive and settle
after each call, so they cannot be gathered; `emit_click` delivers a click the way
`simcord.actors._component_click` does, minus the visibility checks and the settling, so that many
clicks can be in flight together (see /work/notes/simcord.md section 10).

A burst is waited for with `StampedRequests.answered` (set once every click got its initial
response), not with `env.settle()`: settling polls every pending bot task, and with hundreds of
tasks waiting on aiosqlite's thread that polling, not the bot, would dominate the timings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import simcord
from simcord import interactions as _sc_interactions
from simcord.backend import serializers as _sc_serializers
from simcord.enums import ComponentType, InteractionType


class StampedRequests(list):
    """Stands in for backend.http_requests and stamps every REST call with perf_counter().

    SimCord's router appends a request to the log before running its handler, so the stamp of an
    interaction callback is the moment the bot's initial response reached "Discord"."""

    def __init__(self, iterable: Any = (), expect: int = 0) -> None:
        super().__init__(iterable)
        self.stamps: list[float | None] = [None] * len(self)
        self.expect = expect
        self.responded: set[int] = set()
        self.answered = asyncio.Event()  # every expected interaction got its first callback

    def append(self, entry: Any) -> None:
        self.stamps.append(time.perf_counter())
        super().append(entry)
        if _is_callback(entry):
            self.responded.add(int(entry.path.split("/")[2]))
            if len(self.responded) >= self.expect:
                self.answered.set()


def _is_callback(entry: Any) -> bool:
    return entry.method == "POST" and entry.path.startswith("/interactions/") and entry.path.endswith("/callback")


def install_request_stamps(env: simcord.Env, expect: int) -> StampedRequests:
    """Stamp every REST call from now on; `answered` is set after `expect` interactions responded."""
    log = StampedRequests(env.backend.http_requests, expect)
    env.backend.http_requests = log  # env.http_requests reads this attribute
    return log


def initial_responses(log: StampedRequests) -> dict[int, tuple[float, int]]:
    """Interaction id -> (stamp, callback type) of its first callback POST."""
    out: dict[int, tuple[float, int]] = {}
    for entry, stamp in zip(log, log.stamps, strict=True):
        if _is_callback(entry):
            interaction_id = int(entry.path.split("/")[2])
            if interaction_id not in out and stamp is not None:
                out[interaction_id] = (stamp, (entry.json or {}).get("type", 0))
    return out


def emit_click(env: simcord.Env, actor: simcord.MemberActor, message: Any,
               custom_id: str) -> tuple[simcord.InteractionResult, float]:
    """Deliver one button click without settling. Returns its result handle and the emission stamp."""
    backend = env.backend
    channel_id = message.channel.id if hasattr(message, "channel") else message.channel_id
    stored = backend.get_message(channel_id, message.id)
    record, payload = _sc_interactions.base_payload(
        backend, type=InteractionType.MESSAGE_COMPONENT, channel_id=stored.channel_id, guild_id=actor.guild.id,
        user_id=actor.id, data={"custom_id": custom_id, "component_type": ComponentType.BUTTON})
    payload["message"] = dict(_sc_serializers.message_payload(backend, stored))
    record.source_message_id = stored.id
    env._notify_dispatch_observers(record)
    stamp = time.perf_counter()
    backend.emit("INTERACTION_CREATE", payload)  # parsed at once; the handlers become bot-owned tasks
    return simcord.InteractionResult(env, record), stamp
