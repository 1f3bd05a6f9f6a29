"""The contract every Store implementation must pass. Add a new backend to STORES."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot import errors
from bot.store import AnswerRow, ItemRow, SessionRow, SqliteStore, StoreBusy, Totals
from bot.store.base import AnswerContext, DuplicateAnswer, WriteConflict
from bot.store.migrations import MIGRATIONS
from bot.store.postgres import PostgresStore
from bot.store.sqlite import split_statements


def sqlite_file(request, tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "contract.sqlite3")


def postgres_database(request, tmp_path: Path) -> PostgresStore:
    # aggregates folded only when asked, so a test sees exactly what apply_scores did
    return PostgresStore(request.getfixturevalue("postgres_url"), fold_in_background=False)


STORES = {"sqlite": sqlite_file, "postgres": postgres_database}


@pytest.fixture(params=sorted(STORES))
async def any_store(request, tmp_path):
    s = STORES[request.param](request, tmp_path)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def peer(any_store, request, tmp_path):
    """A second store on the same database, opened as another process would."""
    s = STORES[request.node.callspec.params["any_store"]](request, tmp_path)
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


# -- group commit, guarded writes, scoring facts ----------------------------------------------------


async def test_answer_context_reads_answer_session_owner_and_items_together(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("slack", "T1", "U1", "Ann", 1.0)
        await _session(tx, pid)
        await tx.record_answer(AnswerRow("s1", 0, 1, "q-1", pid, "A", "A", "wrong", 0, "k1", 5.0))
        ctx = await tx.answer_context("k1", "s1")
        assert ctx.prior == AnswerRow("s1", 0, 1, "q-1", pid, "A", "A", "wrong", 0, "k1", 5.0)
        assert ctx.session.id == "s1" and ctx.player.user_id == "U1" and ctx.player.display_name == "Ann"
        assert (ctx.item.position, ctx.item.question_id, ctx.next_item.question_id) == (0, "q-1", "q-2")
        missing = await tx.answer_context("k2", "nope")
        assert missing == AnswerContext(None, None, None, None, None)


async def test_sqlite_answer_context_carries_the_letters_tried_and_the_items_for_a_summary(tmp_path):
    async with SqliteStore(tmp_path / "tried.sqlite3") as store:
        async with store.transaction() as tx:
            pid = await tx.upsert_player("slack", "T1", "U1", "Ann", 1.0)
            await _session(tx, pid)
            assert (await tx.answer_context("k0", "s1")).tried == ()  # no attempt yet: nothing read
            await tx.record_answer(AnswerRow("s1", 0, 1, "q-1", pid, "B", "B", "wrong", 0, "k1", 5.0))
            await tx.record_answer(AnswerRow("s1", 0, 2, "q-1", pid, "D", "C", "late", 0, "k2", 6.0))
            await tx.update_item(ItemRow("s1", 0, "q-1", "ABCD", "open", 100.0, attempts_used=2))
        async with store.transaction() as tx:
            ctx = await tx.answer_context("k3", "s1")
            assert ctx.tried == ("B",)  # the late answer does not count as tried
            assert ctx.items is None  # not the last item: no summary can follow
            item = ctx.item
            item.status, item.closed_at = "wrong", 1764406800.123456789
            await tx.close_item(item)
            await tx.update_session(SessionRow("s1", pid, "challenge", "open", 1, 2, 1.0, "cs-1", "r"))
            # the next item has no attempts: its context reads none, and sees this transaction's writes
            last = await tx.answer_context("k3", "s1")
            assert last.tried == ()
            # the last item: every item comes along, times exact, in order
            assert last.items == (item, ItemRow("s1", 1, "q-2", "DCBA"))
            assert last.items == tuple(await tx.get_items("s1"))


async def test_duplicate_answer_and_lost_close_roll_the_transaction_back(any_store):
    async with any_store.transaction() as tx:
        pid = await tx.upsert_player("console", "local", "u", "U", 1.0)
        await _session(tx, pid)
    row = AnswerRow("s1", 0, 1, "q-1", pid, "A", "A", "correct", 30, "k1", 5.0)
    async with any_store.transaction() as tx:
        await tx.record_answer(row)
    with pytest.raises(DuplicateAnswer):
        async with any_store.transaction() as tx:
            await tx.update_item(ItemRow("s1", 1, "q-2", "DCBA", "open"))
            await tx.record_answer(AnswerRow("s1", 0, 2, "q-1", pid, "B", "B", "wrong", 0, "k1", 6.0))
    async with any_store.transaction() as tx:
        item = await tx.get_item("s1", 0)
        item.status = "correct"
        await tx.close_item(item)
    with pytest.raises(WriteConflict):
        async with any_store.transaction() as tx:
            await tx.close_item(item)
    async with any_store.transaction() as tx:
        assert (await tx.get_item("s1", 1)).status == "pending"  # rolled back with the duplicate
        assert await tx.find_answer("k1") == row


async def test_after_commit_hooks_run_only_after_a_commit(any_store):
    ran: list[str] = []
    async with any_store.transaction() as tx:
        await tx.upsert_player("console", "local", "u", "U", 1.0)
        tx.after_commit(lambda: ran.append("kept"))
        assert ran == []
    with pytest.raises(errors.BadRequest):
        async with any_store.transaction() as tx:
            tx.after_commit(lambda: ran.append("rolled back"))
            raise errors.BadRequest("no")
    assert ran == ["kept"]


async def test_concurrent_transactions_share_commits_and_fail_alone(any_store, peer):
    """Twenty transactions at once: the one that breaks a unique rule fails alone, the others are
    stored, and each caller returns only once its writes are committed (seen by a fresh reader)."""
    async with any_store.transaction() as tx:
        pids = [await tx.upsert_player("console", "local", f"u{i}", "U", 1.0) for i in range(20)]
        await _session(tx, pids[7], "taken")

    async def one(i: int) -> str:
        for _ in range(5):
            try:
                async with any_store.transaction() as tx:
                    await _session(tx, pids[i], f"s{i}")  # pids[7] already has an open session
                break
            except WriteConflict:
                # PostgreSQL: a collision, or a unique key already taken, is a reason to run the call
                # again (bot/retry.py); a key that stays taken stays refused
                continue
            except Exception as exc:  # noqa: BLE001 - the backend's integrity error
                return type(exc).__name__
        else:
            return "refused"
        async with peer.transaction() as ptx:
            return "stored" if await ptx.get_session(f"s{i}") is not None else "lost"

    outcomes = await asyncio.gather(*(one(i) for i in range(20)))
    # SQLite: sqlite3's IntegrityError; PostgreSQL: refused on every run
    assert outcomes[7] in ("IntegrityError", "refused")
    assert set(outcomes[:7] + outcomes[8:]) == {"stored"}
    async with any_store.transaction() as tx:
        assert await tx.get_session("s7") is None and (await tx.get_session("taken")).player_id == pids[7]


async def _scored_scope(store) -> tuple[int, int, int]:
    async with store.transaction() as tx:
        a = await tx.upsert_player("slack", "T1", "UA", "Ann", 1.0)
        b = await tx.upsert_player("slack", "T1", "UB", "Bob", 1.0)
        team = await tx.create_team("slack:T1", "Owls", "owls", a, 1.0)
        await tx.join_team(a, team, 1.0)
        await tx.add_score("slack:T1", "w2026-48", "m2026-11", a, 30, 1, 1, 10.0)
        await tx.add_score("slack:T1", "w2026-48", "m2026-11", b, 30, 1, 1, 11.0)
    async with store.transaction() as tx:
        await tx.add_score("slack:T1", "w2026-48", "m2026-11", b, 0, 1, 0, 12.0)
        await tx.add_score("slack:T1", "w2026-49", "m2026-12", a, 20, 1, 1, 20.0)
        await tx.add_score("slack:T1", "w2026-49", "m2026-12", b, 0, 1, 0, 21.0)
    return a, b, team


async def _boards(store, a: int, b: int) -> list:
    async with store.transaction() as tx:
        await tx.apply_scores()
        return [await tx.totals(a), await tx.totals(b),
                [(r.name, r.points) for r in await tx.top_players("slack:T1", "all", 10)],
                [(r.name, r.points) for r in await tx.top_players("slack:T1", "w2026-48", 10)],
                await tx.player_rank("slack:T1", "all", b), await tx.player_rank("slack:T1", "m2026-11", b),
                [(r.name, r.points, r.members) for r in await tx.top_teams("slack:T1", "all", False, 10)],
                [(r.name, r.points) for r in await tx.list_teams("slack:T1")]]


async def test_scores_follow_the_facts_and_rebuild_to_the_same(any_store):
    a, b, _ = await _scored_scope(any_store)
    boards = await _boards(any_store, a, b)
    assert boards == [
        Totals(50, 2, 2), Totals(30, 3, 1),
        [("Ann", 50), ("Bob", 30)],
        [("Ann", 30), ("Bob", 30)],  # a tie: Ann reached 30 first
        (2, 30), (2, 30),
        [("Owls", 50, 1)], [("Owls", 50)],
    ]
    await any_store.rebuild_scores()
    assert await _boards(any_store, a, b) == boards


async def test_a_team_that_empties_keeps_nothing_and_its_id_starts_clean(any_store):
    a, b, team = await _scored_scope(any_store)
    async with any_store.transaction() as tx:
        await tx.leave_team(a)
        again = await tx.create_team("slack:T1", "Hawks", "hawks", b, 30.0)
        await tx.join_team(b, again, 30.0)
        await tx.add_score("slack:T1", "w2026-49", "m2026-12", b, 10, 1, 1, 31.0)
    boards = await _boards(any_store, a, b)
    assert boards[-2:] == [[("Hawks", 10, 1)], [("Hawks", 10)]]
    await any_store.rebuild_scores()
    assert await _boards(any_store, a, b) == boards


async def test_sqlite_rebuilds_corrupted_aggregates_from_the_facts(tmp_path):
    path = tmp_path / "scores.sqlite3"
    async with SqliteStore(path) as store:
        a, b, _ = await _scored_scope(store)
        boards = await _boards(store, a, b)
    raw = sqlite3.connect(path)
    raw.executescript("UPDATE player_totals SET points = 999; DELETE FROM score_counts; "
                      "UPDATE score_periods SET points = points + 7, reached_at = 0; DELETE FROM team_periods;")
    raw.close()
    async with SqliteStore(path) as store:
        assert await _boards(store, a, b) != boards
        await store.rebuild_scores()
        assert await _boards(store, a, b) == boards
    raw = sqlite3.connect(path)
    counts = raw.execute("SELECT scope, period, points, players FROM score_counts ORDER BY 1, 2, 3").fetchall()
    derived = raw.execute("SELECT scope, period, points, COUNT(*) FROM score_periods GROUP BY 1, 2, 3 "
                          "ORDER BY 1, 2, 3").fetchall()
    raw.close()
    assert counts == derived and len(counts) == 8


async def test_sqlite_commits_with_synchronous_full_by_default(tmp_path):
    """FULL: each COMMIT is on disk (the WAL fsynced) before any caller of its batch gets a reply."""
    async with SqliteStore(tmp_path / "full.sqlite3") as store, store.transaction() as tx:
        assert await tx._one("PRAGMA synchronous") == (2,)  # type: ignore[attr-defined]
        assert await tx._one("PRAGMA journal_mode") == ("wal",)  # type: ignore[attr-defined]
