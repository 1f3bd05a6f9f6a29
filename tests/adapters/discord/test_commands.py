"""Every `/mldebt` command reaches the core and comes back as an embed."""

from __future__ import annotations

import asyncio

import pytest
import simcord

from tests.adapters.discord.helpers import callback_type, card, field_names

EVERYONE = (
    "mldebt challenge", "mldebt practice", "mldebt test", "mldebt review", "mldebt learn", "mldebt topics",
    "mldebt hint", "mldebt skip", "mldebt resume", "mldebt quit", "mldebt stats", "mldebt leaderboard",
    "mldebt daily", "mldebt help", "mldebt team create", "mldebt team join", "mldebt team leave",
    "mldebt team list",
)
ADMIN = ("mldebt-admin status", "mldebt-admin celebrate", "mldebt-admin timezone", "mldebt-admin items",
         "mldebt-admin retry-roles",
         "mldebt-admin daily set", "mldebt-admin daily off", "mldebt-admin daily now")


async def test_the_command_tree(world):
    assert sorted(world.alice.available_commands(world.channel)) == sorted(EVERYONE)
    assert sorted(world.admin().available_commands(world.channel)) == sorted(EVERYONE + ADMIN)


async def test_practice_with_topic_and_difficulty_options(world):
    suggested = await world.alice.autocomplete(world.channel, "mldebt practice", "topic", "alp")
    assert suggested == [{"name": "Alpha (alpha)", "value": "alpha"}]
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.channel, "mldebt practice", difficulty="impossible")

    started = await world.alice.slash(world.channel, "mldebt practice", topic="alpha", difficulty="easy")
    assert started.response.content == "**Practice: Alpha** · 1 question"  # the test bank has one
    first = started.response.embeds[0]
    assert first.title == "Practice · 1/1" and first.footer.text.startswith("alpha · easy")
    assert "⏳ Untimed · 2 attempts left" in first.description
    c = card(started.response)
    q = world.bank.question(c.question_id)
    answer = c.letter_for(q.answer_text)
    misses = [x for x in c.choices if x != answer]
    await world.alice.click(started.response, label=misses[0])
    await world.alice.click(started.response, label=misses[1])
    names = field_names(started.response)
    assert names[0].startswith("❌ Wrong: the answer is")
    if q.solution is not None:  # practice shows the worked solution
        assert names[1:3] == ["📝 Worked solution", "🔎 Quick check"]


async def test_an_unknown_topic_is_a_private_refusal(world):
    refused = await world.alice.slash(world.channel, "mldebt practice", topic="nope")
    assert refused.response.ephemeral and refused.response.content.startswith("⚠️ Unknown topic 'nope'.")
    assert world.query("SELECT COUNT(*) FROM sessions") == [(0,)]


