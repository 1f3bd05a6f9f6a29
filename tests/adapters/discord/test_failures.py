"""Discord on a bad day: every failure class, injected per call, seen from the player, the admin and the DB.

Each scenario injects one failure into one Discord call (faults.py, or SimCord's own JSON error
codes) and checks what the bot did about it: the exact calls it made, the rows it wrote, what the
player saw and what an admin is told. No Discord exception escapes the adapter (SimCord would
report it as a bot error and fail the test); time only moves on SimCord's virtual clock.
"""

from __future__ import annotations

import logging

import discord
import pytest
from simcord.backend.serializers import guild_create_payload

from adapters.discord.components import ButtonState, question_view
from adapters.discord.errors import ACK_TIMEOUT, CALL_TIMEOUT
from bot.platform_errors import Permanent, Transient
from bot.scheduler import daily_post_of
from tests.adapters.discord.faults import as_bot
from tests.adapters.discord.helpers import buttons, card, field_names, grant, play, right, wrong

ROLE = "Technical Debt Mastery"
CALLBACK = "/interactions/*/callback"
ORIGINAL = "/webhooks/*/messages/@original"
FOLLOWUP = "/webhooks/*/*"


def calls_since(world, start: int) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("/")[1]) for r in world.env.http_requests[start:]]


# -- the acknowledgement ------------------------------------------------------------------------------

async def test_a_click_discord_already_closed_writes_nothing_and_the_next_click_counts(world, faults):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    faults.code("POST", CALLBACK, 404, 10062, "Unknown interaction")
    requests = len(world.env.http_requests)
    lost = await world.alice.click(message, label=right(world.bank, message))
    assert not lost.acknowledged  # the player's client says "interaction failed"
    assert calls_since(world, requests) == [("POST", "interactions")]  # nothing after the refused ack
    assert world.query("SELECT COUNT(*) FROM answers") == [(0,)]
    again = await world.alice.click(message, label=right(world.bank, message))
    assert field_names(again.response)[0].startswith("✅ Correct!")
    assert world.query("SELECT outcome FROM answers") == [("correct",)]
    assert world.env.errors == []


@pytest.mark.simcord(settle_timeout=1.0)  # the hang's timeout waits for advance_time, not the real clock
async def test_an_ack_that_hangs_is_given_up_after_its_timeout_and_the_result_comes_next_time(world, faults):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    faults.add("POST", CALLBACK, "hang")
    clicked = await world.alice.click(message, label=wrong(world.bank, message))
    await world.env.advance_time(ACK_TIMEOUT)
    # the ack never arrived, so Discord refuses the edit: the answer is stored, the player saw nothing
    assert not clicked.acknowledged
    assert world.query("SELECT attempt, outcome FROM answers") == [(1, "wrong")]
    assert world.query("SELECT session_id, question_id FROM unseen_results") == [(c.session_id, c.question_id)]
    resumed = await world.alice.slash(world.channel, "mldebt resume")
    shown = resumed.response
    assert shown.content.startswith("Your last answer was recorded, but the platform did not let mldebt show")
    assert shown.embeds[0].title.startswith("❌ Not quite:")
    assert shown.embeds[1].title == "Mastery challenge · 1/5"
    assert world.query("SELECT COUNT(*) FROM unseen_results") == [(0,)]
    again = await world.alice.slash(world.channel, "mldebt resume")
    assert not again.response.content  # shown once
    assert world.env.errors == []


async def test_an_ack_already_given_elsewhere_still_gets_its_result(world, faults):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    faults.code("POST", CALLBACK, 400, 40060, "Interaction has already been acknowledged.")
    clicked = await world.alice.click(message, label=right(world.bank, message))
    assert world.query("SELECT outcome FROM answers") == [("correct",)]
    assert world.env.errors == [] and clicked is not None


