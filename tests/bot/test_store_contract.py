"""The contract every Store implementation must pass. Add a new backend to STORES."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.store import AnswerRow, ItemRow, SessionRow, SqliteStore, StoreBusy
from bot.store.migrations import MIGRATIONS
from bot.store.sqlite import split_statements


def sqlite_file(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "contract.sqlite3")


STORES = {"sqlite": sqlite_file}


@pytest.fixture(params=sorted(STORES))
async def any_store(request, tmp_path):
    s = STORES[request.param](tmp_path)
    await s.open()
    yield s
    await s.close()


async def _session(tx, player_id: int, sid: str = "s1", deadline: float | None = 100.0) -> None:
    await tx.insert_session(
        SessionRow(sid, player_id, "challenge", "open", 0, 2, 1.0, challenge_set="cs-1", route="r"),
        [ItemRow(sid, 0, "q-1", "ABCD", "open", deadline), ItemRow(sid, 1, "q-2", "DCBA")],
    )


async def test_player_upsert_is_stable(any_store):
    async with any_store.transaction() as tx:
        a = await tx.upsert_player("slack", "T1", "U1", "Ann", 1.0)
        b = await tx.upsert_player("slack", "T1", "U1", "", 2.0)
        c = await tx.upsert_player("slack", "T2", "U1", "Ann", 2.0)
        assert a == b != c
        assert (await tx.get_player(a)).display_name == "Ann"


async def test_session_round_trip_and_one_open_per_player(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
        s = await tx.open_session_for(pid)
        assert s == SessionRow("s1", pid, "challenge", "open", 0, 2, 1.0, "cs-1", "r", None, 0, 0)
        items = await tx.get_items("s1")
        assert [i.question_id for i in items] == ["q-1", "q-2"] and items[0].deadline == 100.0
    with pytest.raises(Exception):  # noqa: B017 - the backend's integrity error
        async with any_store.transaction() as tx:
            await _session(tx, pid, "s2")
    async with any_store.transaction() as tx:
        assert await tx.get_session("s2") is None  # rolled back whole


async def test_close_item_is_compare_and_set(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
        item = await tx.get_item("s1", 0)
        item.status = "timeout"
        assert await tx.close_item_if_open(item) is True
        assert await tx.close_item_if_open(item) is False


async def test_answer_event_key_unique(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
        row = AnswerRow("s1", 0, 1, "q-1", pid, "A", "A", "correct", 30, "k1", 5.0)
        assert await tx.insert_answer(row) is True
        assert await tx.insert_answer(row) is False
        assert await tx.find_answer("k1") == row
        assert await tx.find_answer("k2") is None


async def test_badge_once_and_totals(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
        assert await tx.award_badge(pid, "Mastery", "s1", 1.0) is True
        assert await tx.award_badge(pid, "Mastery", "s1", 2.0) is False
        assert await tx.badges(pid) == ["Mastery"]
        await tx.add_score("console:local", "w2026-01", "m2026-01", pid, 30, 1, 1, 5.0)
        await tx.add_score("console:local", "w2026-01", "m2026-01", pid, 0, 1, 0, 6.0)
        await tx.apply_scores()
        t = await tx.totals(pid)
        assert (t.points, t.answered, t.correct) == (30, 2, 1)


async def test_due_items_and_next_deadline(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid, deadline=100.0)
        assert await tx.next_deadline() == 100.0
        assert await tx.due_items(99.9, 10) == []
        assert await tx.due_items(100.0, 10) == [("s1", 0)]


async def test_challenge_sets_played(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
        s = await tx.get_session("s1")
        s.status, s.correct = "finished", 1
        await tx.update_session(s)
        assert await tx.challenge_sets_played(pid) == {"cs-1": False}


async def test_migrations_recorded(any_store):
    assert await any_store.schema_version() == MIGRATIONS[-1][0]


async def test_reopen_keeps_data_and_upgrades_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    # a database created by version 1 of the schema, before any later migration
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    for statement in split_statements(MIGRATIONS[0][2]):
        raw.execute(statement)
    raw.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'v1')")
    raw.execute("INSERT INTO players (platform, tenant, user_id, display_name, created_at) "
                "VALUES ('console', 'local', 'old', 'Old', 1.0)")
    raw.commit()
    raw.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.schema_version() == MIGRATIONS[-1][0]
        async with store.transaction() as tx:
            assert (await tx.get_player(1)).user_id == "old"
    finally:
        await store.close()


async def test_waits_for_another_writer_then_succeeds(tmp_path):
    path = tmp_path / "busy.sqlite3"
    store = SqliteStore(path, busy_timeout_ms=5000)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")

    async def release_later():
        await asyncio.to_thread(lambda: __import__("time").sleep(0.3))
        blocker.execute("COMMIT")

    try:
        releaser = asyncio.create_task(release_later())
        async with store.transaction() as tx:
            assert await tx.upsert_player("console", "local", "u", "U", 1.0) == 1
        await releaser
    finally:
        blocker.close()
        await store.close()


async def test_busy_beyond_timeout_is_a_typed_error(tmp_path):
    path = tmp_path / "busy2.sqlite3"
    store = SqliteStore(path, busy_timeout_ms=50)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy):
            async with store.transaction():
                pass
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.close()
