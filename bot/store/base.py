"""The narrow storage interface the engine talks to, and the rows that cross it.

Everything here is plain data; implementations (SQLite today, PostgreSQL later) must pass
tests/bot/test_store_contract.py. All times are UTC epoch seconds (floats).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from .outbox import NewOutboxEntry, OutboxTx


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


class WriteConflict(Exception):
    """A guarded write found its row changed by another transaction; the whole call may run again.

    A store may send writes later than the call that queued them (at its next read or at commit), so
    this can surface from any later call in the transaction or from leaving it; the transaction is
    rolled back whole either way.
    """


class DuplicateAnswer(WriteConflict):
    """The answer's idempotency key (or its session/position/attempt) is already stored: replay it."""


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
class ItemAnswerRow:
    """A player's encounter with one question, for item analysis (`mldebt bank report`)."""

    player_id: int
    question_id: str
    session_id: str
    position: int
    status: str  # the item's: correct | wrong | timeout | skipped | open
    hint_used: bool
    first_choice: str | None  # original letter of attempt 1 (None: no answer, e.g. a time-out)
    first_outcome: str | None  # correct | wrong | late
    opened_at: float
    answered_at: float | None  # attempt 1's time
    closed_at: float | None


@dataclass
class AnswerContext:
    """Everything an answer needs, read together: the answer already stored under the event key (if
    any), the session, its owner, its current item and the item after it."""

    prior: AnswerRow | None
    session: SessionRow | None
    player: PlayerRow | None
    item: ItemRow | None
    next_item: ItemRow | None
    # the letters (as shown, in no particular order) already tried on the current item, late answers
    # not counted; None: not read with the rest (the engine then reads them if it needs them)
    tried: tuple[str, ...] | None = None
    # every item of the session, read only when the current item is its last (a final answer then
    # finishes the session, and the summary lists them all); None otherwise or when not read
    items: tuple[ItemRow, ...] | None = None


@dataclass
class Totals:
    points: int = 0
    answered: int = 0
    correct: int = 0


@dataclass
class TeamRow:
    id: int
    scope: str
    name: str


@dataclass
class DailyChannelRow:
    platform: str
    tenant: str
    channel: str
    post_time: str  # HH:MM local
    timezone: str
    enabled: bool


@dataclass
class DailyPostRow:
    id: str
    platform: str
    tenant: str
    channel: str
    local_date: str  # YYYY-MM-DD in the channel's time zone
    question_id: str
    choice_order: str
    status: str  # queued | posted | closed (revealed) | missed (never posted: failed or too late)
    message_ref: str | None
    lease_until: float
    posted_at: float | None
    closes_at: float


@dataclass
class RankRow:
    id: int  # player or team id
    name: str
    points: int
    members: int = 1