# -- showing the result ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "details"), [
    ("code", {"status": 404, "code": 10062, "message": "Unknown interaction"}),
    ("code", {"status": 404, "code": 10015, "message": "Unknown Webhook"}),
    ("html", {"status": 503}),
    ("empty", {"status": 502}),
    ("rate_limit", {}),
    ("connection", {}),
], ids=["10062", "10015", "html-503", "empty-502", "429", "connection"])
async def test_a_result_discord_would_not_show_is_shown_on_the_next_interaction(world, faults, caplog, kind, details):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    c = card(message)
    hit = right(world.bank, message)
    faults.add("PATCH", ORIGINAL, kind, **details)
    caplog.set_level(logging.INFO, "adapters.discord")
    clicked = await world.alice.click(message, label=hit)
    assert clicked.acknowledged and clicked.followups == []  # the turn stopped at the failed edit
    assert "⏳" in message.embeds[0].description  # the card still looks open
    assert world.query("SELECT outcome FROM answers") == [("correct",)]
    assert world.query("SELECT question_id FROM unseen_results") == [(c.question_id,)]
    line = next(r.getMessage() for r in caplog.records if "could not show player" in r.getMessage())
    assert "shown on their next interaction" in line and "Traceback" not in caplog.text
    # the next click on the stale card: the card shows its own result, and the next question comes
    told = await world.alice.click(message, label=hit)
    assert field_names(message)[0].startswith("✅ Correct!") and all(b["disabled"] for b in buttons(message))
    (nxt,) = told.followups
    assert nxt.content.startswith("That question was already closed") and nxt.embeds[0].title.endswith("2/5")
    assert world.query("SELECT COUNT(*) FROM answers") == [(1,)]
    assert world.env.errors == []


@pytest.mark.simcord(settle_timeout=1.0)
async def test_an_edit_that_hangs_is_bounded_by_the_call_timeout(world, faults):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    faults.add("PATCH", ORIGINAL, "hang")
    await world.alice.click(message, label=right(world.bank, message))
    assert world.query("SELECT COUNT(*) FROM unseen_results") == [(0,)]  # still waiting on Discord
    await world.env.advance_time(CALL_TIMEOUT)
    assert world.query("SELECT COUNT(*) FROM unseen_results") == [(1,)]
    assert world.env.errors == []


# -- re-shown cards and closed questions ------------------------------------------------------------------

