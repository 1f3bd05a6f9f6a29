"""`/mldebt-admin items` under SimCord: the real discord.py bot, an ephemeral embed back."""

from __future__ import annotations

from tests.fakes.answers import Plants, simulate, store_rows


async def test_admin_items_in_discord(world):
    rows = simulate(world.bank, 40, Plants(dead_distractor={"alpha-02": "B"}, lure={"beta-01": "A"}))
    await store_rows(world.engine.store, rows, "discord", str(world.guild.id))
    shown = await world.admin().slash(world.channel, "mldebt-admin items", count=2)
    assert shown.response.ephemeral
    embed = shown.response.embeds[0]
    assert embed.title == "mldebt item analysis"
    assert embed.description == ("20 questions answered by 40 players; 2 flagged (a question needs 30 answers "
                                 "before any flag).")
    assert [f.name for f in embed.fields] == ["alpha-02", "beta-01"]
    first = embed.fields[0].value.splitlines()
    assert first[0].endswith("alpha.yaml:49` · p 0.33 · r +0.77 · 40 players")
    assert first[1:] == ["• distractor D picked more than the key C: 38% vs 32%",
                         "• dead distractor B: picked by nobody in 40 answers"]
    assert embed.footer.text is None  # all flagged questions shown
    assert "mldebt-admin items" not in world.alice.available_commands(world.channel)
