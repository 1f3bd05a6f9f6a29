"""A player's quiz in Slack, end to end: signed requests in, the real AsyncApp, the fake Slack out."""

from __future__ import annotations

import asyncio
import json

from bot.scoring import points_for

from .fake_slack import RESPONSE_URL
from .slack_requests import app_home_opened_event, signed_event
from .workspace import SECRET, TEAM, USERGROUP, buttons, letter, question_id, texts


async def test_whole_challenge_to_the_badge(slack, fake, db, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    shown = texts(msg)
    assert "Mastery challenge" in shown and "1/5" in shown
    assert set(buttons(msg)) == {"A", "B", "C", "D", "Hint", "Skip"}
    assert "Answer by <!date^" in shown and "|09:0" in shown  # Slack date token with a UTC fallback
    first_post = fake.calls_for(RESPONSE_URL)[0].json
    assert first_post["response_type"] == "ephemeral"  # only the player sees the quiz

    seen = []
    for n in range(1, 6):
        seen.append(question_id(msg))
        await alice.answer(msg)
        shown = texts(msg)  # the same message, replaced by the click's response_url
        assert ":white_check_mark: *Correct!*" in shown
        assert bank.question(seen[-1]).explanation in shown
        if n < 5:
            assert f"{n + 1}/5" in shown and question_id(msg) != seen[-1]
    assert buttons(msg) == {}  # the last answer leaves no buttons
    assert "Mastery challenge finished:* 5/5 correct" in texts(msg)
    assert "You earned the *Technical Debt Mastery* badge" in texts(msg)
    assert len(fake.ephemeral_messages) == 1  # one quiz message, replaced at every step

    # the public celebration, in the channel, mentioning the player by id
    assert [p["channel"] for p in fake.channel_posts] == ["C0QUIZ"]
    assert fake.channel_posts[0]["text"] == ":tada: <@U0ALICE> earned the *Technical Debt Mastery* badge: 5/5!"
    # the user group: read, then write the old members plus the player
    assert [c.method for c in fake.calls if c.method.startswith("usergroups.")] == [
        "usergroups.users.list", "usergroups.users.update"]
    assert fake.calls_for("usergroups.users.update")[0].args == {"usergroup": USERGROUP, "users": "U0BOB,U0ALICE"}
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]

    # and the database agrees
    assert db.rows("SELECT platform, tenant, user_id, display_name FROM players") == [
        ("slack", TEAM, "U0ALICE", "alice")]
    assert db.rows("SELECT mode, status, correct, total FROM sessions") == [("challenge", "finished", 5, 5)]
    assert db.rows("SELECT question_id, outcome, attempt FROM answers ORDER BY position") == [
        (q, "correct", 1) for q in seen]
    assert db.rows("SELECT badge FROM badges") == [("Technical Debt Mastery",)]
    assert db.rows("SELECT kind, status, attempts, last_error FROM outbox ORDER BY kind") == [
        ("celebration", "sent", 1, None), ("grant", "sent", 1, None)]


