"""The Mastery role when Discord refuses: the badge is kept, the grant is pending with the reason,
admins see it, and it is retried (by command and on start) once the permission is fixed."""

from __future__ import annotations

import discord
import pytest
import simcord

from bot.replies import BADGE_MASTERY
from tests.adapters.discord.helpers import callback_type, grant, play, role_names

ROLE = "Technical Debt Mastery"


def set_bot_permissions(world, **changes) -> None:
    """Edit the bot's managed role (no public SimCord builder; the backend op also tells the bot)."""
    perms = discord.Permissions.all()
    perms.administrator = False
    for name, value in changes.items():
        setattr(perms, name, value)
    bot_role = world.guild.roles["TestBot"]
    world.env.backend.edit_role(world.guild.id, bot_role.id, {"permissions": perms.value})


async def test_without_manage_roles_the_grant_is_pending_shown_to_admins_and_retried_on_command(world):
    set_bot_permissions(world, manage_roles=False)
    assert not world.env.bot.get_guild(world.guild.id).me.guild_permissions.manage_roles

    _, last = await play(world, world.alice)

    summary, note, congrats = last.followups  # never a crash: the badge and the celebration still happen
    assert "could not be added yet" in note.embeds[0].description
    assert not congrats.ephemeral and "earned the **Technical Debt Mastery** badge:" in congrats.content
    assert world.query("SELECT badge FROM badges") == [(BADGE_MASTERY,)]
    status, reason, attempts = grant(world, world.alice.id)
    assert status == "pending" and attempts == 1
    assert reason.startswith("The bot lacks the Manage Roles permission. Fix: Server Settings > Roles > TestBot: "
                             "turn on Manage Roles, then run /mldebt-admin retry-roles.")
    assert ROLE not in world.guild.roles
    # the refusal was Discord's (403 / 50013), caught and recorded, not an error of the bot
    assert world.env.errors == []

    mod = world.admin()
    shown = await mod.slash(world.channel, "mldebt-admin status")
    embed = shown.response.embeds[0]
    assert shown.response.ephemeral and embed.title == "mldebt admin status"
    pending = next(f for f in embed.fields if f.name == "Pending: Alice")
    assert f"<@{world.alice.id}> · {BADGE_MASTERY} · 1 attempt" in pending.value and "Manage Roles" in pending.value

    set_bot_permissions(world)  # the admin gives the bot Manage Roles back
    retried = await mod.slash(world.channel, "mldebt-admin retry-roles")
    assert callback_type(world, retried) == 5  # several Discord calls: acknowledged (deferred) first
    assert retried.response.content == "Retried the pending Mastery roles: 1 granted, 0 still pending."
    assert [f.value for f in retried.response.embeds[0].fields][:2] == ["on", "No pending grants."]
    assert ROLE in await role_names(world, world.alice)
    assert grant(world, world.alice.id) == ("sent", None, 2)


async def test_a_role_above_the_bot_is_pending_then_granted_when_the_bot_restarts(world, make_bot):
    role = world.guild.create_role(ROLE, position=50)  # above the bot's own role

    _, last = await play(world, world.alice)

    status, reason, _ = grant(world, world.alice.id)
    assert status == "pending"
    assert reason.startswith(f'The role "{ROLE}" is not below the bot\'s highest role "TestBot". Fix: Server '
                             f'Settings > Roles: drag "TestBot" above "{ROLE}"')
    assert not any(r.method == "POST" and r.path.endswith("/roles") for r in world.env.http_requests)  # reused
    assert ROLE not in await role_names(world, world.alice)

    # the admin drags the bot's role above it; the grant is retried when the bot (re)starts
    world.env.backend.edit_role(world.guild.id, world.guild.roles["TestBot"].id, {"position": 60})
    await world.env.restart_bot(make_bot())
    assert ROLE in await role_names(world, world.alice)
    assert grant(world, world.alice.id) == ("sent", None, 2)
    assert role.id == world.guild.roles[ROLE].id


async def test_a_pending_grant_for_a_member_who_left_stays_pending_with_that_reason(world):
    set_bot_permissions(world, manage_roles=False)
    await play(world, world.alice)
    world.guild.remove_member(world.alice)
    set_bot_permissions(world)
    mod = world.admin()
    retried = await mod.slash(world.channel, "mldebt-admin retry-roles")
    assert retried.response.content == "Retried the pending Mastery roles: 0 granted, 1 still pending."
    status, reason, attempts = grant(world, world.alice.id)
    assert (status, attempts) == ("pending", 2) and reason.startswith("The player is no longer a member")


async def test_celebrations_can_be_turned_off(world):
    mod = world.admin()
    off = await mod.slash(world.channel, "mldebt-admin celebrate", state="off")
    assert off.response.embeds[0].fields[0].value == "off"
    _, last = await play(world, world.alice)
    assert [m.ephemeral for m in last.followups] == [True, True]  # summary and note; nothing public
    assert world.channel.history() == []
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
