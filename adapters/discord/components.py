"""Question buttons: ids only in the custom_id, rebuilt from it after a restart.

The custom_id is the core's `Action` encoding (`mldebt:a:<session>:<question>:<letter>`,
`mldebt:h:...`, `mldebt:s:...`, `mldebt:d:<post>:<question>:<letter>`), never the answer. One
DynamicItem matches all of them by pattern, so a click on a message posted before a restart (or by
another process) still reaches the bot: nothing about a question lives in memory.

Views built here are stopped before they are sent: discord.py then neither stores them nor starts a
15-minute timeout task per ephemeral message. Clicks are dispatched by the DynamicItem pattern
alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.commands import Action

# Loose on purpose: every `mldebt:` button reaches the core, which decodes it and answers
# "That button is not one of mine" for anything malformed, instead of Discord's "interaction failed".
TEMPLATE = r"mldebt:[a-z]:.{1,90}"

ClickHandler = Callable[[discord.Interaction, str], Awaitable[None]]


class QuizButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    """Any mldebt button; the click goes to the bot's `on_quiz_click`."""

    def __init__(self, custom_id: str, *, label: str | None = None, emoji: str | None = None,
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary, disabled: bool = False,
                 row: int | None = None) -> None:
        super().__init__(discord.ui.Button(custom_id=custom_id, label=label, emoji=emoji, style=style,
                                           disabled=disabled), row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any, /) -> QuizButton:
        assert isinstance(item, discord.ui.Button) and item.custom_id is not None
        return cls(item.custom_id, label=item.label, style=item.style, disabled=item.disabled)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        # discord.py only logs what escapes a DynamicItem callback, so the handler catches everything
        handler: ClickHandler = interaction.client.on_quiz_click  # type: ignore[attr-defined]
        await handler(interaction, self.custom_id)


@dataclass(frozen=True)
class ButtonState:
    """What the buttons of one question show: which letters failed, the answer, hint used, closed."""

    wrong: frozenset[str] = field(default_factory=frozenset)
    correct: str | None = None
    hint_used: bool = False
    closed: bool = False


def inert_view(items: Iterable[discord.ui.Item[Any]]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()  # see the module docstring
    return view


def question_view(session_id: str, question_id: str, letters: Sequence[str], state: ButtonState,
                  *, hint: bool = True, skip: bool = True) -> discord.ui.View:
    items: list[discord.ui.Item[Any]] = []
    for letter in letters:
        style = discord.ButtonStyle.secondary
        if letter == state.correct:
            style = discord.ButtonStyle.success
        elif letter in state.wrong:
            style = discord.ButtonStyle.danger
        disabled = state.closed or letter in state.wrong
        items.append(QuizButton(Action("a", session_id, question_id, letter).encode(), label=letter, style=style,
                                disabled=disabled, row=0))
    if hint:
        items.append(QuizButton(Action("h", session_id, question_id).encode(), label="Hint", emoji="💡",
                                style=discord.ButtonStyle.primary, disabled=state.closed or state.hint_used, row=1))
    if skip:
        items.append(QuizButton(Action("s", session_id, question_id).encode(), label="Skip", disabled=state.closed,
                                row=1))
    return inert_view(items)


def daily_view(post_id: str, question_id: str, letters: Sequence[str], *, correct: str | None = None,
               closed: bool = False) -> discord.ui.View:
    items = []
    for letter in letters:
        style = discord.ButtonStyle.success if letter == correct else discord.ButtonStyle.secondary
        items.append(QuizButton(Action("d", post_id, question_id, letter).encode(), label=letter, style=style,
                                disabled=closed))
    return inert_view(items)


@dataclass(frozen=True)
class QuestionButtons:
    """The question buttons found on a message we sent earlier, and their state."""

    session_id: str
    question_id: str
    letters: tuple[str, ...]
    state: ButtonState
    has_hint: bool
    has_skip: bool

    def view(self, state: ButtonState) -> discord.ui.View:
        return question_view(self.session_id, self.question_id, self.letters, state, hint=self.has_hint,
                             skip=self.has_skip)


def read_buttons(components: Sequence[discord.Component]) -> QuestionButtons | None:
    """Parse the question buttons of a message (from an interaction or a webhook fetch)."""
    session = question = None
    letters: list[str] = []
    wrong: set[str] = set()
    correct = None
    hint_used = has_hint = has_skip = False
    closed = True
    for row in components:
        for child in getattr(row, "children", [row]):
            if not isinstance(child, discord.Button) or child.custom_id is None:
                continue
            action = Action.decode(child.custom_id)
            if action is None or action.kind not in "ahs":
                continue
            session, question = action.session_id, action.question_id
            if action.kind == "a" and action.choice:
                letters.append(action.choice)
                if child.style is discord.ButtonStyle.danger:
                    wrong.add(action.choice)
                elif child.style is discord.ButtonStyle.success:
                    correct = action.choice
                if not child.disabled:
                    closed = False
            elif action.kind == "h":
                has_hint, hint_used = True, child.disabled
            else:
                has_skip = True
    if session is None or question is None or not letters:
        return None
    return QuestionButtons(session, question, tuple(letters),
                           ButtonState(frozenset(wrong), correct, hint_used, closed), has_hint, has_skip)
