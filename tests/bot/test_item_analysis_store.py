"""The store's one read for item analysis, fed by the real engine and by simulated rows."""

from __future__ import annotations

import os

from bot.item_analysis import analyse
from bot.replies import Player, QuestionCard, TimeUp
from bot.store.base import ItemAnswerRow
from tests.fakes.answers import Plants, simulate, store_rows
from tests.fakes.bank import wrong_letter


def _card(replies) -> QuestionCard:
    return next(r for r in replies if isinstance(r, QuestionCard))


async def _read(store, platform=None, tenant=None) -> list[ItemAnswerRow]:
    async with store.transaction() as tx:
        return await tx.item_answers(platform, tenant)


async def test_rows_from_a_played_challenge(engine, bank, clock, store, alice, bob):
    t0 = clock.now().timestamp()
    card = _card(await engine.start(alice, "challenge"))
    first_q = card.question_id
    clock.advance(30)
    wrong = wrong_letter(bank, card)
    async with store.transaction() as tx:
        shown_order = (await tx.get_item(card.session_id, 0)).choice_order
    original = shown_order["ABCD".index(wrong)]  # the letter in the YAML, whatever the shuffle showed
    await engine.answer(alice, card.session_id, card.question_id, wrong, "e1")  # first attempt wrong
    clock.advance(10)
    right = next(c.letter for c in card.choices if c.text == bank.question(first_q).answer_text)
    card = _card(await engine.answer(alice, card.session_id, card.question_id, right, "e2"))
    second_q = card.question_id
    await engine.hint(alice)
    clock.advance(card.time_limit + 1)  # the second question times out
    replies = await engine.resume(alice)
    assert isinstance(replies[0], TimeUp)
    card = _card(replies)
    clock.advance(7)
    await engine.skip(alice)  # a skip without an answer is not an answer
    # bob, in another workspace, answers one question
    bob_elsewhere = Player("slack", "T2", "bob", "Bob")
    bcard = _card(await engine.start(bob_elsewhere, "practice"))
    clock.advance(12)
    await engine.answer(bob_elsewhere, bcard.session_id, bcard.question_id, wrong_letter(bank, bcard), "b1")

    alice_rows = await _read(store, "console", "local")
    assert [(r.question_id, r.position, r.status, r.first_choice, r.first_outcome, r.hint_used) for r in alice_rows] \
        == [(first_q, 0, "correct", original, "wrong", False), (second_q, 1, "timeout", None, None, True)]
    first, second = alice_rows
    assert (first.opened_at, first.answered_at, first.closed_at) == (t0, t0 + 30, t0 + 40)
    # the second question opened when the first closed, and ran to its time-out
    assert second.opened_at == t0 + 40 and second.closed_at == t0 + 40 + card.time_limit + 1
    everyone = await _read(store)
    assert len(everyone) == 3 and everyone[-1].question_id == bcard.question_id
    assert everyone[-1].answered_at - everyone[-1].opened_at == 12  # untimed practice still has a time used
    assert await _read(store, "slack", "T1") == []

    s = next(s for s in analyse(alice_rows, bank.questions).items if s.question_id == first_q)
    assert (s.players, s.p, s.choice_shares[original], s.median_seconds) == (1, 0.0, 1.0, 30)


async def test_simulated_rows_round_trip_through_the_store(bank, store):
    rows = simulate(bank, 40, Plants(dead_distractor={"alpha-02": "B"}))
    await store_rows(store, rows)
    assert await _read(store) == sorted(rows, key=lambda r: (r.player_id, r.opened_at, r.session_id, r.position))
    flagged = {s.question_id for s in analyse(await _read(store), bank.questions).items if s.flags}
    assert "alpha-02" in flagged


async def _db_with_population(tmp_path, bank) -> tuple:
    from bot.store import SqliteStore

    db = tmp_path / "answers.sqlite3"
    store = SqliteStore(db)
    await store.open()
    try:
        await store_rows(store, simulate(bank, 60, Plants(dead_distractor={"alpha-02": "B"}, easy={"alpha-03"})))
    finally:
        await store.close()
    return db


def _main(monkeypatch, db, *argv):
    from bot.cli import main

    for k in ("MLDEBT_QUESTION_BANK", "SLACK_BOT_TOKEN", "DISCORD_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MLDEBT_DATABASE", str(db))
    return main(["--env-file", os.devnull, "bank", "report", *argv])


async def test_bank_report_command_writes_each_format(tmp_path, bank, monkeypatch, capsys):
    import asyncio
    import csv
    import io
    import json

    db = await _db_with_population(tmp_path, bank)
    bank_dir = str(tmp_path / "bank")

    def run(*argv):
        # main() runs its own event loop, so it goes to a worker thread, away from the test's loop
        return asyncio.to_thread(_main, monkeypatch, db, bank_dir, *argv)

    assert await run() == 0
    table = capsys.readouterr().out
    assert "  - dead distractor B: picked by nobody in 60 answers" in table
    assert await run("--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 20 and {r["question_id"] for r in rows if r["flags"]} == {"alpha-02", "alpha-03"}
    assert await run("--format", "json", "--min-answers", "61") == 0
    assert all(q["flags"] == [] for q in json.loads(capsys.readouterr().out)["questions"])
    out = tmp_path / "report.html"
    assert await run("--format", "html", "--output", str(out)) == 0
    assert capsys.readouterr().out == f"Wrote {out}: 20 questions, 2 flagged.\n"
    assert out.read_text().count("<circle data-question=") == 20


async def test_bank_report_without_a_database_says_so(tmp_path, bank, monkeypatch, capsys):
    import asyncio

    db = tmp_path / "missing.sqlite3"
    assert await asyncio.to_thread(_main, monkeypatch, db, str(tmp_path / "bank")) == 1
    assert capsys.readouterr().err == (f"No database at {db}: nothing has been answered yet "
                                       "(or set MLDEBT_DATABASE).\n")
    assert not db.exists()
