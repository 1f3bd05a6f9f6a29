"""A restart mid-challenge: buttons posted by the old process still work; commands are not re-synced
unless they changed; a badge's celebration and role outlive the process that awarded it."""

from __future__ import annotations

import random

import pytest

from adapters.discord.client import build_bot
from adapters.discord.sync import HASH_KEY, force_sync, tree_hash
from bot.engine import QuizEngine
from bot.outbox import LEASE_SECONDS
from bot.replies import BADGE_MASTERY
from bot.scheduler import Scheduler
from bot.store.sqlite import SqliteStore
from tests.adapters.discord.helpers import card, field_names, play, right, role_names

ROLE = "Technical Debt Mastery"


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


@pytest.mark.parametrize("killed", ["after_the_commit", "mid_delivery"])
async def test_a_badge_s_celebration_and_role_survive_a_crash_and_are_delivered_once(world, settings, killed):
    """The process dies after the 5/5 answer's commit (or while delivering, after Discord took both
    calls but before they were recorded): a new process on the same database delivers each once."""
    await play(world, world.alice)
    if killed == "mid_delivery":
        claimed = {e.kind: e for e in await world.scheduler.outbox._claim(["discord:grant", "discord:celebration"])}
        await world.env.bot.send_celebration(claimed["celebration"])  # before the role existed: no mention
        await world.env.bot.roles.send(claimed["grant"])
    puts_before = len(role_puts(world))

    store = SqliteStore(world.db)  # the new process: its own store, engine, scheduler and bot
    await store.open()
    try:
        engine = QuizEngine(store, world.bank, world.clock, rng=random.Random(3))
        scheduler = Scheduler(engine, world.clock)
        bot = build_bot(settings, engine)
        await world.env.restart_bot(bot)
        bot.attach(scheduler)
        world.clock.advance(LEASE_SECONDS + 1)  # the dead process's claims run out
        await scheduler.outbox.run_once()
        await scheduler.outbox.run_once()  # nothing left to send twice
    finally:
        await store.close()

    celebrations = [m for m in world.channel.history() if "earned the" in m.content]
    assert len(celebrations) == 1 and celebrations[0].content.startswith(f"🏅 **Alice** earned the **{BADGE_MASTERY}**")
    assert ROLE in await role_names(world, world.alice)
    assert len(role_puts(world)) == 1 and (killed == "mid_delivery") == (puts_before == 1)
    assert world.query("SELECT kind, status, sent_ref FROM outbox WHERE kind IN ('grant', 'celebration') "
                       "ORDER BY kind") == [("celebration", "sent", str(celebrations[0].id)),
                                            ("grant", "sent", str(world.guild.roles[ROLE].id))]


def role_puts(world) -> list:
    return [r for r in world.env.http_requests if r.method == "PUT" and "/roles/" in r.path]
