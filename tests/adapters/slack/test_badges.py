"""The badge's Slack side: the public celebration (admins can turn it off) and the user group."""

from __future__ import annotations

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


GRANT_ROWS = "SELECT status, attempts, last_error FROM outbox WHERE kind = 'grant'"


async def test_a_refused_user_group_update_is_shown_with_its_fix_and_retried_on_command(slack, fake, db, scheduler):
    fake.fail("usergroups.users.update", "permission_denied")
    alice = slack.user()
    msg = await earn_badge(alice)
    assert "You earned the *Technical Debt Mastery* badge" in texts(msg)  # the badge itself is not lost
    assert len(fake.channel_posts) == 1
    assert db.rows(GRANT_ROWS) == [("failed", 1, "permission_denied")]
    assert db.rows("SELECT target, state, reason FROM outbox_targets") == [
        ("badge:Technical Debt Mastery", "failing", "permission_denied")]
    assert fake.usergroups[USERGROUP] == ["U0BOB"]
    await scheduler.tick()
    assert len(fake.calls_for("usergroups.users.update")) == 1  # a permanent error is not retried by itself

    ada = slack.user("U0ADMIN", "ada")
    status = texts(await ada.command("admin status"))
    assert "Let apps change user groups" in status and "`/mldebt admin retry`" in status
    assert "permission_denied" in status
    shown = texts(await ada.command("admin retry"))
    assert "Trying 1 waiting delivery again now." in shown
    await scheduler.tick()
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]
    assert db.rows(GRANT_ROWS) == [("sent", 2, "permission_denied")]  # the last error stays for the record
    assert db.rows("SELECT * FROM outbox_targets") == []


async def test_transient_failures_back_off_and_never_give_up(slack, fake, db, clock, scheduler):
    fake.fail_http("usergroups.users.update", 503, times=3)  # an HTML error page each time
    await earn_badge(slack.user())
    assert db.rows(GRANT_ROWS) == [("pending", 1, "http_503")]
    for attempts in (2, 3, 4):
        await scheduler.tick()  # not due yet: the backoff holds it
        assert len(fake.calls_for("usergroups.users.update")) == attempts - 1
        clock.advance(hours=2)
        await scheduler.tick()
        assert len(fake.calls_for("usergroups.users.update")) == attempts
    assert db.rows(GRANT_ROWS) == [("sent", 4, "http_503")]
    assert fake.usergroups[USERGROUP] == ["U0BOB", "U0ALICE"]


async def test_a_player_already_in_the_group_is_not_written_again(slack, fake, db):
    fake.usergroups[USERGROUP] = ["U0ALICE", "U0BOB"]
    await earn_badge(slack.user())
    assert fake.calls_for("usergroups.users.update") == []
    assert db.rows(GRANT_ROWS) == [("sent", 1, None)]


async def test_429_on_the_user_group_honours_retry_after(slack, fake, db, recorded_sleeps):
    fake.rate_limit("usergroups.users.list", times=1, retry_after=7)
    await earn_badge(slack.user())
    assert [c.status for c in fake.calls_for("usergroups.users.list")] == [429, 200]
    assert len(recorded_sleeps) == 1 and 7 <= recorded_sleeps[0] < 8
    assert db.rows(GRANT_ROWS) == [("sent", 1, None)]


async def test_429_that_does_not_stop_waits_in_the_outbox(slack, fake, db, recorded_sleeps):
    fake.rate_limit("usergroups.users.list", times=3, retry_after=30)
    await earn_badge(slack.user())
    assert len(fake.calls_for("usergroups.users.list")) == 3  # one try and two retries, then the outbox waits
    [(status, attempts, error, not_before, first)] = db.rows(
        "SELECT status, attempts, last_error, not_before, first_error_at FROM outbox WHERE kind = 'grant'")
    assert (status, attempts, error) == ("pending", 1, "ratelimited") and not_before - first >= 30


async def test_without_a_user_group_there_is_no_grant(settings, engine, client, fake, bank, db):
    app = build_app(dataclasses.replace(settings, slack_badge_usergroup_id=None), engine, client=client)
    ws = Workspace(fake, app, BackgroundTracker(app), bank)
    await earn_badge(ws.user())
    assert app.quiz.grants is None and db.count("badges") == 1
    assert db.rows("SELECT kind, status FROM outbox") == [("celebration", "sent")]
    assert not [c for c in fake.calls if c.method.startswith("usergroups.")]
    assert len(fake.channel_posts) == 1


async def test_429_on_a_response_url_honours_retry_after(slack, fake, recorded_sleeps):
    fake.rate_limit(RESPONSE_URL, times=1, retry_after=3)
    msg = await slack.user().command("challenge")
    assert msg is not None and "1/5" in texts(msg)
    assert [c.status for c in fake.calls_for(RESPONSE_URL)] == [429, 200]
    assert len(recorded_sleeps) == 1 and 3 <= recorded_sleeps[0] < 4


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
