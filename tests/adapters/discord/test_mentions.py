"""User text never pings: AllowedMentions.none() on every request, names escaped."""

from __future__ import annotations

from tests.adapters.discord.helpers import deliver, play


def pings(world, message_id: int) -> tuple:
    stored = world.env.backend.get_message(world.channel.id, message_id)
    return stored.ping_user_ids, stored.ping_role_ids, stored.mention_everyone


async def test_a_display_name_with_everyone_pings_nobody(world):
    assert world.env.bot.allowed_mentions.to_dict() == {"parse": []}
    sneaky = world.guild.add_member(world.env.create_user("sneaky", global_name="@everyone"), nick="@everyone <@&1>")

    await play(world, sneaky)
    await deliver(world)

    congrats = world.channel.last_message
    assert congrats.content.startswith("🏅 **@\u200beveryone <\u200b@&1>** earned")  # escaped, and…
    request = next(r for r in world.env.http_requests
                   if r.method == "POST" and r.path == f"/channels/{world.channel.id}/messages"
                   and r.json.get("content") == congrats.content)
    assert request.json["allowed_mentions"] == {"parse": []}  # …no mention is allowed on the wire
    assert pings(world, congrats.id) == ([], [], False)
    # every message the bot sent carried the same policy
    sent = [r for r in world.env.http_requests if r.method in ("POST", "PATCH")
            and ("/webhooks/" in r.path or "/callback" in r.path or "/messages" in r.path) and r.json]
    for r in sent:
        body = r.json.get("data", r.json) if "/callback" in r.path else r.json
        if "content" in body or "embeds" in body:
            assert body.get("allowed_mentions") == {"parse": []}, r.path

    board = await sneaky.slash(world.channel, "mldebt leaderboard")
    assert "@\u200beveryone" in board.response.embeds[0].description


async def test_a_team_name_cannot_carry_a_mention(world):
    refused = await world.alice.slash(world.channel, "mldebt team create", name="@everyone")
    assert refused.response.content.startswith("⚠️ Team names")
    made = await world.alice.slash(world.channel, "mldebt team create", name="Data Wranglers")
    assert made.response.ephemeral
    listed = await world.bob.slash(world.channel, "mldebt team list")
    assert "**Data Wranglers** · 1 member" in listed.response.embeds[0].description
