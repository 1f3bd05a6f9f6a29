"""The badge's Slack side: the public celebration (admins can turn it off) and the user group."""

from __future__ import annotations

import asyncio
import dataclasses

from adapters.slack.app import build_app

from .fake_slack import RESPONSE_URL
from .tracker import BackgroundTracker
from .workspace import TEAM, USERGROUP, Workspace, texts


async def earn_badge(user) -> dict:
    msg = await user.command("challenge")
    for _ in range(5):
        await user.answer(msg)
    return msg


async def test_a_failed_user_group_update_is_kept_pending_and_retried(slack, fake, db, clock, app):
    fake.fail("usergroups.users.update", "permission_denied")
    alice = slack.user()
    msg = await earn_badge(alice)
    assert "You earned the *Technical Debt Mastery* badge" in texts(msg)  # the badge itself is not lost
    assert len(fake.channel_posts) == 1
    assert db.rows("SELECT status, attempts, reason FROM badge_grants") == [("pending", 1, "permission_denied")]
    assert fake.usergroups[USERGROUP] == ["U0BOB"]

    grants = app.quiz.grants
    assert await grants.retry_due() == 0  # too soon: the first retry waits a minute
    assert len(fake.calls_for("usergroups.users.update")) == 1
    clock.advance(60)
    assert await grants.retry_due() == 1
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]
    assert db.rows("SELECT status, attempts, reason FROM badge_grants") == [("done", 2, None)]
    assert await grants.retry_due() == 0 and len(fake.calls_for("usergroups.users.update")) == 2


async def test_the_retry_loop_backs_off_and_never_gives_up(slack, fake, db, clock, app):
    fake.fail("usergroups.users.update", "plan_upgrade_required", times=3)
    await earn_badge(slack.user())
    grants = app.quiz.grants
    task = asyncio.create_task(grants.run(clock))  # every minute, try what is due

    async def a_minute_later() -> None:
        grants.asleep.clear()
        clock.advance(60)
        await grants.asleep.wait()  # the loop woke, made its pass and sleeps again

    try:
        async with asyncio.timeout(5):
            await grants.asleep.wait()  # the pass at start-up: the failure is too recent
            assert len(fake.calls_for("usergroups.users.update")) == 1
            # due 1, 2 and 4 minutes after each failure; the loop looks every minute
            for minute, attempts in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3), (6, 3), (7, 4)]:
                await a_minute_later()
                assert len(fake.calls_for("usergroups.users.update")) == attempts, minute
            assert grants.passes == 8
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert db.rows("SELECT status, attempts FROM badge_grants") == [("done", 4)]
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]


async def test_a_player_already_in_the_group_is_not_written_again(slack, fake, db):
    fake.usergroups[USERGROUP] = ["U0ALICE", "U0BOB"]
    await earn_badge(slack.user())
    assert fake.calls_for("usergroups.users.update") == []
    assert db.rows("SELECT status FROM badge_grants") == [("done",)]


async def test_429_on_the_user_group_honours_retry_after(slack, fake, db, recorded_sleeps):
    fake.rate_limit("usergroups.users.list", times=1, retry_after=7)
    await earn_badge(slack.user())
    assert [c.status for c in fake.calls_for("usergroups.users.list")] == [429, 200]
    assert len(recorded_sleeps) == 1 and 7 <= recorded_sleeps[0] < 8
    assert db.rows("SELECT status FROM badge_grants") == [("done",)]


async def test_429_that_does_not_stop_is_recorded_as_pending(slack, fake, db, recorded_sleeps):
    fake.rate_limit("usergroups.users.list", times=3, retry_after=30)
    await earn_badge(slack.user())
    assert len(fake.calls_for("usergroups.users.list")) == 3  # one try and two retries, then give up
    assert db.rows("SELECT status, reason FROM badge_grants") == [("pending", "ratelimited")]


async def test_429_on_a_response_url_honours_retry_after(slack, fake, recorded_sleeps):
    fake.rate_limit(RESPONSE_URL, times=1, retry_after=3)
    msg = await slack.user().command("challenge")
    assert msg is not None and "1/5" in texts(msg)
    assert [c.status for c in fake.calls_for(RESPONSE_URL)] == [429, 200]
    assert len(recorded_sleeps) == 1 and 3 <= recorded_sleeps[0] < 4


async def test_without_a_user_group_there_is_no_grant(settings, engine, client, fake, bank, db):
    app = build_app(dataclasses.replace(settings, slack_badge_usergroup_id=None), engine, client=client)
    ws = Workspace(fake, app, BackgroundTracker(app), bank)
    await earn_badge(ws.user())
    assert app.quiz.grants is None and db.count("badges") == 1 and db.count("badge_grants") == 0
    assert not [c for c in fake.calls if c.method.startswith("usergroups.")]
    assert len(fake.channel_posts) == 1


async def test_an_admin_turns_the_celebration_off(slack, fake, db):
    ada = slack.user("U0ADMIN", "ada")
    shown = texts(await ada.command("admin celebrate off"))
    assert "*Badge celebrations:* off" in shown
    assert fake.calls_for("users.info")[0].args["user"] == "U0ADMIN"
    assert db.rows("SELECT platform, tenant, key, value FROM tenant_settings") == [
        ("slack", TEAM, "celebrate", "off")]
    msg = await earn_badge(slack.user())
    assert "You earned the *Technical Debt Mastery* badge" in texts(msg)  # still told privately
    assert fake.channel_posts == []
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]  # the group is not a celebration


async def test_only_admins_change_the_celebration(slack, fake, db):
    shown = texts(await slack.user().command("admin celebrate off"))
    assert shown == ":warning: Only workspace or server admins can use `admin` commands."
    fake.fail("users.info", "missing_scope")  # without users:read nobody is an admin
    await slack.user("U0ADMIN", "ada").command("admin celebrate off")
    assert db.count("tenant_settings") == 0
    await earn_badge(slack.user())
    assert len(fake.channel_posts) == 1


async def test_the_celebration_setting_defaults_to_the_environment(settings, engine, client, fake, bank):
    app = build_app(dataclasses.replace(settings, celebrate=False), engine, client=client)
    await earn_badge(Workspace(fake, app, BackgroundTracker(app), bank).user())
    assert fake.channel_posts == [] and fake.calls_for("chat.postMessage") == []


async def test_the_celebration_falls_back_to_chat_post_message(slack, fake):
    alice = slack.user()
    msg = await alice.command("challenge")
    for _ in range(4):
        await alice.answer(msg)
    fake.fail(RESPONSE_URL, "used_url", times=3)  # the private result (replacing, new), the celebration
    await alice.answer(msg)
    [private] = fake.calls_for("chat.postEphemeral")
    assert private.args["user"] == "U0ALICE" and "5/5 correct" in private.args["text"]
    [post] = fake.calls_for("chat.postMessage")
    assert post.args["channel"] == "C0QUIZ" and post.args["text"].startswith(":tada: <@U0ALICE> earned")
