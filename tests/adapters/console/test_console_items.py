"""`admin items` in the terminal: the console's one local player is its admin."""

from __future__ import annotations

import io

from adapters.console.app import ConsoleApp
from tests.fakes.answers import Plants, simulate, store_rows


async def test_admin_items_in_the_console(engine, bank, store, alice):
    await store_rows(store, simulate(bank, 40, Plants(dead_distractor={"alpha-02": "B"}, lure={"beta-01": "A"})))
    out = io.StringIO()
    app = ConsoleApp(engine, alice, stdin=io.StringIO(""), stdout=out)
    await app.handle_line("admin items 5")
    text = out.getvalue()
    assert "20 questions answered by 40 players; 2 flagged (a question needs 30 answers before any flag)." in text
    assert "  - dead distractor B: picked by nobody in 40 answers" in text
    assert "  - distractor A picked more than the key B: 65% vs 25%" in text
    assert "[ItemFlags]" not in text  # rendered as a known reply, not the loud fallback
