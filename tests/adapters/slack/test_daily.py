"""The daily question in a Slack channel: posted by the scheduler, answered privately, revealed by an edit."""

from __future__ import annotations

import pytest

from .fake_slack import RESPONSE_URL
from .workspace import buttons, letter, texts

SET = "daily set <#C0DAILY|ml-daily> 09:00 Europe/Berlin"  # as Slack sends `#ml-daily` (should_escape)


async def test_post_answer_and_reveal(slack, fake, db, clock, scheduler, bank):
    ada = slack.user("U0ADMIN", "ada")
    shown = texts(await ada.command(SET))
    assert "• <#C0DAILY>: every day at 09:00 Europe/Berlin, next <!date^" in shown
    await scheduler.tick()  # 10:00 in Berlin: today's post is due
    [call] = fake.calls_for("chat.postMessage")
    ts = call.response["ts"]
    assert call.args["channel"] == "C0DAILY"
    [(post_id, status, ref)] = db.rows("SELECT id, status, message_ref FROM daily_posts")
    assert (status, ref) == ("posted", f"C0DAILY:{ts}")
    assert call.args["metadata"] == {"event_type": "mldebt_daily_post", "event_payload": {"post_id": post_id}}
    post = fake.messages[("C0DAILY", ts)]
    assert set(buttons(post)) == {"A", "B", "C", "D"} and texts(post).startswith("*Daily question* · 2026-01-05")

    alice, bob = slack.user(channel="C0DAILY"), slack.user("U0BOB", "bob", channel="C0DAILY")
    right = letter(bank, post)
    await alice.click_public("C0DAILY", ts, right)
    feedback = fake.calls_for(RESPONSE_URL)[-1].json
    assert feedback["response_type"] == "ephemeral" and feedback["replace_original"] is False
    assert ":white_check_mark: *Correct!*" in texts(feedback)
    assert set(buttons(fake.messages[("C0DAILY", ts)])) == {"A", "B", "C", "D"}  # the post is untouched
    await alice.click_public("C0DAILY", ts, letter(bank, post, correct=False))
    assert "You already answered today's question" in fake.calls_for(RESPONSE_URL)[-1].json["text"]
    await bob.click_public("C0DAILY", ts, letter(bank, post, correct=False))
    assert db.rows("SELECT shown_choice = ?, correct FROM daily_answers ORDER BY player_id", right) == [
        (1, 1), (0, 0)]

    clock.advance(hours=23)  # 09:00 in Berlin the next day: the window closes, the next post goes out
    await scheduler.tick()
    revealed = fake.messages[("C0DAILY", ts)]
    assert buttons(revealed) == {}
    assert "1 of 2 answers right (50%)." in texts(revealed)
    assert f":white_check_mark: *{right})*" in texts(revealed)
    assert len(fake.calls_for("chat.postMessage")) == 2
    assert [r[0] for r in db.rows("SELECT status FROM daily_posts ORDER BY local_date")] == ["closed", "posted"]


async def test_only_admins_set_the_daily_question(slack, db):
    shown = texts(await slack.user().command(SET))
    assert shown == ":warning: Only workspace or server admins can change the daily question."
    assert db.count("daily_channels") == 0


async def test_an_interrupted_post_is_found_instead_of_posted_again(slack, fake, db, clock, scheduler, engine,
                                                                   monkeypatch):
    await slack.user("U0ADMIN", "ada").command(SET)

    async def crash(batch) -> list:
        raise RuntimeError("the process died right after posting")

    monkeypatch.setattr(scheduler.outbox, "_settle", crash)
    with pytest.raises(RuntimeError, match="died"):
        await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 1
    assert db.rows("SELECT status, message_ref FROM daily_posts") == [("queued", None)]
    assert db.rows("SELECT status FROM outbox") == [("sending",)]  # claimed under a lease, never settled
    monkeypatch.undo()
    clock.advance(61)  # the claim's lease runs out; the next attempt looks before posting
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 1
    assert fake.calls_for("conversations.history")[0].args["channel"] == "C0DAILY"
    ts = fake.calls_for("chat.postMessage")[0].response["ts"]
    assert db.rows("SELECT status, message_ref FROM daily_posts") == [("posted", f"C0DAILY:{ts}")]


async def test_without_history_scope_an_interrupted_post_is_sent_again(slack, fake, db, clock, scheduler, engine,
                                                                      monkeypatch):
    await slack.user("U0ADMIN", "ada").command(SET)

    async def crash(batch) -> list:
        raise RuntimeError("the process died right after posting")

    monkeypatch.setattr(scheduler.outbox, "_settle", crash)
    with pytest.raises(RuntimeError, match="died"):
        await scheduler.tick()
    monkeypatch.undo()
    fake.fail("conversations.history", "missing_scope")
    clock.advance(61)
    await scheduler.tick()
    assert len(fake.calls_for("chat.postMessage")) == 2  # the documented cost of leaving the scope out
    assert db.rows("SELECT status FROM daily_posts") == [("posted",)]
