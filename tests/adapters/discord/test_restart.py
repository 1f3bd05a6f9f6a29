"""A restart mid-challenge: buttons posted by the old process still work; commands are not re-synced
unless they changed."""

from __future__ import annotations

from adapters.discord.sync import HASH_KEY, force_sync, tree_hash
from tests.adapters.discord.helpers import card, field_names, play, right


def command_puts(world) -> list:
    return [r for r in world.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]


async def test_old_buttons_work_after_a_restart_mid_challenge(world, make_bot):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    first = await world.alice.click(started.response, label=right(world.bank, started.response))
    second_card = first.followups[0]
    old_bot = world.env.bot

    await world.env.restart_bot(make_bot())  # a fresh process: nothing carried over in memory
    assert world.env.bot is not old_bot and world.env.bot.is_ready()

    clicked = await world.alice.click(second_card, label=right(world.bank, second_card))
    assert clicked.acknowledged and clicked.response.id == second_card.id
    assert field_names(second_card)[0].startswith("✅ Correct!")
    third = clicked.followups[0]
    assert third.embeds[0].title == "Mastery challenge · 3/5"
    session = card(second_card).session_id
    assert world.query("SELECT position, correct FROM sessions WHERE id = ?", session) == [(2, 2)]


async def test_a_time_out_after_a_restart_is_delivered_by_the_new_bot(world, make_bot):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    await world.env.restart_bot(make_bot())
    world.clock.advance(121)
    (delivery,) = await world.scheduler.tick()
    assert field_names(started.response)[0].startswith("⏰ Time's up!")
    assert started.followups[0].embeds[0].title == "Mastery challenge · 2/5"


async def test_commands_are_synced_once_and_again_only_when_the_tree_changed(world, make_bot):
    (put,) = command_puts(world)
    assert put.path == f"/applications/{world.env.bot.application_id}/commands"
    assert sorted(c["name"] for c in put.json) == ["mldebt", "mldebt-admin"]
    tenant = f"app:{world.env.bot.application_id}"
    assert world.query("SELECT value FROM tenant_settings WHERE platform = 'discord' AND tenant = ? AND key = ?",
                       tenant, HASH_KEY) == [(tree_hash(world.env.bot.tree),)]

    await world.env.restart_bot(make_bot())  # same tree: no PUT, and the commands still work
    assert len(command_puts(world)) == 1
    assert (await world.alice.slash(world.channel, "mldebt help")).acknowledged

    changed = make_bot()
    changed.tree.get_command("mldebt").description = "A changed description"
    await world.env.restart_bot(changed)
    assert len(command_puts(world)) == 2
    assert world.env.backend.find_command("mldebt", None)["description"] == "A changed description"

    # `mldebt discord sync` forces it
    assert await force_sync(world.engine, world.env.bot, world.env.bot.tree) == 2
    assert len(command_puts(world)) == 3


async def test_a_finished_challenge_survives_a_restart_in_stats(world, make_bot):
    await play(world, world.alice)
    await world.env.restart_bot(make_bot())
    stats = await world.alice.slash(world.channel, "mldebt stats")
    fields = {f.name: f.value for f in stats.response.embeds[0].fields}
    assert fields["Badges"] == "Technical Debt Mastery" and fields["Challenges"] == "1"
