"""The daily question on Discord: a public post with buttons, private feedback, the reveal edit."""

from __future__ import annotations

import discord

from bot.scheduler import daily_post_of
from tests.adapters.discord.helpers import buttons


async def schedule(world):
    mod = world.admin()
    done = await mod.slash(world.channel, "mldebt-admin daily set", channel=world.channel, time="09:00",
                           timezone="Europe/Berlin")
    assert done.response.ephemeral
    return mod


async def test_a_daily_post_an_answer_each_and_the_reveal(world):
    mod = await schedule(world)
    now = await mod.slash(world.channel, "mldebt-admin daily now")
    assert now.response.content == f"Posting today's question in <#{world.channel.id}> now."

    posts, _ = await world.scheduler.daily_tick()
    (post,) = posts
    message = world.channel.last_message  # public: everyone sees it
    assert message.embeds[0].title == f"📅 Daily question · {post.local_date}"
    assert [b["custom_id"] for b in buttons(message)] == [f"mldebt:d:{post.post_id}:{post.question_id}:{x}"
                                                          for x in "ABCD"]
    assert world.query("SELECT status, message_ref FROM daily_posts") == [("posted", str(message.id))]

    q = world.bank.question(post.question_id)
    right = next(c.letter for c in post.choices if c.text == q.answer_text)
    wrong = next(c.letter for c in post.choices if c.text != q.answer_text)
    a = await world.alice.click(message, label=right)
    (feedback,) = a.followups
    assert feedback.ephemeral and feedback.id != message.id  # private feedback, the post untouched
    assert feedback.embeds[0].title.startswith("✅ Correct! +")
    assert message.embeds[0].title == f"📅 Daily question · {post.local_date}"
    b = await world.bob.click(message, label=wrong)
    assert b.followups[0].embeds[0].title.startswith(f"❌ Wrong: the answer is {right})")
    again = await world.alice.click(message, label=wrong)
    assert again.followups[0].content == "⚠️ You already answered today's question: one answer each."
    assert not any(x["disabled"] for x in buttons(message))

    world.clock.advance(hours=25)
    _, reveals = await world.scheduler.daily_tick()
    assert len(reveals) == 1
    revealed = next(m for m in world.channel.history() if m.id == message.id)  # edited in place
    embed = revealed.embeds[0]
    assert embed.title.endswith("· closed")
    assert embed.fields[0].name == f"✅ Answer: {right}) {q.answer_text}"
    assert embed.fields[-1].value == "1 of 2 answers right (50%)"
    states = {x["label"]: (x["disabled"], x["style"]) for x in buttons(revealed)}
    assert states[right] == (True, discord.ButtonStyle.success.value)
    assert all(disabled for disabled, _ in states.values())
    assert world.query("SELECT status FROM daily_posts WHERE id = ?", post.post_id) == [("closed",)]


async def test_a_post_sent_before_a_crash_is_found_not_posted_twice(world):
    mod = await schedule(world)
    await mod.slash(world.channel, "mldebt-admin daily now")
    (entry,) = await world.scheduler.outbox._claim()  # a worker claims the queued post, sends it…
    await world.env.bot.daily.post(daily_post_of(entry))  # …and the process dies before recording it
    world.clock.advance(61)  # the claim's lease runs out
    posts, _ = await world.scheduler.daily_tick()
    assert [p.reconcile for p in posts] == [True]
    assert len(world.channel.history()) == 1
    assert world.query("SELECT status, message_ref FROM daily_posts") == [("posted", str(world.channel.last_message.id))]


async def test_daily_settings_need_manage_server_and_status_is_for_everyone(world):
    await schedule(world)
    status = await world.alice.slash(world.channel, "mldebt daily")
    assert status.response.embeds[0].description.startswith(f"<#{world.channel.id}>: every day at 09:00 Europe/Berlin")


async def test_daily_set_refuses_a_channel_the_bot_cannot_post_in(world):
    closed = world.guild.create_text_channel(
        "closed", overwrites={world.env.bot.user: discord.PermissionOverwrite(send_messages=False)})
    mod = world.admin()
    done = await mod.slash(world.channel, "mldebt-admin daily set", channel=closed, time="09:00",
                           timezone="Europe/Berlin")
    shown = " ".join([done.response.content or ""] + [e.description or "" for e in done.response.embeds])
    assert f"I can't post in <#{closed.id}>: the bot lacks Send Messages" in shown
    assert "Fix: Give the bot Send Messages" in shown and done.response.ephemeral
    assert world.query("SELECT COUNT(*) FROM daily_channels") == [(0,)]
