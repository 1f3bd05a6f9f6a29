"""`admin items` through the shared command parser: admins only, this tenant's answers only."""

from __future__ import annotations

from dataclasses import replace

from bot.commands import handle_text
from bot.replies import ItemFlags, Rejected
from tests.fakes.answers import Plants, simulate, store_rows

PLANTS = Plants(dead_distractor={"alpha-02": "B"}, lure={"beta-01": "A"})


async def test_admin_items_lists_the_flagged_questions_of_this_tenant(engine, bank, store, alice):
    await store_rows(store, simulate(bank, 40, PLANTS))
    # another workspace's answers (a broken key there) do not show here
    others = simulate(bank, 40, Plants(broken_key={"alpha-01": "A"}), seed=5)
    await store_rows(store, [replace(r, player_id=r.player_id + 1000, session_id="x" + r.session_id)
                             for r in others], "slack", "T9")
    [reply] = await handle_text(engine, alice, "admin items 1", is_admin=True)
    assert isinstance(reply, ItemFlags)
    assert (reply.questions, reply.players, reply.total_flagged, reply.min_answers) == (20, 40, 2, 30)
    [first] = reply.flagged  # the most urgent one only
    assert first.question_id == "alpha-02" and first.source.endswith("topics/alpha.yaml:49")
    assert first.reasons == ("distractor D picked more than the key C: 38% vs 32%",
                             "dead distractor B: picked by nobody in 40 answers")
    assert reply.text().splitlines() == [
        "20 questions answered by 40 players; 2 flagged (a question needs 30 answers before any flag).",
        f"alpha-02 ({first.source}): p 0.33, r +0.77, 40 players",
        "  - distractor D picked more than the key C: 38% vs 32%",
        "  - dead distractor B: picked by nobody in 40 answers",
        "…and 1 more: `mldebt bank report` lists them all.",
    ]


async def test_admin_items_is_for_admins_with_a_sane_count(engine, alice):
    [denied] = await handle_text(engine, alice, "admin items", is_admin=False)
    assert denied == Rejected("Only workspace or server admins can use `admin` commands.", "NotAdmin")
    [bad] = await handle_text(engine, alice, "admin items 99", is_admin=True)
    assert bad == Rejected("Usage: admin items [N], N from 1 to 25.", "BadRequest")
    [empty] = await handle_text(engine, alice, "admin items", is_admin=True)
    assert empty.text() == "0 questions answered by 0 players; 0 flagged (a question needs 30 answers before any flag)."
