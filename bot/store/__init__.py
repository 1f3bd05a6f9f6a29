"""Storage: the Store interface (base), its SQLite and PostgreSQL implementations and the schema migrations."""

from pathlib import Path

from .base import (
    AnswerRow,
    DailyChannelRow,
    DailyPostRow,
    ItemRow,
    PlayerRow,
    RankRow,
    SessionRow,
    Store,
    StoreBusy,
    TeamRow,
    Totals,
    Tx,
)
from .sqlite import SqliteStore, StoreUnavailable


def store_for(target: str | Path) -> Store:
    """The store a setting names: a postgresql:// URL opens PostgreSQL, anything else is a SQLite file.

    asyncpg is imported only here, so a SQLite installation never needs the `postgres` extra."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreUnavailable("PostgreSQL needs asyncpg: pip install 'mldebt[postgres]'") from exc
        return PostgresStore(target)
    return SqliteStore(target)

__all__ = ["AnswerRow", "DailyChannelRow", "DailyPostRow", "RankRow", "TeamRow", "ItemRow", "PlayerRow", "SessionRow", "SqliteStore", "Store", "StoreBusy", "StoreUnavailable", "store_for",
           "Totals", "Tx"]
