"""The engine, community and scheduler tests run on both stores: `store` is parametrised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store import SqliteStore, Store
from bot.store.postgres import PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request, tmp_path: Path) -> Callable[[], Store]:
    """Opens (not yet open) stores on this test's one database, as separate processes would."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "quiz.sqlite3")
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


@pytest.fixture
async def store(new_store: Callable[[], Store]):
    s = new_store()
    await s.open()
    yield s
    await s.close()
