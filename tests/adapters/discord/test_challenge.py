"""A challenge played through Discord: cards, answers, hints, the badge and the Mastery role."""

from __future__ import annotations

import discord

from bot.replies import BADGE_MASTERY
from bot.scoring import points_for
from tests.adapters.discord.helpers import (
    buttons,
    card,
    deliver,
    field_names,
    grant,
    play,
    right,
    role_names,
    wrong,
)

ROLE = "Technical Debt Mastery"


async def test_the_question_card_is_an_ephemeral_embed_with_buttons_and_a_countdown(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")

    assert started.acknowledged and not started.deferred and started.ephemeral
    message = started.response
    assert message.content == "**Mastery challenge: Alpha set** · 5 questions" or \
        message.content == "**Mastery challenge: Beta set** · 5 questions"
    embed = message.embeds[0]
    assert embed.title == "Mastery challenge · 1/5"
    c = card(message)
    (deadline,), = world.query("SELECT deadline FROM session_items WHERE session_id = ? AND position = 0",
                               c.session_id)
    assert f"⏳ Answer <t:{int(deadline)}:R> (120 s)" in embed.description  # Discord counts it down itself
    assert len(c.choices) == 4
    ids = [b["custom_id"] for b in buttons(message)]
    assert ids == [f"mldebt:a:{c.session_id}:{c.question_id}:{x}" for x in "ABCD"] + [
        f"mldebt:h:{c.session_id}:{c.question_id}", f"mldebt:s:{c.session_id}:{c.question_id}"]
    answer = world.bank.question(c.question_id).answer_text
    assert all(answer not in i for i in ids)  # ids only: the answer is never in a button
    # only alice sees it
    assert message.id in [m.id for m in world.channel.history(viewer=world.alice)]
    assert message.id not in [m.id for m in world.channel.history(viewer=world.bob)]


async def test_a_whole_challenge_earns_the_badge_the_role_and_a_public_congratulation(world):
    started, last = await play(world, world.alice)
    assert world.channel.history() == [] and ROLE not in world.guild.roles  # outbox entries, not sent inline
    await deliver(world)

    # the last card: result and explanation shown, every button disabled, the answer in green
    assert field_names(last.response)[0].startswith("✅ Correct! +")
    assert all(b["disabled"] for b in buttons(last.response))
    assert any(b["style"] == discord.ButtonStyle.success.value for b in buttons(last.response))
    assert "⏳" not in last.response.embeds[0].description  # the countdown is gone
    summary, note = last.followups  # the player's own replies; the celebration is the outbox's channel post
    assert summary.ephemeral and summary.embeds[0].title == "Mastery challenge finished: 5/5 correct"
    assert note.ephemeral and f"The **{ROLE}** role is being added to you" in note.embeds[0].description
    role = world.guild.roles[ROLE]
    congrats = world.channel.last_message  # public: everyone sees it
    assert congrats.author.id == world.env.bot.user.id
    assert congrats.content == (f"🏅 **Alice** earned the **{BADGE_MASTERY}** badge and the <@&{role.id}> role: "
                                "5/5 in the Mastery challenge!")
    assert world.query("SELECT status, target, sent_ref FROM outbox WHERE kind = 'celebration'") == [
        ("sent", str(world.channel.id), str(congrats.id))]

    # the role was created (no permissions) and granted; Discord recorded both
    assert ROLE in await role_names(world, world.alice)
    create = next(r for r in world.env.http_requests if r.method == "POST" and r.path == f"/guilds/{world.guild.id}/roles")
    assert create.json["name"] == ROLE and int(create.json["permissions"]) == 0
    put = next(r for r in world.env.http_requests if r.method == "PUT" and "/roles/" in r.path)
    assert put.path == f"/guilds/{world.guild.id}/members/{world.alice.id}/roles/{role.id}"
    assert [e.action_type for e in world.guild.audit_log()] == [30, 25]  # ROLE_CREATE, MEMBER_ROLE_UPDATE

    # and the database: five right answers, the badge, the grant done
    session = card(started.response).session_id
    assert world.query("SELECT status, correct FROM sessions WHERE id = ?", session) == [("finished", 5)]
    assert world.query("SELECT outcome FROM answers WHERE session_id = ?", session) == [("correct",)] * 5
    assert world.query("SELECT badge FROM badges") == [(BADGE_MASTERY,)]
    assert grant(world, world.alice.id) == ("sent", None, 1)


async def test_a_second_challenge_has_no_second_badge_or_role_call(world):
    await play(world, world.alice)
    requests = len(world.env.http_requests)
    started, last = await play(world, world.alice)
    assert [m.embeds[0].title for m in last.followups] == ["Mastery challenge finished: 5/5 correct"]
    assert not any("/roles" in r.path for r in world.env.http_requests[requests:])


async def test_a_wrong_answer_then_a_right_one(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    miss, hit = wrong(world.bank, message), right(world.bank, message)

    first = await world.alice.click(message, label=miss)
    assert first.response.id == message.id and first.followups == []
    assert field_names(message) == [f"❌ Not quite: {miss} is wrong"]
    assert message.embeds[0].fields[0].value == "1 attempt left. Try again."
    state = {b["label"]: (b["disabled"], b["style"]) for b in buttons(message)}
    assert state[miss] == (True, discord.ButtonStyle.danger.value)
    assert all(not disabled for label, (disabled, _) in state.items() if label != miss)
    assert "⏳" in message.embeds[0].description  # still open

    second = await world.alice.click(message, label=hit)
    q = world.bank.question(c.question_id)
    half = points_for(q.difficulty, correct=True, attempt=2, hint_used=False)
    assert field_names(message)[0] == f"✅ Correct! +{half} points"
    assert message.embeds[0].fields[0].value == q.explanation
    state = {b["label"]: (b["disabled"], b["style"]) for b in buttons(message)}
    assert state[miss] == (True, discord.ButtonStyle.danger.value)
    assert state[hit] == (True, discord.ButtonStyle.success.value)
    nxt = second.followups[0]
    assert nxt.embeds[0].title == "Mastery challenge · 2/5" and card(nxt).session_id == c.session_id
    assert world.query("SELECT attempt, shown_choice, outcome, points FROM answers ORDER BY id") == [
        (1, miss, "wrong", 0), (2, hit, "correct", half)]
    # the route now points at the message with question 2
    (route,), = world.query("SELECT route FROM sessions")
    assert f'"message_id":{nxt.id}' in route and f'"question_id":"{card(nxt).question_id}"' in route


async def test_two_misses_close_the_question_with_the_answer(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    q = world.bank.question(c.question_id)
    misses = [x for x, t in c.choices.items() if t != q.answer_text][:2]
    await world.alice.click(message, label=misses[0])
    last = await world.alice.click(message, label=misses[1])
    answer = c.letter_for(q.answer_text)
    assert field_names(message)[0] == f"❌ Wrong: the answer is {answer}) {q.answer_text}"
    assert all(b["disabled"] for b in buttons(message))
    assert last.followups[0].embeds[0].title == "Mastery challenge · 2/5"


async def test_the_hint_button(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    q = world.bank.question(c.question_id)

    hinted = await world.alice.click(message, label="Hint")
    assert hinted.response.id == message.id and hinted.followups == []
    assert field_names(message) == ["💡 Hint"]
    assert message.embeds[0].fields[0].value == f"{q.hint} (this lowers the question's points by 25%)"
    hint_button = next(b for b in buttons(message) if b["label"] == "Hint")
    assert hint_button["disabled"]
    assert world.query("SELECT hint_used FROM session_items WHERE session_id = ? AND position = 0",
                       c.session_id) == [(1,)]

    await world.alice.click(message, label=right(world.bank, message))
    points = points_for(q.difficulty, correct=True, attempt=1, hint_used=True)
    assert field_names(message)[:2] == ["💡 Hint", f"✅ Correct! +{points} points"]
    assert world.query("SELECT points FROM answers") == [(points,)]


async def test_the_skip_button_shows_the_answer_and_the_next_question(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    q = world.bank.question(c.question_id)
    skipped = await world.alice.click(message, label="Skip")
    assert field_names(message)[0] == f"⏭ Skipped. The answer was {c.letter_for(q.answer_text)}) {q.answer_text}"
    assert all(b["disabled"] for b in buttons(message))
    assert skipped.followups[0].embeds[0].title == "Mastery challenge · 2/5"
    assert world.query("SELECT status FROM session_items WHERE session_id = ? AND position = 0",
                       c.session_id) == [("skipped",)]


async def test_times_up_is_driven_by_the_scheduler_and_edits_the_ephemeral_card(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    q = world.bank.question(c.question_id)

    world.clock.advance(119)
    assert await world.scheduler.tick() == []
    world.clock.advance(2)
    requests = len(world.env.http_requests)
    (delivery,) = await world.scheduler.tick()
    await world.env.settle()

    assert delivery.player.user == str(world.alice.id)
    patch = [r for r in world.env.http_requests[requests:] if r.method == "PATCH"]
    assert [r.path for r in patch] == [
        f"/webhooks/{world.env.bot.application_id}/{started._interaction.token}/messages/{message.id}"]
    assert field_names(message)[0] == f"⏰ Time's up! The answer was {c.letter_for(q.answer_text)}) {q.answer_text}"
    assert all(b["disabled"] for b in buttons(message)) and message.ephemeral
    # the next question arrives as a new private message through the same interaction webhook
    (nxt,) = started.followups
    assert nxt.ephemeral and nxt.embeds[0].title == "Mastery challenge · 2/5"
    assert world.query("SELECT status FROM session_items WHERE session_id = ? AND position = 0",
                       c.session_id) == [("timeout",)]
    # and it can be answered
    clicked = await world.alice.click(nxt, label=right(world.bank, nxt))
    assert field_names(clicked.response)[0].startswith("✅ Correct!")


async def test_a_late_click_counts_as_a_time_out_even_without_the_scheduler(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    world.clock.advance(121)
    late = await world.alice.click(message, label=right(world.bank, message))
    assert field_names(message)[0].startswith("⏰ Time's up!")
    assert late.followups[0].embeds[0].title == "Mastery challenge · 2/5"
    assert world.query("SELECT outcome FROM answers") == [("late",)]


async def test_times_up_after_the_interaction_token_expired_is_recorded_and_shown_on_the_next_click(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    await world.env.advance_time(16 * 60)  # Discord's side: the 15-minute interaction token is dead
    world.clock.advance(121)
    requests = len(world.env.http_requests)
    (delivery,) = await world.scheduler.tick()
    assert not [r for r in world.env.http_requests[requests:] if r.method in ("PATCH", "GET") and "/webhooks/" in r.path]
    assert world.query("SELECT status FROM session_items WHERE position = 0") == [("timeout",)]
    # the stale card still has live buttons; a click (a fresh interaction) shows what happened to the
    # question on the card itself, then the current question privately
    q = world.bank.question(card(message).question_id)
    told = await world.alice.click(message, label="A")
    assert told.response.id == message.id and field_names(message)[0].startswith("⏰ Time's up! The answer was")
    assert all(b["disabled"] for b in buttons(message))
    (nxt,) = told.followups
    assert nxt.ephemeral and nxt.content.startswith("That question was already closed")
    assert nxt.embeds[0].title == "Mastery challenge · 2/5"
    assert q.explanation in [f.value for f in message.embeds[0].fields]
    assert world.query("SELECT COUNT(*) FROM answers") == [(0,)]  # the click on a closed question wrote nothing
    resumed = await world.alice.slash(world.channel, "mldebt resume")
    assert resumed.response.embeds[0].title == "Mastery challenge · 2/5"
