"""Storage: the Store interface (base), its SQLite implementation and the schema migrations."""

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

__all__ = ["AnswerRow", "DailyChannelRow", "DailyPostRow", "RankRow", "TeamRow", "ItemRow", "PlayerRow", "SessionRow", "SqliteStore", "Store", "StoreBusy", "StoreUnavailable",
           "Totals", "Tx"]
