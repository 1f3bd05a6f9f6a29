"""`/mldebt admin items` in Slack: a signed slash command into the real bolt app, Block Kit back."""

from __future__ import annotations

from tests.fakes.answers import Plants, simulate, store_rows

from .workspace import TEAM, texts


async def test_admin_items_in_slack(slack, store, bank):
    await store_rows(store, simulate(bank, 40, Plants(dead_distractor={"alpha-02": "B"}, lure={"beta-01": "A"})),
                     "slack", TEAM)
    shown = await slack.user("U0ADMIN", "ada").command("admin items 1")
    lines = texts(shown).splitlines()
    assert lines[0] == (":mag: *Item analysis* · 20 questions answered by 40 players; 2 flagged (a question needs "
                        "30 answers before any flag).")
    assert lines[1].startswith("*alpha-02* `") and lines[1].endswith("alpha.yaml:49` · p 0.33 · r +0.77 · 40 players")
    assert lines[2:] == ["• distractor D picked more than the key C: 38% vs 32%",
                         "• dead distractor B: picked by nobody in 40 answers",
                         "…and 1 more: `mldebt bank report` lists them all."]
    denied = await slack.user().command("admin items")
    assert texts(denied) == ":warning: Only workspace or server admins can use `admin` commands."
