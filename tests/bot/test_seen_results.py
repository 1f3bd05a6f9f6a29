"""The player always learns what happened: letters already tried, closed questions, unseen results,
clean text, and team names that are one team however they are typed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from bot import errors
from bot.commands import handle_text
from bot.engine import QuizEngine
from bot.replies import Feedback, Notice, Player, QuestionCard, Rejected, Skipped, Summary, TeamList, TimeUp
from bot.store import SqliteStore
from bot.store.migrations import MIGRATIONS, sql_for
from bot.store.postgres import PostgresStore
from bot.text import clean, command_text, fold_key
from tests.fakes.bank import correct_letter, wrong_letter


def card_of(replies) -> QuestionCard:
    return next(r for r in replies if isinstance(r, QuestionCard))


async def rows(store, sql: str, *args) -> list[tuple]:
    async with store.transaction() as tx:
        return await tx._all(sql, args)


async def test_a_letter_already_tried_is_refused_without_using_an_attempt(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    miss = wrong_letter(bank, card)
    await engine.answer(alice, card.session_id, card.question_id, miss, "e1")
    with pytest.raises(errors.AlreadyTried) as refused:
        await engine.answer(alice, card.session_id, card.question_id, miss, "e2")  # a second device, same card
    assert refused.value.message == f"You already tried {miss} on this question; pick another letter."
    assert await rows(store, "SELECT attempt, shown_choice FROM answers") == [(1, miss)]
    assert await rows(store, "SELECT attempts_used, status FROM session_items WHERE position = 0") == [(1, "open")]
    # the last attempt is still there
    [fb, *_] = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "e3")
    assert fb.correct and fb.final


async def test_a_card_shown_again_carries_the_letters_tried(engine, bank, alice):
    card = card_of(await engine.start(alice, "challenge"))
    assert card.tried == ()
    miss = wrong_letter(bank, card)
    await engine.answer(alice, card.session_id, card.question_id, miss, "e1")
    [again] = await engine.resume(alice)
    assert again.tried == (miss,) and again.attempts_left == 1
    assert f"Already tried: {miss}." in again.text()
    assert card_of(await engine.start(alice, "challenge")).tried == (miss,)  # "you already have one open"


async def test_a_closed_question_tells_what_happened_and_shows_the_current_one(engine, bank, alice, clock):
    first = card_of(await engine.start(alice, "challenge"))
    hit = correct_letter(bank, first)
    replies = await engine.answer(alice, first.session_id, first.question_id, hit, "e1")
    second = card_of(replies)
    outcome = await engine.question_outcome(alice, first.session_id, first.question_id)
    fb, note, current = outcome
    assert isinstance(fb, Feedback) and fb.correct and fb.chosen == hit and fb.question_id == first.question_id
    assert note == Notice("That question was already closed (what happened to it is above); here is your "
                          "current question.")
    assert current == second
    # a skipped question, then one timed out while nobody looked
    await engine.skip(alice, second.session_id, second.question_id)
    [skipped, *_] = await engine.question_outcome(alice, second.session_id, second.question_id)
    assert isinstance(skipped, Skipped)
    clock.advance(10_000)
    outcome = await engine.question_outcome(alice, second.session_id, second.question_id)
    assert isinstance(outcome[0], Skipped) and isinstance(outcome[1], TimeUp)  # the third one, closed just now
    assert isinstance(outcome[-1], QuestionCard) and outcome[-1].position == 4


async def test_a_closed_question_of_a_finished_quiz_ends_with_the_summary(engine, bank, alice):
    replies = await engine.start(alice, "challenge")
    first = card_of(replies)
    for i in range(5):
        card = card_of(replies)
        replies = await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), f"e{i}")
    *_, note, summary = await engine.question_outcome(alice, first.session_id, first.question_id)
    assert note.message.endswith("the quiz has ended.") and isinstance(summary, Summary)
    with pytest.raises(errors.NotYourSession):
        await engine.question_outcome(Player("console", "local", "bob", "Bob"), first.session_id, first.question_id)


async def test_an_unseen_result_is_shown_once_on_the_next_interaction(engine, bank, alice, store):
    card = card_of(await engine.start(alice, "challenge"))
    assert await engine.unseen(alice) == []
    miss = wrong_letter(bank, card)
    await engine.answer(alice, card.session_id, card.question_id, miss, "e1")
    assert await engine.note_unseen(alice, card.session_id, card.question_id)
    assert await rows(store, "SELECT session_id, question_id FROM unseen_results") == [
        (card.session_id, card.question_id)]
    note, fb = await engine.unseen(alice)
    assert note.message.startswith("Your last answer was recorded, but the platform did not let mldebt show")
    assert isinstance(fb, Feedback) and fb.chosen == miss and not fb.final
    assert await engine.unseen(alice) == []
    assert await rows(store, "SELECT COUNT(*) FROM unseen_results") == [(0,)]
    # nothing to note for a session that is not the player's (or a daily post id)
    assert not await engine.note_unseen(Player("console", "local", "bob"), card.session_id, card.question_id)
    assert not await engine.note_unseen(alice, "feedbeef", card.question_id)


async def test_an_unseen_result_survives_a_restart(tmp_path: Path, bank, clock, alice):
    store = SqliteStore(tmp_path / "q.sqlite3")
    await store.open()
    engine = QuizEngine(store, bank, clock)
    card = card_of(await engine.start(alice, "challenge"))
    await engine.answer(alice, card.session_id, card.question_id, correct_letter(bank, card), "e1")
    await engine.note_unseen(alice, card.session_id, card.question_id)
    await store.close()
    store = SqliteStore(tmp_path / "q.sqlite3")
    await store.open()
    try:
        _, fb = await QuizEngine(store, bank, clock).unseen(alice)
        assert isinstance(fb, Feedback) and fb.correct
    finally:
        await store.close()


def test_clean_drops_control_characters_and_keeps_lines_only_where_asked():
    assert clean("a\x00b\x1b[31mc\x07d\x7fe\x85f") == "ab[31mcdef"
    assert clean("one\ntwo\tthree\r") == "one two three"
    assert clean("one\ntwo\tthree\r", multiline=True) == "one\ntwo\tthree"
    assert clean("lone \ud800 surrogate") == "lone  surrogate"
    assert clean("Zoë 🦉 \u200b") == "Zoë 🦉 \u200b"  # not a control character: kept, escaped by adapters
    assert command_text("team join `x`\x00") == "team join \u02cbx\u02cb"


async def test_control_characters_never_come_back_in_an_echo(engine):
    p = Player("discord", "G1", "U1", "Al\x1b[2Jice\x07")
    [reply] = await handle_text(engine, p, "team join no\x00such\x1bteam")
    assert reply == Rejected("There is no team called 'nosuchteam' here. See `team list`.", "BadRequest")
    [unknown] = await handle_text(engine, p, "chal\x07lenge\x00x")
    assert unknown.intro == "Unknown command 'challengex'. mldebt teaches technical debt in ML systems. Commands:"
    await handle_text(engine, p, "stats")
    async with engine.store.transaction() as tx:
        assert await tx._all("SELECT display_name FROM players") == [("Al[2Jice",)]


async def test_full_width_and_case_are_one_team(engine):
    a, b = Player("discord", "G1", "U1", "A"), Player("discord", "G1", "U2", "B")
    [made] = await handle_text(engine, a, "team create Admins")
    assert made == Notice("Team 'Admins' created, and you are in it. Others join with `team join Admins`.")
    [dup] = await handle_text(engine, b, "team create Ａｄｍｉｎｓ")
    assert dup == Rejected("A team called 'Ａｄｍｉｎｓ' already exists here (names ignore case).", "BadRequest")
    [joined] = await handle_text(engine, b, "team join ＡＤＭＩＮＳ")
    assert joined == Notice("You joined team 'Admins'.")
    [listed] = await handle_text(engine, b, "team list")
    assert isinstance(listed, TeamList) and [(t.name, t.members) for t in listed.teams] == [("Admins", 2)]
    assert fold_key("  Straße  Ｔｅａｍ ") == "strasse team"


async def test_migration_7_refolds_team_keys_and_keeps_a_clash_reachable(tmp_path: Path):
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    for version, name, sql in MIGRATIONS:
        if version < 7:
            conn.executescript(sql_for(sql, "sqlite"))
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
    conn.execute("INSERT INTO players (id, platform, tenant, user_id, created_at) VALUES (1, 'discord', 'G', 'U', 0)")
    # keys as the old code wrote them (NFC + casefold): full width stayed full width
    for team_id, name in ((1, "Admins"), (2, "Ａｄｍｉｎｓ"), (3, "ＭＬ Ops")):
        conn.execute("INSERT INTO teams (id, scope, name, name_key, created_by, created_at) VALUES (?, 'discord:G', "
                     "?, ?, 1, 0)", (team_id, name, name.casefold()))
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        assert await store.schema_version() >= 7
        assert await rows(store, "SELECT id, name_key FROM teams ORDER BY id") == [
            (1, "admins"), (2, "ａｄｍｉｎｓ"), (3, "ml ops")]  # the younger clash keeps its old key
    finally:
        await store.close()


async def test_migration_7_refolds_team_keys_on_postgresql_by_the_same_rule(postgres_url: str):
    """PostgreSQL has no case folding in SQL: the store re-keys the teams in Python right after step 7."""
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # back to before step 7
        await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                           "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for version, name, sql in sorted(MIGRATIONS):
            if version < 7:
                await conn.execute(sql_for(sql, "postgresql"))
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
        await conn.execute("INSERT INTO players (id, platform, tenant, user_id, created_at) "
                           "VALUES (1, 'discord', 'G', 'U', 0)")
        for team_id, name in ((1, "Admins"), (2, "Ａｄｍｉｎｓ"), (3, "ＭＬ Ops"), (4, "STRASSE"), (5, "Straße")):
            await conn.execute("INSERT INTO teams (id, scope, name, name_key, created_by, created_at) "
                               "VALUES ($1, 'discord:G', $2, $3, 1, 0)", team_id, name, name.lower())
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert await store.schema_version() >= 7
        async with store.transaction() as tx:
            got = [tuple(r) for r in await tx._all("SELECT id, name_key FROM teams ORDER BY id")]
        # the younger clashes keep their old keys; casefold makes Straße "strasse", as in SQLite
        assert got == [(1, "admins"), (2, "ａｄｍｉｎｓ"), (3, "ml ops"), (4, "strasse"), (5, "straße")]
    finally:
        await store.close()