async def test_wrong_then_right(slack, db, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    qid = question_id(msg)
    right, wrong = letter(bank, msg), letter(bank, msg, correct=False)
    await alice.click(msg, wrong)
    shown = texts(msg)
    # still the same question, buttons still there, the verdict on top
    assert f":x: Not quite: *{wrong}* is wrong. 1 attempt left." in shown
    assert question_id(msg) == qid and "1 attempt left" in shown.splitlines()[-1]
    assert bank.question(qid).explanation not in shown  # not revealed while an attempt is left
    await alice.click(msg, right)
    shown = texts(msg)
    points = points_for(bank.question(qid).difficulty, correct=True, attempt=2, hint_used=False)  # half
    assert f":white_check_mark: *Correct!* +{points} points." in shown and "2/5" in shown
    assert db.rows("SELECT attempt, shown_choice, outcome, points FROM answers ORDER BY attempt") == [
        (1, wrong, "wrong", 0), (2, right, "correct", points)]


async def test_hint_button_shows_the_hint_in_the_question_and_costs_points(slack, db, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    qid = question_id(msg)
    await alice.click(msg, "Hint")
    shown = texts(msg)
    assert f":bulb: *Hint:* {bank.question(qid).hint}" in shown
    assert question_id(msg) == qid and "Hint" not in buttons(msg)  # asked once; the button is gone
    assert "costs 25%" not in shown
    assert db.rows("SELECT hint_used FROM session_items WHERE position = 0") == [(1,)]
    await alice.answer(msg)
    assert ":white_check_mark: *Correct!* +22 points." in texts(msg)  # 30 x 0.75, rounded
    assert db.rows("SELECT points FROM answers") == [(22,)]


async def test_hint_and_skip_buttons_and_commands(slack, db, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    qid = question_id(msg)
    hint = await alice.command("hint")
    assert texts(hint).startswith(f":bulb: *Hint:* {bank.question(qid).hint}")
    await alice.click(msg, "Skip")
    shown = texts(msg)
    assert ":fast_forward: *Skipped.* The answer was" in shown and "2/5" in shown
    assert db.rows("SELECT status FROM session_items ORDER BY position LIMIT 2") == [("skipped",), ("open",)]
    # typed: the next question comes in a new message, and its time-out will go to that message
    req, url = alice.command_request("skip")
    await slack.send(req)
    assert "3/5" in texts(slack.fake.ephemeral_messages[slack.fake.response_url_state(url).original["ephemeral"]])
    assert json.loads(db.rows("SELECT route FROM sessions")[0][0]) == {"response_url": url, "channel": "C0QUIZ"}


async def test_time_up_is_delivered_by_the_scheduler(slack, fake, db, clock, scheduler, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    qid = question_id(msg)
    limit = bank.question(qid).time_limit
    clock.advance(limit - 1)
    assert await scheduler.tick() == []  # not yet
    clock.advance(1)
    [delivery] = await scheduler.tick()
    assert delivery.player.user == "U0ALICE"
    post = fake.calls_for(RESPONSE_URL)[-1].json
    assert post["replace_original"] is True  # the stale question is replaced, not left clickable
    shown = texts(msg)
    assert ":alarm_clock: *Time's up!* The answer was *" in shown
    assert bank.question(qid).answer_text in shown and bank.question(qid).explanation in shown
    assert "2/5" in shown and question_id(msg) != qid
    assert db.rows("SELECT status, points FROM session_items WHERE position = 0") == [("timeout", 0)]
    assert db.count("answers") == 0


async def test_time_up_with_an_expired_response_url_falls_back_to_post_ephemeral(slack, fake, clock, scheduler, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    fake.fail(RESPONSE_URL, "expired_url", times=2)  # replacing, then as a new message
    clock.advance(bank.question(question_id(msg)).time_limit)
    await scheduler.tick()
    [call] = fake.calls_for("chat.postEphemeral")
    assert call.args["channel"] == "C0QUIZ" and call.args["user"] == "U0ALICE"
    assert "Time's up!" in call.args["text"] and "2/5" in json_blocks(call)
    assert [c.json["replace_original"] for c in fake.calls_for(RESPONSE_URL)[1:]] == [True, False]


async def test_the_scheduler_loop_drives_the_time_out(slack, fake, clock, scheduler, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    task = scheduler.start()
    try:
        async with asyncio.timeout(5):
            await scheduler.asleep.wait()
            clock.advance(bank.question(question_id(msg)).time_limit)
            await fake.wait_for(RESPONSE_URL, count=2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "Time's up!" in texts(msg) and "2/5" in texts(msg)


async def test_a_late_click_on_a_stale_question_is_refused_privately(slack, fake, db, clock, scheduler, bank):
    alice = slack.user()
    msg = await alice.command("challenge")
    stale = {**msg, "blocks": list(msg["blocks"])}  # what a lagging client still shows
    clock.advance(bank.question(question_id(msg)).time_limit)
    await scheduler.tick()
    await alice.click(stale, "A")
    refusal = fake.calls_for(RESPONSE_URL)[-1].json
    assert refusal["replace_original"] is False  # a new private message; the quiz message stays
    assert texts(refusal) == ":warning: That question is already closed; answer the current one."
    assert "2/5" in texts(msg)
    assert db.count("answers") == 0


def json_blocks(call) -> str:
    blocks = call.args["blocks"]
    return blocks if isinstance(blocks, str) else json.dumps(blocks)


async def test_practice_shows_the_worked_solution(slack, bank, db):
    alice = slack.user()
    msg = await alice.command("practice alpha")
    assert "Practice: Alpha" in texts(msg) and "Untimed" in texts(msg)
    await alice.answer(msg)
    shown = texts(msg)
    q = next(q for q in bank.questions.values() if q.explanation in shown)
    assert "*Worked solution*" in shown and q.solution.quick_check in shown
    assert db.rows("SELECT s.mode, a.points FROM sessions s JOIN answers a ON a.session_id = s.id") == [
        ("practice", 0)]  # practice earns no points


async def test_stats_topics_learn_and_help(slack):
    alice = slack.user()
    assert "*Points:* 0" in texts(await alice.command("stats"))
    assert "*Alpha* (`alpha`)" in texts(await alice.command("topics"))
    assert "*How to pay it down*" in texts(await alice.command("learn alpha"))
    helptext = texts(await alice.command("help"))
    assert "`/mldebt challenge`:" in helptext and "`/mldebt stats`:" in helptext


async def test_unknown_text_gets_the_help(slack, db):
    alice = slack.user()
    shown = texts(await alice.command("dance now"))
    assert shown.startswith("Unknown command 'dance'. mldebt teaches technical debt in ML systems.")
    assert "`/mldebt challenge`:" in shown
    assert texts(await alice.command("")).startswith("mldebt teaches")
    assert db.count("sessions") == 0


async def test_starting_twice_shows_the_open_question(slack, db):
    alice = slack.user()
    first = await alice.command("challenge")
    again = await alice.command("test")
    assert "You already have a mastery challenge open (1/5)" in texts(again)
    assert question_id(again) == question_id(first)
    assert db.count("sessions") == 1


async def test_app_home_shows_the_players_stats(slack, fake, db):
    alice = slack.user()
    await alice.command("team create Data Wranglers")
    msg = await alice.command("challenge")
    for _ in range(5):
        await alice.answer(msg)
    resp = await slack.send(signed_event(SECRET, app_home_opened_event(user="U0ALICE"), team_id=TEAM))
    assert resp.status == 200
    [call] = fake.calls_for("views.publish")
    view = fake.home_views["U0ALICE"]
    assert call.args["user_id"] == "U0ALICE" and view["type"] == "home"
    shown = texts(view)
    points = db.rows("SELECT SUM(points) FROM answers")[0][0]
    assert f"*Points:* {points} · *answered:* 5 · *accuracy:* 100%" in shown
    assert ":medal: Technical Debt Mastery" in shown
    assert "*Challenges played:* 1" in shown and "`/mldebt challenge`" in shown
    assert "*Streak:* 1 day" in shown and "*Team:* Data Wranglers" in shown and "*Rank:* #1" in shown
    # the Messages tab fires the same event: nothing to publish
    await slack.send(signed_event(SECRET, app_home_opened_event(user="U0ALICE", tab="messages"), team_id=TEAM))
    assert len(fake.calls_for("views.publish")) == 1


async def test_teams_and_leaderboards_through_slack(slack, db):
    alice, bob = slack.user(), slack.user("U0BOB", "bob")
    assert texts(await alice.command("leaderboard")).endswith("No points yet. Be the first: `/mldebt challenge`.")
    assert "Team 'Data Wranglers' created" in texts(await alice.command("team create Data Wranglers"))
    await bob.command("team join data wranglers")
    assert "• *Data Wranglers*: 2 members, 0 points  ← yours" in texts(await bob.command("team list"))
    msg = await alice.command("challenge")
    await alice.answer(msg)
    points = db.rows("SELECT SUM(points) FROM answers")[0][0]
    board = texts(await bob.command("leaderboard teams all")).splitlines()
    assert board == ["*Leaderboard: teams, all time*", f":first_place_medal: *Data Wranglers*: {points}, 2 members  ← you"]
    assert "Team names may use letters" in texts(await bob.command("team create <!channel>"))
    assert db.count("teams") == 1
