"""Only the player can answer their challenge."""

from __future__ import annotations

import pytest
import simcord

from adapters.discord.components import ButtonState, question_view
from tests.adapters.discord.helpers import buttons, card


async def test_another_member_cannot_even_see_an_ephemeral_challenge(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    with pytest.raises(simcord.SetupError, match="not visible"):  # Discord itself protects it
        await world.bob.click(started.response, label="A")


async def test_a_click_on_someone_elses_buttons_gets_a_private_refusal_and_writes_nothing(world):
    started = await world.alice.slash(world.channel, "mldebt challenge")
    c = card(started.response)
    # alice's buttons on a public message (a copied message, a crafted interaction: the ids are public)
    channel = world.env.bot.get_channel(world.channel.id)
    public = await channel.send("alice's question", view=question_view(c.session_id, c.question_id, "ABCD",
                                                                      ButtonState()))
    before = {t: world.query(f"SELECT * FROM {t}") for t in ("players", "answers", "sessions", "session_items")}
    requests = len(world.env.http_requests)

    for label in ("A", "Hint", "Skip"):
        refused = await world.bob.click(public, label=label)
        (private,) = refused.followups  # acknowledged first (deferred update), refused privately after
        assert refused.acknowledged and private.ephemeral
        assert private.content == "⚠️ This is not your challenge. Start your own with `/mldebt challenge`."
        assert private.id != public.id

    after = {t: world.query(f"SELECT * FROM {t}") for t in before}
    assert after == before  # not even bob's player row
    # nothing but three acknowledgements and three private refusals went to Discord: alice's message untouched
    calls = [(r.method, r.path.split("/")[1]) for r in world.env.http_requests[requests:]]
    assert calls == [("POST", "interactions"), ("POST", "webhooks")] * 3
    assert not any(b["disabled"] for b in buttons(started.response))
    assert world.env.backend.get_message(world.channel.id, public.id).content == "alice's question"


async def test_a_malformed_button_is_refused(world):
    channel = world.env.bot.get_channel(world.channel.id)
    view = question_view("abc", "alpha-01", "A", ButtonState(), hint=False, skip=False)
    view.children[0].item.custom_id = "mldebt:z:nonsense"
    public = await channel.send("odd", view=view)
    refused = await world.bob.click(public, custom_id="mldebt:z:nonsense")
    assert refused.followups[0].content == "⚠️ That button is not one of mine." and refused.followups[0].ephemeral