class Tx(OutboxTx):
    """One database transaction (the outbox's methods are declared in outbox.py). Every method is a
    single plain-SQL statement or two.

    Methods that return nothing may be sent to the database later (with the transaction's next read
    or its commit), so their errors can surface from a later call or from leaving the transaction.
    Reads always see the transaction's earlier writes.
    """

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the transaction's writes are committed (never if they are rolled back):
        the place to update in-process caches with what this transaction wrote."""
        self.__dict__.setdefault("_after_commit", []).append(hook)

    def committed(self) -> None:
        """Called by the store after the commit that holds this transaction."""
        for hook in self.__dict__.pop("_after_commit", []):
            hook()

    async def answer_context(self, event_key: str, session_id: str) -> AnswerContext:
        """One joined read in stores that can; composed from the single reads here."""
        prior = await self.find_answer(event_key)
        session = await self.get_session(session_id)
        if session is None:
            return AnswerContext(prior, None, None, None, None)
        return AnswerContext(prior, session, await self.get_player(session.player_id),
                             await self.get_item(session.id, session.position),
                             await self.get_item(session.id, session.position + 1))

    async def record_answer(self, answer: AnswerRow) -> None:
        """Insert an answer; the database's unique keys decide: a duplicate raises DuplicateAnswer."""
        if not await self.insert_answer(answer):
            raise DuplicateAnswer(answer.event_key)

    async def close_item(self, item: ItemRow) -> None:
        """Write the closed `item` if the stored row is still open, else raise WriteConflict."""
        if not await self.close_item_if_open(item):
            raise WriteConflict(f"item {item.session_id}/{item.position} is no longer open")

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
    async def totals(self, player_id: int) -> Totals:
        """As of the last apply_scores()."""
    @abstractmethod
    async def award_badge(self, player_id: int, badge: str, session_id: str, now: float) -> bool:
        """Compare-and-set: True only for the call that created the badge."""
    @abstractmethod
    async def badges(self, player_id: int) -> list[str]: ...
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
        """(question id, times answered, times right at the first attempt) over sessions and daily answers."""
    @abstractmethod
    async def item_answers(self, platform: str | None, tenant: str | None) -> list[ItemAnswerRow]:
        """Every session item with a first answer or a time-out, of players in the platform/tenant
        (None: all), ordered by player and opening time. One statement.

        An item opens when the one before it closes, or when its session starts: that is how the
        engine moves on, so the opening time is read from the rows, timed or not.
        """

    # -- teams ----------------------------------------------------------------------------------
    @abstractmethod
    async def create_team(self, scope: str, name: str, name_key: str, player_id: int, now: float) -> int | None:
        """The new team's id, or None if the name is taken in this scope."""
    @abstractmethod
    async def team_by_key(self, scope: str, name_key: str) -> TeamRow | None: ...
    @abstractmethod
    async def team_of(self, player_id: int) -> TeamRow | None: ...
    @abstractmethod
    async def join_team(self, player_id: int, team_id: int, now: float) -> None: ...
    @abstractmethod
    async def leave_team(self, player_id: int) -> None:
        """Leave; a team left with no members is deleted (its name is free again)."""
    @abstractmethod
    async def list_teams(self, scope: str) -> list[RankRow]:
        """Every team in the scope with its member count and all-time points, largest first."""

    # -- leaderboards ---------------------------------------------------------------------------
    @abstractmethod
    async def add_score(self, scope: str, week: str, month: str, player_id: int, points: int, answered: int,
                        correct: int, now: float) -> None:
        """Record a scoring fact (with the player's team at this moment). Totals and the week, month
        and all-time aggregates of the player and the team follow from the facts: see apply_scores."""
    @abstractmethod
    async def apply_scores(self) -> None:
        """Fold the facts recorded since the last apply into the aggregates (a watermark says how far).
        Call it before reading totals, ranks or team points; stores also run it once per commit."""
    @abstractmethod
    async def top_players(self, scope: str, period: str, limit: int) -> list[RankRow]: ...
    @abstractmethod
    async def player_rank(self, scope: str, period: str, player_id: int) -> tuple[int, int] | None:
        """(rank, points), ties broken by who reached the score first, then player id."""
    @abstractmethod
    async def top_teams(self, scope: str, period: str, per_member: bool, limit: int) -> list[RankRow]: ...

    # -- daily posts ----------------------------------------------------------------------------
    @abstractmethod
    async def set_daily_channel(self, row: DailyChannelRow, now: float) -> None: ...
    @abstractmethod
    async def daily_channels(self, platform: str | None, tenant: str | None) -> list[DailyChannelRow]: ...
    @abstractmethod
    async def get_daily_post(self, post_id: str) -> DailyPostRow | None: ...
    @abstractmethod
    async def daily_post_on(self, platform: str, tenant: str, channel: str, local_date: str) -> DailyPostRow | None: ...
    @abstractmethod
    async def insert_daily_post(self, row: DailyPostRow) -> bool:
        """False if this channel already has a post for that local date (exactly one per day)."""
    @abstractmethod
    async def update_daily_post(self, row: DailyPostRow, expect_status: str) -> bool:
        """Compare-and-set on status: write `row` only if the stored status is `expect_status`."""
    @abstractmethod
    async def close_daily_windows(self, platform: str, tenant: str, channel: str, except_id: str, now: float) -> None:
        """End, at `now`, the answer window of the channel's unfinished posts other than `except_id`."""
    @abstractmethod
    async def daily_posts_due(self, status: str, now: float, field: str) -> list[DailyPostRow]:
        """Posts in `status` whose `field` (lease_until or closes_at) is at or before `now`."""
    @abstractmethod
    async def daily_history(self, platform: str, tenant: str, channel: str) -> list[str]:
        """Question ids posted to the channel, newest first."""
    @abstractmethod
    async def next_daily_event(self) -> float | None:
        """The earliest window close of a post not closed yet."""
    @abstractmethod
    async def insert_daily_answer(self, post_id: str, player_id: int, choice: str, shown: str, correct: bool,
                                  points: int, event_key: str, now: float) -> bool: ...
    @abstractmethod
    async def daily_answer(self, post_id: str, player_id: int) -> tuple[str, bool, int, str] | None:
        """(shown choice, correct, points, event key) of the player's answer to a post."""
    @abstractmethod
    async def daily_counts(self, post_id: str) -> tuple[int, int]:
        """(answers, correct answers) of a post."""
    # many channels at once (09:00 for thousands of channels): bot/store/daily_sql.py, both stores
    @abstractmethod
    async def daily_recent(self, channels: Sequence[tuple[str, str, str]], keep: int,
                           now: float) -> dict[tuple[str, str, str], list[DailyPostRow]]:
        """Per (platform, tenant, channel): its newest `keep` posts and every post whose window is still
        open at `now`, newest first (channels without posts are left out)."""
    @abstractmethod
    async def insert_daily_posts(self, rows: Sequence[DailyPostRow]) -> set[str]:
        """Insert the posts; the ids of those inserted (not those whose channel has a post that day)."""
    @abstractmethod
    async def end_daily_windows(self, post_ids: Collection[str], now: float) -> None:
        """End, at `now`, the answer window of these posts if they are still unfinished."""
    @abstractmethod
    async def daily_posts_posted(self, posted: Sequence[tuple[str, str | None]], now: float) -> None:
        """Mark these (post id, message ref) posted at `now`, those still queued or missed."""
    @abstractmethod
    async def enqueue_many(self, entries: Sequence[NewOutboxEntry], now: float) -> int:
        """`enqueue` for many entries in one statement per slice; how many were new."""

    # -- streaks and review ---------------------------------------------------------------------
    @abstractmethod
    async def add_activity(self, player_id: int, local_date: str) -> None: ...
    @abstractmethod
    async def activity_dates(self, player_id: int, limit: int) -> list[str]:
        """Local dates (YYYY-MM-DD) with activity, newest first."""
    @abstractmethod
    async def review_box(self, player_id: int, question_id: str) -> int | None: ...
    @abstractmethod
    async def set_review(self, player_id: int, question_id: str, box: int, due_at: float) -> None: ...
    @abstractmethod
    async def drop_review(self, player_id: int, question_id: str) -> None: ...
    @abstractmethod
    async def due_reviews(self, player_id: int, now: float, limit: int) -> list[str]: ...
    @abstractmethod
    async def next_review(self, player_id: int) -> tuple[float, int] | None:
        """(earliest due time, number of questions in review) for the player."""

    # -- answers of one question, results a player could not be shown ------------------------------
    @abstractmethod
    async def answers_to_item(self, session_id: str, position: int) -> list[AnswerRow]:
        """The answers given to one question of a session, first attempt first."""
    @abstractmethod
    async def set_unseen(self, player_id: int, session_id: str, question_id: str, now: float) -> None:
        """Remember the player's latest result that the platform refused to show (one per player)."""
    @abstractmethod
    async def unseen_players(self) -> list[tuple[str, str, str]]:
        """(platform, tenant, user) of every player with an unseen result."""
    @abstractmethod
    async def take_unseen(self, player_id: int) -> tuple[str, str] | None:
        """(session id, question id) of the player's unseen result, forgotten as it is read."""