async def test_a_card_shown_again_disables_the_letter_tried_and_the_engine_refuses_it(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    miss = wrong(world.bank, message)
    await world.alice.click(message, label=miss)
    resumed = await world.alice.slash(world.channel, "mldebt resume")  # e.g. from another device
    state = {b["label"]: (b["disabled"], b["style"]) for b in buttons(resumed.response)}
    assert state[miss] == (True, discord.ButtonStyle.danger.value)
    assert all(not d for label, (d, _) in state.items() if label not in (miss,))
    # a copy of the card from before the miss (ids are public): the engine refuses the letter, no attempt used
    c = card(message)
    channel = world.env.bot.get_channel(world.channel.id)
    copy = await channel.send("copy", view=question_view(c.session_id, c.question_id, "ABCD", ButtonState()))
    again = await world.alice.click(copy, label=miss)
    assert again.followups[0].content == f"⚠️ You already tried {miss} on this question; pick another letter."
    assert again.followups[0].ephemeral
    assert world.query("SELECT attempts_used FROM session_items WHERE position = 0") == [(1,)]
    assert world.query("SELECT COUNT(*) FROM answers") == [(1,)]


# -- echoes -----------------------------------------------------------------------------------------------

async def test_echoed_user_text_renders_no_mention_markdown_or_control_characters(world):
    joined = await world.alice.slash(world.channel, "mldebt team join", name="<@&123> **x**\x1b[2J")
    content = joined.response.content
    assert content == "⚠️ There is no team called '<\u200b@&123> \\*\\*x\\*\\*[2J' here. See `team list`."
    assert "\x1b" not in content
    unknown = await world.alice.slash(world.channel, "mldebt practice", topic="@everyone_`x`")
    assert unknown.response.content.startswith("⚠️ Unknown topic '@\u200beveryone\\_ˋxˋ'.")


# -- role grants -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "details", "outcome", "reason"), [
    ("code", {"status": 404, "code": 10011, "message": "Unknown Role"}, "failed",
     f"The role \"{ROLE}\" was deleted while trying to grant the role \"{ROLE}\". Fix: Nothing to re-create by hand:"),
    ("code", {"status": 403, "code": 50013, "message": "Missing Permissions"}, "failed",
     f"Discord refused to grant \"{ROLE}\" (403, code 50013: Missing Permissions). Fix: Give mldebt the Manage Roles "
     f"permission and move its role above \"{ROLE}\""),
    ("html", {"status": 503}, "pending",
     f"Discord answered 503 with an HTML page while trying to grant the role \"{ROLE}\"."),
], ids=["10011", "50013", "html-503"])
async def test_a_refused_role_grant_is_pending_with_the_reason_and_the_fix(world, faults, kind, details, outcome,
                                                                            reason):
    """Permanent refusals fail the outbox entry (an admin fixes it, then retry-roles); passing ones wait for a retry."""
    faults.add("PUT", "/guilds/*/members/*/roles/*", kind, **details)
    await play(world, world.alice)
    await world.scheduler.outbox.run_once(kinds=("grant",))
    status, stored, attempts = grant(world, world.alice.id)
    detail, _, fix = reason.partition(" Fix: ")
    assert (status, attempts) == (outcome, 1) and stored.startswith(detail)
    if fix:
        (stored_fix,), = world.query("SELECT error_fix FROM outbox WHERE kind = 'grant'")
        assert stored_fix.startswith(fix)
    mod = world.admin()
    shown = await mod.slash(world.channel, "mldebt-admin status")
    pending = next(f for f in shown.response.embeds[0].fields if f.name == "Pending: Alice")
    shown_reason = fix or detail  # a failed grant shows its fix, a waiting one what happened
    assert shown_reason[:60].replace("*", "\\*") in pending.value or shown_reason[:40] in pending.value
    assert world.env.errors == []


@pytest.mark.simcord(settle_timeout=1.0)
async def test_a_role_grant_that_hangs_is_a_transient_timeout_for_the_outbox(world, faults):
    await play(world, world.alice)
    faults.add("PUT", "/guilds/*/members/*/roles/*", "hang")
    (entry,) = await world.scheduler.outbox._claim(["discord:grant"])  # what the worker hands the sender
    sending = as_bot(world.env, world.env.bot.roles.send(entry))
    await world.env.advance_time(CALL_TIMEOUT)
    with pytest.raises(Transient) as raised:
        await sending
    assert raised.value.reason == "timeout"
    assert raised.value.detail == f"Discord did not answer in time while trying to grant the role \"{ROLE}\"."


# -- daily posts ---------------------------------------------------------------------------------------------

async def _claimed(world):
    mod = world.admin()
    await mod.slash(world.channel, "mldebt-admin daily set", channel=world.channel, time="09:00",
                    timezone="Europe/Berlin")
    await mod.slash(world.channel, "mldebt-admin daily now")
    (entry,) = await world.scheduler.outbox._claim()  # what the outbox worker hands the Discord sender
    return daily_post_of(entry)