async def test_hint_skip_resume_and_quit_as_commands(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    q = world.bank.question(card(started.response).question_id)

    hint = await world.alice.slash(world.channel, "mldebt hint")
    assert hint.response.embeds[0].title == "💡 Hint" and q.hint in hint.response.embeds[0].description

    again = await world.alice.slash(world.channel, "mldebt challenge")  # one open quiz at a time
    assert again.response.content.startswith("You already have a mastery challenge open (1/5)")
    assert card(again.response).question_id == q.id
    assert next(b for b in again.response.components[0]["components"] + again.response.components[1]["components"]
                if b["label"] == "Hint")["disabled"]  # the hint was used

    skipped = await world.alice.slash(world.channel, "mldebt skip")
    first, second = skipped.response.embeds
    assert first.title.startswith("⏭ Skipped. The answer was") and second.title == "Mastery challenge · 2/5"
    assert card(skipped.response).session_id == card(started.response).session_id

    resumed = await world.alice.slash(world.channel, "mldebt resume")
    assert resumed.response.embeds[0].title == "Mastery challenge · 2/5"
    (route,), = world.query("SELECT route FROM sessions")
    assert f'"message_id":{resumed.response.id}' in route  # time-outs now update the newest copy

    quit_ = await world.alice.slash(world.channel, "mldebt quit")
    assert quit_.response.embeds[0].title == "Mastery challenge ended early: 0/5 correct"
    assert world.query("SELECT status FROM sessions") == [("abandoned",)]


async def test_information_commands(world):
    topics = await world.alice.slash(world.channel, "mldebt topics")
    assert topics.response.embeds[0].title == "Topics" and "**Alpha** (`alpha`)" in topics.response.embeds[0].description
    learn = await world.alice.slash(world.channel, "mldebt learn", topic="beta")
    assert learn.response.embeds[0].title == "Beta"
    assert [f.name for f in learn.response.embeds[0].fields] == ["How it shows up", "How to pay it down", "Sources"]
    help_ = await world.alice.slash(world.channel, "mldebt help")
    assert "`/mldebt challenge` · the Mastery challenge" in help_.response.embeds[0].description
    assert "`/mldebt daily` · when and where" in help_.response.embeds[0].description  # Discord's spelling
    stats = await world.alice.slash(world.channel, "mldebt stats")
    assert stats.response.embeds[0].title == "Stats for Alice"
    daily = await world.alice.slash(world.channel, "mldebt daily")
    assert daily.response.embeds[0].description.startswith("No daily question is scheduled.")
    review = await world.alice.slash(world.channel, "mldebt review")
    assert review.response.ephemeral and review.response.content.startswith("⚠️")  # nothing to review yet
    board = await world.alice.slash(world.channel, "mldebt leaderboard", kind="teams", period="all", per_member=True)
    assert board.response.embeds[0].title == "Leaderboard: teams, all time · points per member"
    for result in (topics, learn, help_, stats, daily, review, board):
        assert result.response.ephemeral


async def test_admin_settings(world):
    mod = world.admin()
    tz = await mod.autocomplete(world.channel, "mldebt-admin timezone", "name", "europe/berl")
    assert tz == [{"name": "Europe/Berlin", "value": "Europe/Berlin"}]
    done = await mod.slash(world.channel, "mldebt-admin timezone", name="Europe/Berlin")
    assert "Europe/Berlin" in done.response.content
    bad = await mod.slash(world.channel, "mldebt-admin timezone", name="Mars/Base")
    assert bad.response.content.startswith("⚠️")


@pytest.mark.simcord(settle_timeout=1.0)
async def test_a_slow_engine_never_delays_the_acknowledgement(world, monkeypatch):
    real_start = world.engine.start

    async def slow_start(*args, **kwargs):
        await asyncio.sleep(10)  # e.g. a busy database; virtual time under SimCord
        return await real_start(*args, **kwargs)

    monkeypatch.setattr(world.engine, "start", slow_start)
    started = await world.alice.slash(world.channel, "mldebt challenge")
    assert started.acknowledged and callback_type(world, started) == 5  # "thinking…", ephemeral, before any work
    assert started.response.embeds == []
    await world.env.advance_time(10)
    assert started.response.embeds[0].title == "Mastery challenge · 1/5" and started.response.ephemeral
    assert world.env.errors == []


@pytest.mark.simcord(settle_timeout=1.0)
async def test_a_slow_click_is_deferred_and_then_edits_the_card(world, monkeypatch):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    real_answer = world.engine.answer

    async def slow_answer(*args, **kwargs):
        await asyncio.sleep(10)
        return await real_answer(*args, **kwargs)

    monkeypatch.setattr(world.engine, "answer", slow_answer)
    clicked = await world.alice.click(started.response, label="A")
    assert callback_type(world, clicked) == 6  # deferred update of the clicked message, before any work
    await world.env.advance_time(10)
    assert field_names(started.response)[0][0] in "✅❌"


async def test_a_bug_gets_a_private_apology_not_a_silent_failure(world, monkeypatch, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(world.engine, "stats", broken)
    result = await world.alice.slash(world.channel, "mldebt stats")
    assert result.response.ephemeral and result.response.content.startswith("Something went wrong on our side")
    assert "command 'stats' failed" in caplog.text  # and it was logged as an error

    started = await world.alice.slash(world.channel, "mldebt challenge")
    monkeypatch.setattr(world.engine, "answer", broken)
    clicked = await world.alice.click(started.response, label="A")
    assert clicked.acknowledged  # discord.py alone would only log it: the user would see "interaction failed"
    (sorry,) = clicked.followups
    assert sorry.ephemeral and sorry.content.startswith("Something went wrong on our side")
    assert "click mldebt:a:" in caplog.text and "a bug" in caplog.text
