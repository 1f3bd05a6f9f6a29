from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.bank import Bank
from bot.clock import FakeClock
from bot.engine import QuizEngine
from bot.replies import Player
from bot.store import SqliteStore
from tests.fakes.bank import make_bank
from tests.postgres_server import PgTestServer, running_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bank(tmp_path: Path) -> Bank:
    return make_bank(tmp_path / "bank")


@pytest.fixture
async def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "quiz.sqlite3")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def engine(store: SqliteStore, bank: Bank, clock: FakeClock) -> QuizEngine:
    return QuizEngine(store, bank, clock, rng=random.Random(7))


@pytest.fixture
def alice() -> Player:
    return Player("console", "local", "alice", "Alice")


@pytest.fixture
def bob() -> Player:
    return Player("console", "local", "bob", "Bob")


@pytest.fixture(scope="session")
def postgres_server() -> PgTestServer:
    """The session's PostgreSQL server, started on first use and stopped (and deleted) at the end."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PgTestServer) -> str:
    """A fresh, migrated database of its own for one test (a plain fixture, so an async fixture can
    ask for it with request.getfixturevalue)."""
    url, name = postgres_server.database()
    yield url
    postgres_server.release(name)
