"""The Mastery role when Discord refuses: the badge is kept, the grant (an outbox entry) fails with the
reason and the fix, admins see it, and `/mldebt-admin retry-roles` makes the outbox try it again."""

from __future__ import annotations

import discord
import pytest
import simcord

from bot.replies import BADGE_MASTERY
from tests.adapters.discord.helpers import callback_type, deliver, grant, play, role_names

ROLE = "Technical Debt Mastery"


def set_bot_permissions(world, **changes) -> None:
    """Edit the bot's managed role (no public SimCord builder; the backend op also tells the bot)."""
    perms = discord.Permissions.all()
    perms.administrator = False
    for name, value in changes.items():
        setattr(perms, name, value)
    bot_role = world.guild.roles["TestBot"]
    world.env.backend.edit_role(world.guild.id, bot_role.id, {"permissions": perms.value})


async def test_without_manage_roles_the_grant_fails_is_shown_to_admins_and_retried_on_command(world):
    set_bot_permissions(world, manage_roles=False)
    assert not world.env.bot.get_guild(world.guild.id).me.guild_permissions.manage_roles

    _, last = await play(world, world.alice)
    await deliver(world)

    summary, note = last.followups  # never a crash: the badge and the celebration still happen
    assert "role is being added to you" in note.embeds[0].description
    congrats = world.channel.last_message
    assert "earned the **Technical Debt Mastery** badge:" in congrats.content  # no role to mention
    assert world.query("SELECT badge FROM badges") == [(BADGE_MASTERY,)]
    status, reason, attempts = grant(world, world.alice.id)
    assert status == "failed" and attempts == 1 and reason == "The bot lacks the Manage Roles permission."
    (fix,), = world.query("SELECT error_fix FROM outbox WHERE kind = 'grant'")
    assert fix == "Server Settings > Roles > TestBot: turn on Manage Roles, then run /mldebt-admin retry-roles."
    assert ROLE not in world.guild.roles
    # the refusal was Discord's (403 / 50013), caught and recorded, not an error of the bot
    assert world.env.errors == []

    mod = world.admin()
    shown = await mod.slash(world.channel, "mldebt-admin status")
    embed = shown.response.embeds[0]
    assert shown.response.ephemeral and embed.title == "mldebt admin status"
    pending = next(f for f in embed.fields if f.name == "Pending: Alice")
    assert f"<@{world.alice.id}> · {BADGE_MASTERY} · 1 attempt" in pending.value and "Manage Roles" in pending.value
    assert f"missing\\_permission: {fix}" in pending.value  # the reason code, Markdown-escaped, and the fix

    set_bot_permissions(world)  # the admin gives the bot Manage Roles back
    retried = await mod.slash(world.channel, "mldebt-admin retry-roles")
    assert callback_type(world, retried) == 5  # acknowledged (deferred) first
    assert retried.response.content == "Trying 1 waiting delivery again now."
    assert ROLE not in await role_names(world, world.alice)  # a trigger: the outbox worker grants it
    await deliver(world)
    assert ROLE in await role_names(world, world.alice)
    assert grant(world, world.alice.id)[::2] == ("sent", 2)
    status = await mod.slash(world.channel, "mldebt-admin status")
    assert [f.value for f in status.response.embeds[0].fields][:2] == ["on", "No pending grants."]


async def test_a_role_above_the_bot_fails_then_is_granted_once_the_admin_fixes_the_order(world):
    role = world.guild.create_role(ROLE, position=50)  # above the bot's own role

    await play(world, world.alice)
    await deliver(world)

    status, reason, _ = grant(world, world.alice.id)
    assert status == "failed"
    assert reason == f'The role "{ROLE}" is not below the bot\'s highest role "TestBot".'
    (fix,), = world.query("SELECT error_fix FROM outbox WHERE kind = 'grant'")
    assert fix.startswith(f'Server Settings > Roles: drag "TestBot" above "{ROLE}"')
    assert not any(r.method == "POST" and r.path.endswith("/roles") for r in world.env.http_requests)  # reused
    assert ROLE not in await role_names(world, world.alice)
    await deliver(world)  # a permanent refusal is not retried in a loop
    assert grant(world, world.alice.id)[2] == 1

    # the admin drags the bot's role above it and asks for a retry
    world.env.backend.edit_role(world.guild.id, world.guild.roles["TestBot"].id, {"position": 60})
    await world.admin().slash(world.channel, "mldebt-admin retry-roles")
    await deliver(world)
    assert ROLE in await role_names(world, world.alice)
    assert grant(world, world.alice.id)[::2] == ("sent", 2)
    assert role.id == world.guild.roles[ROLE].id


async def test_a_grant_for_a_member_who_left_fails_with_that_reason(world):
    set_bot_permissions(world, manage_roles=False)
    await play(world, world.alice)
    await deliver(world)
    world.guild.remove_member(world.alice)
    set_bot_permissions(world)
    mod = world.admin()
    retried = await mod.slash(world.channel, "mldebt-admin retry-roles")
    assert retried.response.content == "Trying 1 waiting delivery again now."
    await deliver(world)
    status, reason, attempts = grant(world, world.alice.id)
    assert (status, attempts) == ("failed", 2) and reason.startswith("The player is no longer a member")
    # that failure is the member's alone: the server's grants have no problem recorded
    assert world.query("SELECT target FROM outbox_targets WHERE platform = 'discord'") == []


async def test_celebrations_can_be_turned_off(world):
    mod = world.admin()
    off = await mod.slash(world.channel, "mldebt-admin celebrate", state="off")
    assert off.response.embeds[0].fields[0].value == "off"
    _, last = await play(world, world.alice)
    await deliver(world)
    assert [m.ephemeral for m in last.followups] == [True, True]  # summary and note; nothing public
    assert world.channel.history() == []
    assert world.query("SELECT status, sent_ref FROM outbox WHERE kind = 'celebration'") == [("sent", "off")]
    assert ROLE in await role_names(world, world.alice)


async def test_admin_commands_are_hidden_from_members_and_checked_at_run_time(world):
    assert "mldebt-admin status" not in world.alice.available_commands(world.channel)
    assert "mldebt challenge" in world.alice.available_commands(world.channel)
    with pytest.raises(simcord.SetupError, match="default-member-permissions"):
        await world.alice.slash(world.channel, "mldebt-admin status")

    # a server admin may open the command to someone in Server Settings > Integrations;
    # the run-time check still refuses without Manage Server, and nothing is changed
    admin_cmd = world.env.backend.find_command("mldebt-admin", None)
    world.guild.set_command_permissions(int(admin_cmd["id"]), {world.alice: True})
    refused = await world.alice.slash(world.channel, "mldebt-admin celebrate", state="off")
    assert refused.response.ephemeral
    assert refused.response.content == "⚠️ You need the Manage Server permission for `/mldebt-admin` commands."
    assert world.query("SELECT * FROM tenant_settings WHERE key = 'celebrate'") == []
    refused = await world.alice.slash(world.channel, "mldebt-admin retry-roles")
    assert "Manage Server" in refused.response.content

    registered = world.env.backend.find_command("mldebt-admin", None)
    assert int(registered["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert world.env.backend.find_command("mldebt", None).get("default_member_permissions") is None
