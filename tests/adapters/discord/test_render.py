"""Rendering without Discord: fallbacks, limits, idempotent card updates, routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import discord

from adapters.discord.components import ButtonState, QuestionButtons, read_buttons
from adapters.discord.render import FIELD_MAX, apply_to_card, chunks, compose, safe
from adapters.discord.routes import Route
from bot.replies import Choice, Feedback, Hint, Notice, QuestionCard, Rejected, Reply, SessionStarted, Summary


@dataclass(frozen=True)
class Shout(Reply):
    """A reply type this adapter has never heard of."""

    words: str

    def text(self) -> str:
        return f"SHOUT {self.words}"


def a_card(**overrides) -> QuestionCard:
    values = dict(session_id="ab12", question_id="alpha-04", mode="challenge", position=1, total=5, topic="alpha",
                  difficulty="intermediate", type="conceptual", prompt="Why?", code="x = 1\n",
                  choices=tuple(Choice(x, f"choice {x}") for x in "ABCD"),
                  deadline=datetime(2026, 1, 5, 9, 2, tzinfo=UTC), time_limit=120, attempts_left=2,
                  hint_used=False, hint_costs_points=True)
    values.update(overrides)
    return QuestionCard(**values)


def test_an_unknown_reply_type_falls_back_to_its_text_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="adapters.discord.render"):
        (out,) = compose([Shout("@everyone hi")])
    assert out.content == "SHOUT @\u200beveryone hi" and out.private
    assert "no Discord renderer for Shout" in caplog.text


def test_replies_are_grouped_into_messages_each_card_closing_one():
    card = a_card()
    messages = compose([SessionStarted("ab12", "challenge", 5, "Mastery challenge"), card,
                        Notice("after"), Rejected("nope")])
    assert [(m.content, len(m.embeds), m.card is not None) for m in messages] == [
        ("**Mastery challenge** · 5 questions", 1, True), ("after\n⚠️ nope", 0, False)]
    summaries = [Summary("ab12", "test", "finished", 1, 10, 10, ()) for _ in range(12)]
    assert [len(m.embeds) for m in compose(summaries)] == [10, 2]  # Discord's limit per message


def test_card_updates_are_idempotent_and_keep_the_hint():
    (out,) = compose([a_card()])
    embed = out.embeds[0]
    buttons = read_buttons(out.view.to_components() and [_row(c) for c in out.view.to_components()])
    assert buttons == QuestionButtons("ab12", "alpha-04", ("A", "B", "C", "D"), ButtonState(), True, True)
    hint = Hint("ab12", "alpha-04", "Think.", True)
    wrong = Feedback("ab12", "alpha-04", "B", False, 0, 1, False, None, None, None)
    right = Feedback("ab12", "alpha-04", "C", True, 15, 0, True, "C", "choice C", "Because.")
    once, view = apply_to_card(embed, buttons, [hint, wrong, right])
    twice, _ = apply_to_card(once, buttons, [right])
    assert [f.name for f in once.fields] == ["💡 Hint", "✅ Correct! +15 points"]
    assert once.to_dict() == twice.to_dict()
    assert "⏳" not in once.description and "```\nx = 1\n```" in once.description
    states = {i.item.label: (i.item.disabled, i.item.style) for i in view.children}
    assert states["B"] == (True, discord.ButtonStyle.danger) and states["C"] == (True, discord.ButtonStyle.success)
    assert states["Hint"][0] and states["Skip"][0]


def _row(payload: dict) -> discord.ActionRow:
    return discord.ActionRow(payload)


def test_long_texts_are_split_to_discords_limits():
    text = "\n".join(f"line {i} " + "x" * 90 for i in range(40))
    parts = chunks(text)
    assert all(len(p) <= FIELD_MAX for p in parts) and "".join(parts).replace("\n", "") == text.replace("\n", "")
    explanation = "y" * 3000
    right = Feedback("ab12", "alpha-04", "C", True, 15, 0, True, "C", "choice C", explanation)
    (out,) = compose([a_card()])
    embed, _ = apply_to_card(out.embeds[0], None, [right])
    assert [len(f.value) for f in embed.fields] == [1024, 1024, 952] and len(embed) <= 6000


def test_safe_escapes_mentions_and_markdown():
    assert safe("@everyone **bold** <@&1> <#2>") == "@\u200beveryone \\*\\*bold\\*\\* <\u200b@&1> <\u200b#2>"


def test_routes_round_trip_and_expire():
    route = Route(1, "tok", 2, 3, "alpha-04", datetime(2026, 1, 1, 0, 15, tzinfo=UTC).timestamp())
    assert Route.decode(route.encode()) == route
    assert Route.decode(None) is None and Route.decode("not json") is None and Route.decode('{"v":9}') is None
    assert route.usable(datetime(2026, 1, 1, 0, 14, tzinfo=UTC))
    assert not route.usable(datetime(2026, 1, 1, 0, 15, tzinfo=UTC) - timedelta(seconds=10))


def test_an_unscored_right_answer_shows_no_points():
    (out,) = compose([Feedback("ab12", "alpha-04", "C", True, 0, 0, True, "C", "choice C", "Because.")])
    assert out.embeds[0].title == "✅ Correct!"
