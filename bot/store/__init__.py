"""Storage: the Store interface (base), its SQLite implementation and the schema migrations."""

from .base import AnswerRow, GrantRow, ItemRow, PlayerRow, SessionRow, Store, StoreBusy, Totals, Tx
from .sqlite import SqliteStore, StoreUnavailable

__all__ = ["AnswerRow", "GrantRow", "ItemRow", "PlayerRow", "SessionRow", "SqliteStore", "Store", "StoreBusy", "StoreUnavailable",
           "Totals", "Tx"]
