"""`mldebt db migrate` and `mldebt db copy`: an installation moves from SQLite to PostgreSQL whole."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime

import asyncpg

from bot.bank import Bank
from bot.cli import main
from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.replies import Player, QuestionCard
from bot.store import SqliteStore
from bot.store.migrations import MIGRATIONS
from bot.store.postgres import PostgresStore
from tests.fakes.bank import correct_letter, wrong_letter


async def _play(store, bank: Bank, clock: FakeClock) -> list:
    """Players with answers, a finished challenge, a team, a daily post and review boxes: every table
    gets rows. Returns each player's stats as the engine shows them."""
    engine = QuizEngine(store, bank, clock, rng=random.Random(3))
    players = [Player("slack", "T1", f"U{n}", f"User {n}") for n in range(4)]
    await engine.team(players[0], "create", "Owls")
    await engine.team(players[1], "join", "Owls")
    for n, player in enumerate(players):
        card = next(r for r in await engine.start(player, "challenge") if isinstance(r, QuestionCard))
        for step in range(5):
            letter = correct_letter(bank, card) if (n + step) % 3 else wrong_letter(bank, card)
            replies = await engine.answer(player, card.session_id, card.question_id, letter, f"e{n}-{step}")
            if not any(r.final for r in replies if hasattr(r, "final")):
                replies = await engine.answer(player, card.session_id, card.question_id,
                                              correct_letter(bank, card), f"e{n}-{step}b")
            nxt = [r for r in replies if isinstance(r, QuestionCard)]
            if not nxt:
                break
            card = nxt[0]
    return [await engine.stats(p) for p in players]


def _counts(path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        where = {"score_counts": " WHERE players != 0"}  # see bot/dbtools.py
        return {n: conn.execute(f"SELECT count(*) FROM {n}{where.get(n, '')}").fetchone()[0] for n in names
                if n not in ("schema_migrations", "sqlite_sequence", "score_watermark")}
    finally:
        conn.close()


def test_copy_moves_every_row_and_refuses_a_non_empty_target(tmp_path, bank, postgres_url, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "old.sqlite3"
    clock = FakeClock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))

    async def build() -> list:
        async with SqliteStore(path) as store:
            return await _play(store, bank, clock)
    stats_before = asyncio.run(build())
    counts = _counts(path)

    args = ["--env-file", "/dev/null", "db", "copy", "--from", f"sqlite:{path}", "--to", postgres_url]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"OK: {len(counts)} tables, {sum(counts.values())} rows copied and verified." in out
    assert f"answers          {counts['answers']:>9} rows  verified" in out

    async def after() -> tuple[dict, list, int]:
        conn = await asyncpg.connect(postgres_url)
        try:
            got = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in counts}
        finally:
            await conn.close()
        async with PostgresStore(postgres_url) as store:
            stats = [await QuizEngine(store, bank, clock).stats(Player("slack", "T1", f"U{n}", f"User {n}"))
                     for n in range(4)]
            # new rows get new ids after the copied ones
            async with store.transaction() as tx:
                new_id = await tx.upsert_player("slack", "T1", "new", "New", 1.0)
        return got, stats, new_id
    got, stats_after, new_id = asyncio.run(after())
    assert got == counts
    assert counts["answers"] >= 20 and counts["score_facts"] >= 20 and counts["team_members"] == 2
    assert stats_after == stats_before  # points, streaks, ranks, team: the same to the player
    assert new_id > counts["players"]  # (an upsert that finds its row still uses up a sequence number)

    # a second copy into the now non-empty database is refused, and --replace overwrites it
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mldebt: db copy: the target already has rows: activity_days ({counts['activity_days']}), "
                          f"answers ({counts['answers']}), ")
    assert err.endswith("; pass --replace to overwrite them\n")
    assert main([*args, "--replace"]) == 0


def test_migrate_prints_the_schema_version_and_rejects_bad_arguments(tmp_path, postgres_url, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLDEBT_DATABASE", postgres_url)
    assert main(["--env-file", "/dev/null", "db", "migrate"]) == 0
    assert capsys.readouterr().out == f"OK: schema version {MIGRATIONS[-1][0]}.\n"
    monkeypatch.setenv("MLDEBT_DATABASE", str(tmp_path / "fresh.sqlite3"))
    assert main(["--env-file", "/dev/null", "db", "migrate"]) == 0
    assert capsys.readouterr().out == f"OK: schema version {MIGRATIONS[-1][0]}.\n"
    assert main(["--env-file", "/dev/null", "db", "copy", "--from", "old.db", "--to", postgres_url]) == 2
    assert capsys.readouterr().err == "mldebt: db copy: --from must be sqlite:PATH\n"
    assert main(["--env-file", "/dev/null", "db", "copy", "--from", "sqlite:missing.db", "--to", postgres_url]) == 2
    assert capsys.readouterr().err == "mldebt: db copy: no SQLite database at missing.db\n"