class Store(ABC):
    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None: ...
    @abstractmethod
    async def close(self) -> None: ...
    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction; leaving the block returns only after the commit that holds its writes."""
    @abstractmethod
    async def schema_version(self) -> int: ...
    def prefetch_answer_context(self, event_key: str, session_id: str) -> None:
        """A hint that the caller's next transaction starts with answer_context(event_key, session_id):
        a store may read it early, together with other waiting callers' (nothing happens by default).
        The transaction's answer_context still returns what a read in the transaction would."""
        return None

    def exclusive(self, name: str) -> AbstractAsyncContextManager[object]:
        """Hold `name` exclusively while a read-modify-write of something outside the database runs (a
        Slack user group's member list, which the platform only replaces whole). This default holds it
        within the process; a store that several processes share (PostgreSQL) holds it across them."""
        locks: dict[str, asyncio.Lock] = self.__dict__.setdefault("_exclusive", {})
        return locks.setdefault(name, asyncio.Lock())

    async def ping(self) -> None:
        """Raise if the database cannot run a transaction now (for health checks)."""
        async with self.transaction() as tx:
            await tx.get_setting("", "", "")

    def on_notice(self, callback: Callable[[str], None]) -> None:
        """Call `callback(kind)` when a transaction of ANY process sharing the database commits a change
        that in-process state depends on: "wakeup" (a new deadline or daily schedule: re-read the
        earliest) or "settings" (a tenant setting: drop caches of settings). A store that only one
        process uses has nothing to announce (the default)."""
        return None

    async def listen(self) -> None:
        """Start receiving the notices of `on_notice` (the scheduler calls it once it runs)."""
        return None

    @abstractmethod
    async def rebuild_scores(self) -> None:
        """Recompute every aggregate (totals, periods, per-score counts, teams) from the facts alone."""