@pytest.mark.parametrize(("kind", "details", "cls", "reason", "fix"), [
    ("code", {"status": 403, "code": 50013, "message": "Missing Permissions"}, Permanent, "missing_permission",
     "Give mldebt View Channel, Send Messages and Embed Links in <#{ch}> (the channel's Permissions tab), then run "
     "/mldebt-admin daily set again."),
    ("code", {"status": 403, "code": 50001, "message": "Missing Access"}, Permanent, "missing_access",
     "Give mldebt View Channel in <#{ch}>, or pick another channel with /mldebt-admin daily set."),
    ("code", {"status": 404, "code": 10003, "message": "Unknown Channel"}, Permanent, "channel_not_found",
     "Pick another channel with /mldebt-admin daily set."),
    ("code", {"status": 400, "code": 50035, "message": "Invalid Form Body"}, Permanent, "invalid_request",
     "A bug in mldebt: report it with this line."),
    ("html", {"status": 503}, Transient, "http_503", None),
    ("empty", {"status": 502}, Transient, "http_502", None),
    ("rate_limit", {"retry_after": 7.5}, Transient, "rate_limited", None),
    ("connection", {}, Transient, "connection_error", None),
], ids=["50013", "50001", "10003", "50035", "html-503", "empty-502", "429", "connection"])
async def test_a_daily_post_discord_refuses_is_a_classified_error(world, faults, kind, details, cls, reason, fix):
    post = await _claimed(world)
    faults.add("POST", "/channels/*/messages", kind, **details)
    with pytest.raises(cls) as raised:
        await world.env.bot.daily.post(post)
    assert raised.value.reason == reason
    assert raised.value.fix == (fix.format(ch=world.channel.id) if fix else None)
    if kind == "rate_limit":
        assert raised.value.retry_after == 7.5
    if reason == "channel_not_found":
        assert raised.value.scope == "target" and raised.value.gone
    assert world.channel.history() == []


async def test_a_daily_post_that_hangs_is_a_transient_timeout(world, faults):
    post = await _claimed(world)
    faults.add("POST", "/channels/*/messages", "hang")
    task = as_bot(world.env, world.env.bot.daily.post(post))
    await world.env.advance_time(CALL_TIMEOUT)
    with pytest.raises(Transient) as raised:
        await task
    assert raised.value.reason == "timeout"


async def test_a_reveal_of_a_deleted_post_is_done_not_retried(world, faults):
    post = await _claimed(world)
    ref = await world.env.bot.daily.post(post)
    await world.engine.daily_posted(post.post_id, ref)
    world.clock.advance(hours=25)
    faults.code("PATCH", "/channels/*/messages/*", 404, 10008, "Unknown Message")
    _, reveals = await world.scheduler.daily_tick()
    assert [r.post_id for r in reveals] == [post.post_id]
    assert world.query("SELECT status FROM daily_posts WHERE id = ?", post.post_id) == [("closed",)]


# -- time-outs through the stored route -----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "status", "reason"), [
    ("10015", "failed", "interaction_expired"),  # the token is dead: retrying cannot help
    ("html", "pending", "http_503"),  # Discord had a bad moment: the outbox retries after a backoff
])
async def test_a_time_out_message_discord_refuses_is_failed_or_retried_by_the_outbox(world, faults, kind, status,
                                                                                    reason):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    message = started.response
    if kind == "10015":
        faults.code("*", "/webhooks/*", 404, 10015, "Unknown Webhook", times=None)
    else:
        faults.add("*", "/webhooks/*", kind, status=503, times=None)
    world.clock.advance(121)
    requests = len(world.env.http_requests)
    await world.scheduler.tick()
    assert calls_since(world, requests) == [("GET", "webhooks")]  # the first call failed: nothing shown, nothing more
    assert world.query("SELECT status, last_error FROM outbox WHERE kind = 'timeout'") == [(status, reason)]
    assert world.query("SELECT status FROM session_items WHERE position = 0") == [("timeout",)]
    faults.clear()
    told = await world.alice.click(message, label="A")  # the stale card shows what happened, and the next one comes
    assert field_names(message)[0].startswith("⏰ Time's up!")
    assert told.followups[0].embeds[0].title == "Mastery challenge · 2/5"
    assert world.env.errors == []


