"""Hostile text in the core: team names and display names that try to ping, format or spoof.

Team names are validated: a hostile one is refused with the exact rule, or, when every character
is allowed, stored and shown exactly as normalised. Display names are data: stored as given and
returned unchanged in the replies that carry them (Leaderboard, BadgeAwarded); escaping them is
each adapter's job, tested with the adapters.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.commands import handle_text
from bot.community import normalise_team_name
from bot.engine import QuizEngine
from bot.replies import BadgeAwarded, Leaderboard, Notice, Player, QuestionCard, Rejected, TeamList
from bot.text import clean, command_text
from tests.fakes.bank import correct_letter

LENGTH = "Team names need 3 to 32 characters."
CHARS = "Team names may use letters, digits, spaces, '-', '_' and '.' only."
START = "Team names must start with a letter or a digit."
RULES = {LENGTH, CHARS, START}

HOSTILE = {
    "everyone": "@everyone",
    "here": "@here",
    "slack channel": "<!channel>",
    "slack here": "<!here|here>",
    "slack user": "<@U123>",
    "discord user": "<@123456789012345678>",
    "discord role": "<@&123456789012345678>",
    "markdown": "**bold** _it_ ~~x~~ `code` ```block``` > quote",
    "link": "[click](https://evil.example) <https://evil.example|ok>",
    "html": "<script>alert(1)</script> &amp; &lt;",
    "long": "x" * 5000,
    "zero width": "Ad\u200bmin\u200c\u200d\u2060\ufeff",
    "rtl": "\u202eevil\u202c \u2067rtl\u2069 \u200f",
    "newlines": "line1\nline2\r\n\tline3",
    "combining": "Z\u0351\u0300\u036f\u0364\u0315a\u0489lgo",
    "emoji": "\U0001F600 :tada: <:custom:123>",
    "lookalike": "\uff20everyone",  # fullwidth commercial at
}


def player(n: int, name: str = "") -> Player:
    return Player("slack", "T1", f"U{n:03d}", name)


# -- team names --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("@everyone", CHARS),
        ("<!channel>", CHARS),
        ("<@U123>", CHARS),
        ("**bold**", CHARS),
        ("_underscored_", START),
        ("x" * 5000, LENGTH),
        ("zero\u200bwidth", CHARS),
        ("\u200bzw", CHARS),  # a zero-width space is not a space: it counts, and it is refused
        ("rtl\u202eeman", CHARS),
        ("\u2067isolate\u2069", CHARS),
        ("\uff20everyone", CHARS),
    ],
    ids=["everyone", "channel", "user", "markdown", "underscore", "5000", "zero-width", "zero-width-first", "rtl",
         "isolate", "fullwidth-at"],
)
async def test_hostile_team_names_get_the_exact_rule(engine: QuizEngine, raw: str, message: str):
    assert await handle_text(engine, player(1), f"team create {raw}") == [Rejected(message, "BadRequest")]
    async with engine.store.transaction() as tx:
        assert await tx._all("SELECT COUNT(*) FROM teams") == [(0,)]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Owls", "Owls"),
        ("  ml   debt  ", "ml debt"),
        ("team_a.b-c", "team_a.b-c"),
        ("e\u0301quipe", "\u00e9quipe"),  # NFC: an accented letter typed as two code points
        ("\u0627\u0644\u0641\u0631\u064a\u0642", "\u0627\u0644\u0641\u0631\u064a\u0642"),  # Arabic letters
        ("x" * 32, "x" * 32),
        ("team\u0000nul", "teamnul"),  # control characters are dropped where the text comes in
    ],
    ids=["plain", "spaces", "punctuation", "nfc", "arabic", "32", "nul"],
)
async def test_allowed_team_names_are_stored_and_shown_as_normalised(engine: QuizEngine, raw: str, stored: str):
    [created] = await handle_text(engine, player(1), f"team create {raw}")
    assert isinstance(created, Notice) and f"'{stored}'" in created.message
    [listing] = await handle_text(engine, player(1), "team list")
    assert isinstance(listing, TeamList) and [t.name for t in listing.teams] == [stored]
    assert listing.mine == stored
    async with engine.store.transaction() as tx:
        assert await tx._all("SELECT name FROM teams") == [(stored,)]


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(min_size=1, max_size=40)
       | st.text(st.characters(whitelist_categories=("L", "N")) | st.sampled_from(" -_."), min_size=1, max_size=36)
       | st.lists(st.sampled_from(["@", "<!", ">", "<@", "U1", "&", "*", "_", "`", "~", "|", "#", "a", "1", " ", ".",
                                   "-", "\u200b", "\u202e", "\u0301", "\uff20", "\n", "everyone"]),
                  max_size=12).map("".join))
async def test_any_team_name_is_refused_by_a_rule_or_stored_as_valid(engine: QuizEngine, raw: str):
    """Whatever is typed: one of the three rules, or a name made only of allowed characters."""
    who = player(7)
    [reply] = await handle_text(engine, who, f"team create {raw}")
    if isinstance(reply, Rejected):
        assert reply.message in RULES, reply
        event(f"refused: {reply.message}")
        return
    event("created")
    name = normalise_team_name(" ".join(command_text(raw).split()))
    assert reply == Notice(f"Team '{name}' created, and you are in it. Others join with `team join {name}`.")
    assert 3 <= len(name) <= 32 and name[0].isalnum() and all(c.isalnum() or c in " -_." for c in name)
    assert not set(name) & set("@<>&*`~|#!:\n\u200b\u202e")
    [left] = await handle_text(engine, who, "team leave")
    assert left == Notice(f"You left team '{name}'.")


# -- display names -------------------------------------------------------------------------------------

async def earn_badge(engine: QuizEngine, who: Player) -> list:
    replies = await engine.start(who, "challenge")
    for i in range(5):
        card = next(r for r in replies if isinstance(r, QuestionCard))
        replies = await engine.answer(who, card.session_id, card.question_id, correct_letter(engine.bank, card),
                                      f"{who.user}-{i}")
    return replies


@pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_display_names_are_stored_and_returned_unchanged_but_for_control_characters(engine: QuizEngine,
                                                                                          name: str):
    hostile, other = player(1, name), player(2, "Plain")
    replies = await earn_badge(engine, hostile)
    [badge] = [r for r in replies if isinstance(r, BadgeAwarded)]
    name = clean(name)  # control characters never reach the database; everything else is kept as typed
    assert badge.player == replace(hostile, display_name=name)
    await earn_badge(engine, other)
    for who in (hostile, other):
        [board] = await handle_text(engine, who, "leaderboard all")
        assert isinstance(board, Leaderboard)
        assert [e.name for e in board.entries] in (["Plain", name], [name, "Plain"])
        if who is hostile:
            assert board.me is not None and board.me.name == name
    async with engine.store.transaction() as tx:
        assert await tx._all("SELECT display_name FROM players WHERE user_id = 'U001'") == [(name,)]


async def test_a_later_display_name_replaces_the_stored_one_verbatim(engine: QuizEngine):
    await earn_badge(engine, player(1, "Nice name"))
    [board] = await handle_text(engine, player(1, HOSTILE["slack channel"]), "leaderboard all")
    assert [e.name for e in board.entries] == ["<!channel>"]
    # an empty name (a platform that sent none) keeps the stored one
    [board] = await handle_text(engine, player(1, ""), "leaderboard all")
    assert [e.name for e in board.entries] == ["<!channel>"]
