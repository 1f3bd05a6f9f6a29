"""Reading what the bot showed: question cards as the player sees them, buttons, DB rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.bank import Bank
from bot.commands import Action

_CHOICE = re.compile(r"^\*\*(?P<letter>[A-D])\*\* · (?P<text>.*)$")


def buttons(message: Any) -> list[dict]:
    """Raw button dicts of a SimCord ResponseMessage (or a discord.Message)."""
    rows = message.components
    out = []
    for row in rows:
        if isinstance(row, dict):
            out += [c for c in row["components"] if c.get("type") == 2]
        else:
            out += [{"custom_id": c.custom_id, "label": c.label, "disabled": c.disabled, "style": c.style.value}
                    for c in row.children]
    return out


@dataclass(frozen=True)
class Card:
    session_id: str
    question_id: str
    choices: dict[str, str]  # letter -> text, as shown

    def letter_for(self, text: str) -> str:
        return next(letter for letter, t in self.choices.items() if t == text)


def card(message: Any) -> Card:
    """The open question card of a message: ids from its buttons, choices from its embed."""
    actions = [Action.decode(b["custom_id"]) for b in buttons(message)]
    answer = next(a for a in actions if a is not None and a.kind == "a")
    choices = {}
    for line in (message.embeds[-1].description or "").splitlines():
        m = _CHOICE.match(line)
        if m:
            choices[m["letter"]] = m["text"]
    return Card(answer.session_id, answer.question_id, choices)


def right(bank: Bank, message: Any) -> str:
    c = card(message)
    return c.letter_for(bank.question(c.question_id).answer_text)


def wrong(bank: Bank, message: Any) -> str:
    c = card(message)
    answer = bank.question(c.question_id).answer_text
    return next(letter for letter, text in c.choices.items() if text != answer)


def field_names(message: Any) -> list[str]:
    return [f.name for f in message.embeds[-1].fields]


def custom_id(message: Any, label: str) -> str:
    return next(b["custom_id"] for b in buttons(message) if b.get("label") == label)


async def play(world: Any, actor: Any, *, misses: int = 0) -> tuple[Any, Any]:
    """Start a challenge and answer every question (the first `misses` wrong on both attempts).

    Returns (the /mldebt challenge result, the last click's result).
    """
    started = await actor.slash(world.channel, "mldebt challenge")
    message = started.response
    clicked = None
    for i in range(5):
        if i < misses:
            first = wrong(world.bank, message)
            await actor.click(message, label=first)
            c = card(message)
            answer = world.bank.question(c.question_id).answer_text
            second = next(x for x, t in c.choices.items() if t != answer and x != first)
            clicked = await actor.click(message, label=second)
        else:
            clicked = await actor.click(message, label=right(world.bank, message))
        assert clicked.acknowledged and clicked.response.id == message.id
        if i < 4:
            message = clicked.followups[0]
    return started, clicked


async def deliver(world: Any) -> list[Any]:
    """One run of the scheduler's outbox worker (what the running scheduler does once woken)."""
    return await world.scheduler.outbox.run_once()


def player_row(world: Any, user_id: int) -> int:
    (pid,), = world.query("SELECT id FROM players WHERE platform = 'discord' AND user_id = ?", str(user_id))
    return pid


def grant(world: Any, user_id: int) -> tuple[str, str | None, int]:
    rows = world.query("SELECT status, error_detail, attempts FROM outbox WHERE kind = 'grant' AND key LIKE ?",
                       f"grant:{player_row(world, user_id)}:%")
    assert len(rows) == 1, rows
    return rows[0]


async def role_names(world: Any, actor: Any) -> list[str]:
    """The member's roles, fetched over REST (the bot has no members intent, so no member cache)."""
    member = await world.env.bot.get_guild(world.guild.id).fetch_member(actor.id)
    return [r.name for r in member.roles]


def callback_type(world: Any, result: Any) -> int:
    """The interaction callback type the bot sent first (4 message, 5 deferred, 6 deferred update, 7 update)."""
    prefix = f"/interactions/{result._interaction.id}/"
    return next(r.json["type"] for r in world.env.http_requests if r.method == "POST" and r.path.startswith(prefix))