@pytest.mark.simcord(settle_timeout=1.0)
async def test_a_time_out_message_that_hangs_is_a_transient_timeout_for_the_outbox(world, faults):
    await world.alice.slash(world.channel, "mldebt challenge")
    world.clock.advance(121)
    (delivery,) = await world.engine.expire_due()
    faults.add("GET", "/webhooks/*", "hang")
    sending = as_bot(world.env, world.env.bot.deliver(delivery))  # what the outbox worker calls
    await world.env.advance_time(CALL_TIMEOUT)
    with pytest.raises(Transient) as raised:
        await sending
    assert raised.value.reason == "timeout"


# -- lifecycle -------------------------------------------------------------------------------------------------

async def test_a_server_that_removes_the_bot_is_paused_and_resumes_when_it_adds_it_back(world):
    mod = world.admin()
    await mod.slash(world.channel, "mldebt-admin daily set", channel=world.channel, time="09:00",
                    timezone="Europe/Berlin")
    await mod.slash(world.channel, "mldebt-admin daily now")
    guild_id, backend = world.guild.id, world.env.backend
    kept = backend.guilds[guild_id], {c: backend.channels[c] for c in backend.guilds[guild_id].channel_ids}
    backend.remove_guild(guild_id)  # kicked: Discord sends GUILD_DELETE
    await world.env.settle()
    assert world.query("SELECT state, reason FROM outbox_targets WHERE tenant = ?", str(guild_id)) == [
        ("paused", "guild_removed")]
    assert world.query("SELECT kind, status FROM outbox WHERE tenant = ?", str(guild_id)) == [("daily_post", "paused")]
    requests = len(world.env.http_requests)
    await world.scheduler.tick()
    assert not [r for r in world.env.http_requests[requests:] if "/channels/" in r.path]  # nothing tried
    assert world.env.errors == []

    # added back (SimCord never reuses an id, so the same server is put back by hand): GUILD_CREATE
    backend.guilds[guild_id], channels = kept
    backend.channels.update(channels)
    payload = dict(guild_create_payload(backend, kept[0]))
    payload.pop("unavailable", None)  # a join, not an outage ending (discord.py: on_guild_join)
    backend.emit("GUILD_CREATE", payload)
    await world.env.settle()
    assert world.query("SELECT COUNT(*) FROM outbox_targets WHERE tenant = ?", str(guild_id)) == [(0,)]
    assert world.query("SELECT kind, status FROM outbox WHERE tenant = ?", str(guild_id)) == [("daily_post", "pending")]


async def test_a_command_sync_discord_refuses_at_start_up_is_one_warning_not_a_failed_start(world, faults, make_bot,
                                                                                           caplog):
    async with world.engine.store.transaction() as tx:  # the commands changed since the last sync
        await tx.set_setting("discord", f"app:{world.env.bot.application_id}", "command_tree_sha256", "old")
    faults.add("PUT", "/applications/*/commands", "html", status=503)
    await world.env.restart_bot(make_bot())
    assert "Discord commands not synced (http_503: Discord answered 503 with an HTML page" in caplog.text
    started = await world.alice.slash(world.channel, "mldebt challenge")  # the commands synced before still work
    assert started.response.embeds[0].title == "Mastery challenge · 1/5"
    assert world.env.errors == []


async def test_a_celebration_the_channel_refuses_fails_with_the_fix_and_the_role_is_still_granted(world, faults):
    await play(world, world.alice)
    faults.code("POST", "/channels/*/messages", 403, 50013, "Missing Permissions")
    await world.scheduler.outbox.run_once()
    rows = world.query("SELECT kind, status, last_error, error_fix FROM outbox ORDER BY kind")
    assert rows == [("celebration", "failed", "missing_permission",
                     f"Give mldebt View Channel, Send Messages and Embed Links in <#{world.channel.id}> (the "
                     "channel's Permissions tab), so that the next badges are celebrated there."),
                    ("grant", "sent", None, None)]
    assert world.channel.history() == []
    assert world.env.errors == []
