"""The narrow storage interface the engine talks to, and the rows that cross it.

Everything here is plain data; implementations (SQLite today, PostgreSQL later) must pass
tests/bot/test_store_contract.py. All times are UTC epoch seconds (floats).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


@dataclass
class PlayerRow:
    id: int
    platform: str
    tenant: str
    user_id: str
    display_name: str


@dataclass
class SessionRow:
    id: str
    player_id: int
    mode: str
    status: str  # open | finished | abandoned
    position: int  # 0-based index of the current item
    total: int
    created_at: float
    challenge_set: str | None = None
    route: str | None = None
    finished_at: float | None = None
    correct: int = 0
    points: int = 0


@dataclass
class ItemRow:
    session_id: str
    position: int
    question_id: str
    choice_order: str  # original letters in the order shown, e.g. "CADB"
    status: str = "pending"  # pending | open | correct | wrong | timeout | skipped
    deadline: float | None = None
    attempts_used: int = 0
    hint_used: bool = False
    points: int = 0
    closed_at: float | None = None


@dataclass
class AnswerRow:
    session_id: str
    position: int
    attempt: int
    question_id: str
    player_id: int
    choice: str  # original letter
    shown_choice: str
    outcome: str  # correct | wrong | late
    points: int
    event_key: str
    answered_at: float


@dataclass
class Totals:
    points: int = 0
    answered: int = 0
    correct: int = 0


@dataclass
class GrantRow:
    player: PlayerRow
    badge: str
    status: str  # pending | done
    reason: str | None
    attempts: int
    updated_at: float


class Tx(ABC):
    """One database transaction. Every method is a single plain-SQL statement or two."""

    @abstractmethod
    async def upsert_player(self, platform: str, tenant: str, user_id: str, display_name: str, now: float) -> int: ...
    @abstractmethod
    async def get_player(self, player_id: int) -> PlayerRow | None: ...
    @abstractmethod
    async def open_session_for(self, player_id: int) -> SessionRow | None: ...
    @abstractmethod
    async def get_session(self, session_id: str) -> SessionRow | None: ...
    @abstractmethod
    async def insert_session(self, session: SessionRow, items: list[ItemRow]) -> None: ...
    @abstractmethod
    async def update_session(self, session: SessionRow) -> None: ...
    @abstractmethod
    async def get_item(self, session_id: str, position: int) -> ItemRow | None: ...
    @abstractmethod
    async def get_items(self, session_id: str) -> list[ItemRow]: ...
    @abstractmethod
    async def update_item(self, item: ItemRow) -> None: ...
    @abstractmethod
    async def close_item_if_open(self, item: ItemRow) -> bool:
        """Compare-and-set: write `item` only if the stored row is still open. True if it was."""
    @abstractmethod
    async def find_answer(self, event_key: str) -> AnswerRow | None: ...
    @abstractmethod
    async def insert_answer(self, answer: AnswerRow) -> bool:
        """False if the event key (or session/position/attempt) was already recorded."""
    @abstractmethod
    async def add_to_totals(self, player_id: int, points: int, answered: int, correct: int) -> None: ...
    @abstractmethod
    async def totals(self, player_id: int) -> Totals: ...
    @abstractmethod
    async def award_badge(self, player_id: int, badge: str, session_id: str, now: float) -> bool:
        """Compare-and-set: True only for the call that created the badge."""
    @abstractmethod
    async def badges(self, player_id: int) -> list[str]: ...
    @abstractmethod
    async def add_grant(self, player_id: int, badge: str, now: float) -> None:
        """Record that the platform side of a badge (role, user group) is still to be granted."""
    @abstractmethod
    async def set_grant(self, player_id: int, badge: str, status: str, reason: str | None, now: float) -> None: ...
    @abstractmethod
    async def grants(self, platform: str, tenant: str | None, status: str | None) -> list[GrantRow]: ...
    @abstractmethod
    async def get_setting(self, platform: str, tenant: str, key: str) -> str | None: ...
    @abstractmethod
    async def set_setting(self, platform: str, tenant: str, key: str, value: str) -> None: ...
    @abstractmethod
    async def due_items(self, now: float, limit: int) -> list[tuple[str, int]]: ...
    @abstractmethod
    async def next_deadline(self) -> float | None: ...
    @abstractmethod
    async def challenge_sets_played(self, player_id: int) -> dict[str, bool]:
        """Challenge set id -> passed (any finished session with every item correct)."""
    @abstractmethod
    async def topic_accuracy(self, player_id: int) -> list[tuple[str, int, int]]:
        """(question id, closed items, correct items) over the player's sessions."""


class Store(ABC):
    @abstractmethod
    async def open(self) -> None: ...
    @abstractmethod
    async def close(self) -> None: ...
    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...
    @abstractmethod
    async def schema_version(self) -> int: ...
