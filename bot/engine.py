"""QuizEngine: every quiz rule, one database transaction per call.

Adapters call these coroutines with a Player and ids taken from the platform event and render the
replies they get back. Correctness never depends on a timer: deadlines are stored instants and
every call judges lateness against the injected clock, so a late click counts as a time-out even if
no timer fired. Rejected actions raise a QuizError (see bot/errors.py) and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import errors, outbox
from .bank import DIFFICULTIES, LETTERS, Bank, Question
from .clock import Clock
from .community import CommunityMixin
from .modes import (
    CHALLENGE,
    MODES,
    PRACTICE,
    REVIEW,
    TEST,
    Mode,
    NoQuestions,
    pick_challenge,
    pick_practice,
    pick_test,
)
from .replies import (
    BADGE_MASTERY,
    ActiveSession,
    AdminStatus,
    BadgeAwarded,
    Breakdown,
    Choice,
    ConceptCard,
    DeliveryProblem,
    Feedback,
    Hint,
    ItemResult,
    Notice,
    PendingGrant,
    Player,
    QuestionCard,
    Reply,
    ScheduleHealth,
    SessionStarted,
    Skipped,
    Stats,
    Summary,
    TimeUp,
    TopicInfo,
    TopicList,
    WorkedSolution,
)
from .retry import retried
from .scoring import points_for
from .store import AnswerRow, ItemRow, SessionRow, Store, Tx
from .store.base import AnswerContext, StoreBusy, WriteConflict
from .store.outbox import TENANT, TargetState
from .text import clean

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """Replies produced without a user action (a time-out): who gets them and where."""

    player: Player
    session_id: str
    mode: str
    route: str | None
    replies: tuple[Reply, ...]


GRANT_OPEN = ("pending", "sending", "failed", "paused")
CELEBRATION_TTL = 86400.0  # a celebration a day late is noise, not news
TIMEOUT_TTL = 900.0  # after 15 minutes neither platform can update the player's message any more
TENANT_REASONS = {
    "app_uninstalled": "The app was uninstalled from this workspace.",
    "tokens_revoked": "The bot's token was revoked.",
    "guild_removed": "The bot was removed from this server.",
}


def _route_target(route: str | None) -> str:
    """The channel a stored route points at (the outbox's target), or "" if it names none."""
    try:
        data = json.loads(route) if route else None
    except ValueError:
        return ""
    channel = (data.get("channel") or data.get("channel_id")) if isinstance(data, dict) else None
    return str(channel) if channel else ""


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class _EngineTx:
    """A store transaction whose StoreBusy and WriteConflict, from its start, its body or its commit,
    become errors.Busy: another process changed what this call read (only a store without a write
    lock per transaction lets that happen) or held the lock too long; nothing was written, so the
    player may simply retry (see retry.py). A class rather than an @asynccontextmanager generator:
    every answer enters one."""

    __slots__ = ("inner",)

    def __init__(self, inner: AbstractAsyncContextManager[Tx]) -> None:
        self.inner = inner

    async def __aenter__(self) -> Tx:
        try:
            return await self.inner.__aenter__()
        except (StoreBusy, WriteConflict) as exc:
            raise errors.Busy() from exc

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        try:
            suppressed = await self.inner.__aexit__(exc_type, exc, tb)
        except (StoreBusy, WriteConflict) as error:
            raise errors.Busy() from error
        if not suppressed and isinstance(exc, (StoreBusy, WriteConflict)):
            raise errors.Busy() from exc
        return bool(suppressed)


class QuizEngine(CommunityMixin):
    def __init__(self, store: Store, bank: Bank, clock: Clock, *, rng: random.Random | None = None,
                 timezone: str = "UTC") -> None:
        self.store = store
        self.default_tz = ZoneInfo(timezone)
        self._tz_cache: dict[str, ZoneInfo] = {}
        self._period_cache: dict[ZoneInfo, tuple[float, float, str, str]] = {}
        self._choices: dict[tuple[str, str], tuple[Choice, ...]] = {}  # (question, order) -> shown choices
        self._player_scope: dict[int, tuple[str, str]] = {}
        # (platform, tenant, user) -> (player id, display name), filled only after a commit
        self._player_ids: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.bank = bank
        self.clock = clock
        self.rng = rng or random.Random()
        # set whenever a new deadline is stored, so the scheduler can re-read the earliest one
        self.deadlines_changed = asyncio.Event()
        # platforms where a badge also means a platform grant (a role, a user group) to carry out
        self.grant_platforms: set[str] = set()
        # players with a result the platform refused to show (see `unseen`); loaded on first use
        self._unseen_keys: set[tuple[str, str, str]] = set()
        self._unseen_keys_loaded = False
        # platform -> the outbox kinds this process delivers there (registered through the scheduler);
        # a celebration is written only where it will be delivered (the answer that earns it is
        # handled by a process running its platform). A time-out is written unless this process runs
        # the platform without time-out messages: any process's scheduler may close any platform's
        # question (a Slack-only replica a Discord one), and a process that runs the platform (and
        # the guild's shard) delivers it, or it expires unsent
        self.outbox_kinds: dict[str, set[str]] = {}
        # platform -> `probe(tenant, channel)`: raises a PlatformError if the bot cannot post there
        self.channel_probes: dict[str, Callable[[str, str], Awaitable[None]]] = {}
        store.on_notice(self._notice)

    def _notice(self, kind: str) -> None:
        """Another process (or this one) committed a deadline or a setting: see Store.on_notice."""
        if kind == "wakeup":
            self.deadlines_changed.set()
        elif kind == "settings":
            self._tz_cache.clear()

    # -----------------------------------------------------------------------------------------
    # plumbing

    def _tx(self) -> _EngineTx:
        """A store transaction; leaving it returns only after the commit that holds its writes."""
        return _EngineTx(self.store.transaction())

    def _now(self) -> float:
        return self.clock.now().timestamp()

    @staticmethod
    def _name(player: Player) -> str:
        # a crafted payload can carry lone surrogates, which no database encoding accepts; a printable
        # name has neither those nor control characters (every answer checks the name)
        name = player.display_name
        return name if name.isprintable() else clean(name)

    async def _player_id(self, tx: Tx, player: Player) -> int:
        name = self._name(player)
        known = self._player_ids.get(player.key)
        if known is not None and (not name or name == known[1]):
            return known[0]  # ids never change; skip a write per call
        pid = await tx.upsert_player(player.platform, player.tenant, player.user, name, self._now())
        self._remember_player(tx, player, pid, name or (known[1] if known else ""))
        return pid

    def _remember_player(self, tx: Tx, player: Player, pid: int, name: str) -> None:
        """Cache the player's id and name once the transaction that wrote them has committed."""
        tx.after_commit(lambda: self._player_ids.__setitem__(player.key, (pid, name)))

    async def _owned_session(self, tx: Tx, player: Player, session_id: str | None) -> SessionRow:
        pid = await self._player_id(tx, player)
        if session_id is None:
            session = await tx.open_session_for(pid)
            if session is None:
                raise errors.NoActiveSession()
            return session
        session = await tx.get_session(session_id)
        if session is None:
            raise errors.SessionNotFound()
        if session.player_id != pid:
            raise errors.NotYourSession()
        return session

    async def _player_of(self, tx: Tx, session: SessionRow) -> Player:
        row = await tx.get_player(session.player_id)
        assert row is not None
        return Player(row.platform, row.tenant, row.user_id, row.display_name)

    def _shuffle(self) -> str:
        order = list(LETTERS)
        self.rng.shuffle(order)
        return "".join(order)

    def _open_item(self, item: ItemRow, mode: Mode, now: float) -> None:
        item.status = "open"
        if mode.timed:
            item.deadline = now + self.bank.question(item.question_id).time_limit
            self.deadlines_changed.set()

    def _card(self, session: SessionRow, item: ItemRow, tried: tuple[str, ...] = ()) -> QuestionCard:
        mode = MODES[session.mode]
        q = self.bank.question(item.question_id)
        choices = self._choices.get((q.id, item.choice_order))
        if choices is None:
            choices = tuple(Choice(LETTERS[i], q.choices[LETTERS.index(orig)]) for i, orig in enumerate(item.choice_order))
            self._choices[(q.id, item.choice_order)] = choices
        return QuestionCard(
            session_id=session.id,
            question_id=q.id,
            mode=session.mode,
            position=item.position + 1,
            total=session.total,
            topic=q.topic,
            difficulty=q.difficulty,
            type=q.type,
            prompt=q.prompt,
            code=q.code,
            choices=choices,
            deadline=_ts(item.deadline),
            time_limit=q.time_limit if item.deadline is not None else None,
            attempts_left=mode.attempts - item.attempts_used,
            hint_used=item.hint_used,
            hint_costs_points=mode.hint_costs_points,
            tried=tried,
        )

    @staticmethod
    async def _tried(tx: Tx, item: ItemRow) -> tuple[str, ...]:
        """The letters (as shown) already tried on an open question; no read when none were."""
        if not item.attempts_used:
            return ()
        return tuple(a.shown_choice for a in await tx.answers_to_item(item.session_id, item.position)
                     if a.outcome != "late")

    @staticmethod
    def _shown_answer(q: Question, item: ItemRow) -> str:
        return LETTERS[item.choice_order.index(q.answer)]

    def _feedback(self, q: Question, item: ItemRow, mode: Mode, shown: str, correct: bool, points: int,
                  attempt: int) -> Feedback:
        final = correct or attempt >= mode.attempts
        solution = None
        if final and mode.shows_solution and q.solution is not None:
            original = item.choice_order[LETTERS.index(shown)]
            solution = WorkedSolution(
                steps=q.solution.steps,
                quick_check=q.solution.quick_check,
                mistake=None if correct else q.solution.common_mistakes.get(original),
            )
        return Feedback(
            session_id=item.session_id,
            question_id=q.id,
            chosen=shown,
            correct=correct,
            points=points,
            attempts_left=max(0, mode.attempts - attempt),
            final=final,
            answer_letter=self._shown_answer(q, item) if final else None,
            answer_text=q.answer_text if final else None,
            explanation=q.explanation if final else None,
            solution=solution,
        )

    # -----------------------------------------------------------------------------------------
    # closing a question and moving on

    async def _close_item(self, tx: Tx, session: SessionRow, item: ItemRow, outcome: str, now: float,
                          points: int = 0, next_item: ItemRow | None = None,
                          items: tuple[ItemRow, ...] | None = None) -> list[Reply]:
        """Close the current item and open the next one or finish the session: the one place where a
        question closes. `item` was read open in this transaction; the close is still guarded (a
        WriteConflict if another transaction closed it first). `next_item` and `items` (all of the
        session's, read with `item`), if the caller already read them, save a read each."""
        mode = MODES[session.mode]
        q = self.bank.question(item.question_id)
        item.status, item.points, item.closed_at = outcome, points, now
        await tx.close_item(item)
        replies: list[Reply] = []
        shown = self._shown_answer(q, item)
        if outcome == "timeout":
            replies.append(TimeUp(session.id, q.id, shown, q.answer_text, q.explanation))
        elif outcome == "skipped":
            replies.append(Skipped(session.id, q.id, shown, q.answer_text, q.explanation))
        answered = 0 if outcome == "skipped" else 1
        await self._record_result(tx, session.player_id, points, answered, int(outcome == "correct"), now)
        await self._review_after(tx, session.player_id, q.id, session.mode, outcome, now)
        session.correct += int(outcome == "correct")
        session.points += points
        session.position += 1
        if session.position < session.total:
            nxt = next_item if next_item is not None else await tx.get_item(session.id, session.position)
            assert nxt is not None and nxt.position == session.position
            self._open_item(nxt, mode, now)
            await tx.update_item(nxt)
            await tx.update_session(session)
            replies.append(self._card(session, nxt))
            return replies
        session.status, session.finished_at = "finished", now
        await tx.update_session(session)
        if items is not None:  # as read, but with the item closed here
            items = tuple(item if it.position == item.position else it for it in items)
        replies += await self._finish(tx, session, items)
        return replies

    async def _summary(self, tx: Tx, session: SessionRow, items: tuple[ItemRow, ...] | None = None) -> Summary:
        if items is None:
            items = tuple(await tx.get_items(session.id))
        results = []
        by_topic: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_diff: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for it in items:
            q = self.bank.question(it.question_id)
            outcome = it.status if it.status not in ("pending", "open") else "unanswered"
            results.append(ItemResult(it.position + 1, q.id, q.topic, q.difficulty, outcome, it.points))
            for table, key in ((by_topic, q.topic), (by_diff, q.difficulty)):
                table[key][1] += 1
                table[key][0] += int(it.status == "correct")
        show_breakdown = session.mode == TEST.name
        return Summary(
            session_id=session.id,
            mode=session.mode,
            status=session.status,
            correct=session.correct,
            total=session.total,
            points=session.points,
            items=tuple(results),
            by_topic=tuple(Breakdown(k, *v) for k, v in sorted(by_topic.items())) if show_breakdown else (),
            by_difficulty=tuple(Breakdown(k, *by_diff[k]) for k in DIFFICULTIES if k in by_diff)
            if show_breakdown else (),
        )

    async def _finish(self, tx: Tx, session: SessionRow, items: tuple[ItemRow, ...] | None = None) -> list[Reply]:
        replies: list[Reply] = [await self._summary(tx, session, items)]
        mode = MODES[session.mode]
        if mode is CHALLENGE and session.status == "finished":
            await self._record_activity(tx, session.player_id, self._now())
        if mode.awards_badge and session.status == "finished" and session.correct == session.total:
            if await tx.award_badge(session.player_id, BADGE_MASTERY, session.id, self._now()):
                player = await self._player_of(tx, session)
                badge = BadgeAwarded(player, BADGE_MASTERY, session.id)
                await self._enqueue_badge(tx, session, badge)
                replies.append(badge)
        return replies

    async def _catch_up(self, tx: Tx, session: SessionRow, now: float) -> list[Reply]:
        """Close the current question if its deadline passed (no timer needed for correctness)."""
        if session.status != "open":
            return []
        item = await tx.get_item(session.id, session.position)
        if item is not None and item.status == "open" and item.deadline is not None and now >= item.deadline:
            return await self._close_item(tx, session, item, "timeout", now)
        return []

    # -----------------------------------------------------------------------------------------
    # operations

    def _validate_filters(self, topic: str | None, difficulty: str | None) -> None:
        if topic is not None and topic not in self.bank.topics:
            raise errors.BadRequest(f"Unknown topic '{topic[:40]}'. Topics: {', '.join(sorted(self.bank.topics))}.")
        if difficulty is not None and difficulty not in DIFFICULTIES:
            raise errors.BadRequest(f"Unknown difficulty '{difficulty[:40]}'. Use one of: {', '.join(DIFFICULTIES)}.")

    @retried
    async def start(self, player: Player, mode_name: str, *, topic: str | None = None,
                    difficulty: str | None = None, route: str | None = None) -> list[Reply]:
        mode = MODES.get(mode_name)
        if mode is None:
            raise errors.BadRequest(f"Unknown mode '{mode_name}'. Modes: {', '.join(MODES)}.")
        self._validate_filters(topic, difficulty)
        now = self._now()
        async with self._tx() as tx:
            pid = await self._player_id(tx, player)
            existing = await tx.open_session_for(pid)
            if existing is not None:
                replies = await self._catch_up(tx, existing, now)
                if existing.status == "open":
                    if route is not None and route != existing.route:
                        existing.route = route
                        await tx.update_session(existing)
                    item = await tx.get_item(existing.id, existing.position)
                    assert item is not None
                    return replies + [
                        ActiveSession(existing.id, existing.mode, existing.position + 1, existing.total, mode.name),
                        self._card(existing, item, await self._tried(tx, item)),
                    ]
            challenge_set = None
            try:
                if mode is CHALLENGE:
                    played = await tx.challenge_sets_played(pid)
                    challenge_set, qids = pick_challenge(self.bank, self.rng, {k for k, ok in played.items() if not ok})
                elif mode is PRACTICE:
                    qids = pick_practice(self.bank, self.rng, topic, difficulty)
                elif mode is REVIEW:
                    qids = await self._review_questions(tx, pid, now)
                else:
                    qids = pick_test(self.bank, self.rng)
            except NoQuestions as exc:
                raise errors.BadRequest(str(exc)) from exc
            session = SessionRow(id=secrets.token_hex(8), player_id=pid, mode=mode.name, status="open", position=0,
                                 total=len(qids), created_at=now, challenge_set=challenge_set, route=route)
            items = [ItemRow(session.id, i, qid, self._shuffle()) for i, qid in enumerate(qids)]
            self._open_item(items[0], mode, now)
            await tx.insert_session(session, items)
        title = mode.title
        if challenge_set is not None:
            title += f": {next(s.title for s in self.bank.challenge_sets if s.id == challenge_set)}"
        if topic is not None:
            title += f": {self.bank.topics[topic].title}"
        return [SessionStarted(session.id, mode.name, session.total, title), self._card(session, items[0])]

    @retried
    async def answer(self, player: Player, session_id: str, question_id: str, choice: str, event_id: str,
                     *, route: str | None = None) -> list[Reply]:
        """Record one answer. The same event id twice is recorded once and gets the same feedback.

        The database's unique keys decide what is a duplicate: if the answer's insert finds its event
        key (or its attempt) already stored, the call runs again (`retried`) and replays the stored answer.
        """
        return await self._answer(player, session_id, question_id, choice, event_id, route)

    async def _answer(self, player: Player, session_id: str, question_id: str, choice: str, event_id: str,
                      route: str | None) -> list[Reply]:
        shown = (choice or "").strip().upper()
        key = f"{player.platform}:{event_id}"
        now = self._now()
        self.store.prefetch_answer_context(key, session_id)
        async with self._tx() as tx:
            # one read: the answer already stored under this key, the session, its owner, the current
            # and the next item
            ctx = await tx.answer_context(key, session_id)
            if ctx.prior is not None:
                return await self._replay(tx, player, ctx.prior)
            session, item = await self._owned_context(tx, player, ctx)
            if session.status != "open":
                raise errors.SessionClosed()
            if route is not None and route != session.route:
                session.route = route
                await tx.update_session(session)
            if item is None or item.question_id != question_id or item.status != "open":
                raise errors.QuestionClosed()
            if shown not in LETTERS:
                raise errors.UnknownChoice()
            mode = MODES[session.mode]
            q = self.bank.question(item.question_id)
            attempt = item.attempts_used + 1
            original = item.choice_order[LETTERS.index(shown)]
            if item.deadline is not None and now >= item.deadline:
                await tx.record_answer(AnswerRow(session.id, item.position, attempt, q.id, session.player_id,
                                                 original, shown, "late", 0, key, now))
                item.attempts_used = attempt
                return await self._close_item(tx, session, item, "timeout", now, next_item=ctx.next_item,
                                              items=ctx.items)
            if attempt > mode.attempts:
                raise errors.NoAttemptsLeft()
            if item.attempts_used and shown in (ctx.tried if ctx.tried is not None else await self._tried(tx, item)):
                # a card shown again, clicked twice
                raise errors.AlreadyTried(f"You already tried {shown} on this question; pick another letter.")
            correct = original == q.answer
            points = points_for(q.difficulty, correct=correct, attempt=attempt, hint_used=item.hint_used,
                                scored=mode.scored)
            await tx.record_answer(AnswerRow(session.id, item.position, attempt, q.id, session.player_id,
                                             original, shown, "correct" if correct else "wrong", points, key, now))
            item.attempts_used = attempt
            feedback = self._feedback(q, item, mode, shown, correct, points, attempt)
            if not feedback.final:
                await tx.update_item(item)
                return [feedback]
            return [feedback] + await self._close_item(tx, session, item, "correct" if correct else "wrong", now,
                                                       points, ctx.next_item, ctx.items)

    async def _owned_context(self, tx: Tx, player: Player, ctx: AnswerContext) -> tuple[SessionRow, ItemRow | None]:
        """The session of an answer, checked against the caller with the owner read alongside it."""
        session, owner = ctx.session, ctx.player
        if session is None or owner is None:
            raise errors.SessionNotFound()
        if (owner.platform, owner.tenant, owner.user_id) != player.key:
            raise errors.NotYourSession()
        self._player_scope[owner.id] = (owner.platform, owner.tenant)
        name = self._name(player)
        if name and name != owner.display_name:
            await self._player_id(tx, player)  # renamed: store the new name
        elif player.key not in self._player_ids:
            self._remember_player(tx, player, owner.id, owner.display_name)
        return session, ctx.item

    async def _replay(self, tx: Tx, player: Player, prior: AnswerRow) -> list[Reply]:
        session = await tx.get_session(prior.session_id)
        assert session is not None
        if session.player_id != await self._player_id(tx, player):
            raise errors.NotYourSession()
        item = await tx.get_item(prior.session_id, prior.position)
        assert item is not None
        q = self.bank.question(prior.question_id)
        mode = MODES[session.mode]
        replies: list[Reply]
        if prior.outcome == "late":
            replies = [TimeUp(session.id, q.id, self._shown_answer(q, item), q.answer_text, q.explanation)]
        else:
            replies = [self._feedback(q, item, mode, prior.shown_choice, prior.outcome == "correct", prior.points,
                                      prior.attempt)]
        if session.status == "open" and session.position > prior.position:
            current = await tx.get_item(session.id, session.position)
            assert current is not None
            replies.append(self._card(session, current, await self._tried(tx, current)))
        elif session.status != "open" and prior.position == session.total - 1 and item.status != "open":
            replies.append(await self._summary(tx, session))
        return replies

    async def _current(self, tx: Tx, player: Player, session_id: str | None, question_id: str | None,
                       now: float) -> tuple[SessionRow, ItemRow | None, list[Reply]]:
        """The player's open question, after closing it if its deadline passed (then the replies say so)."""
        session = await self._owned_session(tx, player, session_id)
        if session.status != "open":
            raise errors.SessionClosed()
        late = await self._catch_up(tx, session, now)
        if late:
            return session, None, late
        item = await tx.get_item(session.id, session.position)
        assert item is not None
        if question_id is not None and item.question_id != question_id:
            raise errors.QuestionClosed()
        return session, item, []

    @retried
    async def hint(self, player: Player, session_id: str | None = None, question_id: str | None = None) -> list[Reply]:
        async with self._tx() as tx:
            session, item, late = await self._current(tx, player, session_id, question_id, self._now())
            if item is None:
                return late
            if not item.hint_used:
                item.hint_used = True
                await tx.update_item(item)
            return [Hint(session.id, item.question_id, self.bank.question(item.question_id).hint,
                         MODES[session.mode].hint_costs_points)]

    @retried
    async def skip(self, player: Player, session_id: str | None = None, question_id: str | None = None) -> list[Reply]:
        now = self._now()
        async with self._tx() as tx:
            session, item, late = await self._current(tx, player, session_id, question_id, now)
            if item is None:
                return late
            return await self._close_item(tx, session, item, "skipped", now)

    @retried
    async def quit(self, player: Player) -> list[Reply]:
        now = self._now()
        async with self._tx() as tx:
            session = await self._owned_session(tx, player, None)
            item = await tx.get_item(session.id, session.position)
            if item is not None and item.status == "open":
                item.status, item.closed_at = "quit", now  # not a skip: the player left the quiz
                await tx.close_item_if_open(item)
            session.status, session.finished_at = "abandoned", now
            await tx.update_session(session)
            return [await self._summary(tx, session)]

    @retried
    async def resume(self, player: Player, *, route: str | None = None) -> list[Reply]:
        now = self._now()
        async with self._tx() as tx:
            session = await self._owned_session(tx, player, None)
            replies = await self._catch_up(tx, session, now)
            if replies:
                return replies
            if route is not None and route != session.route:
                session.route = route
                await tx.update_session(session)
            item = await tx.get_item(session.id, session.position)
            assert item is not None
            return [self._card(session, item, await self._tried(tx, item))]

    @retried
    async def set_route(self, session_id: str, question_id: str, route: str) -> bool:
        """Record where a question is shown, once the platform message exists.

        Written only while that question is still the open one, so a late write never points a
        newer question's time-out at an older message. True if stored.
        """
        async with self._tx() as tx:
            session = await tx.get_session(session_id)
            if session is None or session.status != "open":
                return False
            item = await tx.get_item(session.id, session.position)
            if item is None or item.question_id != question_id or item.status != "open":
                return False
            if session.route != route:
                session.route = route
                await tx.update_session(session)
            return True

    @retried
    async def question_outcome(self, player: Player, session_id: str, question_id: str) -> list[Reply]:
        """What happened to a question that is closed, then where the player is now.

        For a click on a question that was answered, timed out or skipped earlier (a stale card, or
        a result the platform never showed): its result, then the current question (with the
        letters already tried) or, if the quiz is over, its summary.
        """
        async with self._tx() as tx:
            session = await self._owned_session(tx, player, session_id)
            item = next((it for it in await tx.get_items(session.id) if it.question_id == question_id), None)
            if item is None:
                raise errors.QuestionClosed()
            result = await self._result_of(tx, session, item) if item.status not in ("open", "pending") else None
            replies: list[Reply] = [result] if result is not None else []
            replies += await self._catch_up(tx, session, self._now())  # the current one may have timed out too
            if any(isinstance(r, QuestionCard | Summary) for r in replies):
                return replies
            if session.status == "open":
                current = await tx.get_item(session.id, session.position)
                assert current is not None
                card: Reply = self._card(session, current, await self._tried(tx, current))
                if result is None:  # the question is the open one after all
                    return [card]
                where = "here is your current question."
            else:
                card, where = await self._summary(tx, session), "the quiz has ended."
            return replies + [Notice(f"That question was already closed (what happened to it is above); {where}"),
                              card]

    async def _result_of(self, tx: Tx, session: SessionRow, item: ItemRow) -> Reply | None:
        """The latest result of a question (its last answer, or how it closed), rebuilt from the store."""
        q = self.bank.question(item.question_id)
        shown = self._shown_answer(q, item)
        if item.status == "timeout":
            return TimeUp(session.id, q.id, shown, q.answer_text, q.explanation)
        if item.status == "skipped":
            return Skipped(session.id, q.id, shown, q.answer_text, q.explanation)
        if item.status == "pending":
            return None
        answers = [a for a in await tx.answers_to_item(session.id, item.position) if a.outcome != "late"]
        if not answers:
            return None
        last = answers[-1]
        return self._feedback(q, item, MODES[session.mode], last.shown_choice, last.outcome == "correct",
                              last.points, last.attempt)

    @retried
    async def note_unseen(self, player: Player, session_id: str, question_id: str) -> bool:
        """The platform refused to show a stored result (an expired interaction): show it next time.

        True if noted (a quiz question of this player; a daily answer has no session to replay).
        """
        async with self._tx() as tx:
            session = await tx.get_session(session_id)
            if session is None or session.player_id != await self._player_id(tx, player):
                return False
            await tx.set_unseen(session.player_id, session_id, question_id, self._now())
        self._unseen_keys.add(player.key)
        return True

    async def unseen(self, player: Player) -> list[Reply]:
        """The result `note_unseen` kept for this player (once), with a line saying why it comes now.

        Which players have one is known in memory after the first look (one process serves a
        given Discord guild or Slack workspace), so most interactions cost no database trip.
        """
        if self._unseen_keys_loaded and player.key not in self._unseen_keys:
            return []
        async with self._tx() as tx:
            if not self._unseen_keys_loaded:
                self._unseen_keys.update(await tx.unseen_players())
                self._unseen_keys_loaded = True
                if player.key not in self._unseen_keys:
                    return []
            pid = await self._player_id(tx, player)
            noted = await tx.take_unseen(pid)
            self._unseen_keys.discard(player.key)
            if noted is None:
                return []
            session = await tx.get_session(noted[0])
            items = await tx.get_items(noted[0]) if session is not None else []
            item = next((it for it in items if it.question_id == noted[1]), None)
            if session is None or item is None:
                return []
            result = await self._result_of(tx, session, item)
        if result is None:
            return []
        return [Notice("Your last answer was recorded, but the platform did not let mldebt show you the "
                       "result in time. Here it is:"), result]

    @retried
    async def expire_due(self, limit: int = 200) -> list[Delivery]:
        """Close every question whose deadline has passed; return what to tell each player."""
        now = self._now()
        deliveries: list[Delivery] = []
        async with self._tx() as tx:
            for session_id, position in await tx.due_items(now, limit):
                session = await tx.get_session(session_id)
                if session is None or session.status != "open" or session.position != position:
                    continue
                item = await tx.get_item(session_id, position)
                assert item is not None
                replies = await self._close_item(tx, session, item, "timeout", now)
                if replies:
                    delivery = Delivery(await self._player_of(tx, session), session.id, session.mode, session.route,
                                        tuple(replies))
                    await self._enqueue_timeout(tx, delivery, position)
                    deliveries.append(delivery)
        return deliveries

    @retried
    async def next_deadline(self) -> datetime | None:
        async with self._tx() as tx:
            return _ts(await tx.next_deadline())

    # -----------------------------------------------------------------------------------------
    # platform grants and per-tenant settings

    @retried
    async def pending_grants(self, platform: str, tenant: str | None = None) -> list[PendingGrant]:
        """Grants not carried out yet (waiting, retrying, paused or failed), oldest first."""
        async with self._tx() as tx:
            rows = await tx.outbox_entries(platform, tenant, "grant", GRANT_OPEN)
            out = []
            for e in rows:
                data = e.data
                row = await tx.get_player(data["player_id"])
                player = Player(platform, e.tenant, data["user"], row.display_name if row else "")
                reason = (f"{e.last_error}: {e.error_fix}" if e.error_fix else e.error_detail) if e.last_error else None
                out.append(PendingGrant(player, data["badge"], reason, e.attempts, _ts(e.first_error_at or e.created_at)))
        return out

    # -- the outbox: intents written with the facts that cause them (see bot/outbox.py) ----------

    async def _enqueue_badge(self, tx: Tx, session: SessionRow, badge: BadgeAwarded) -> None:
        player, now = badge.player, self._now()
        if player.platform in self.grant_platforms:
            await tx.enqueue(player.platform, player.tenant, "grant", f"grant:{session.player_id}:{badge.badge}",
                             f"badge:{badge.badge}",
                             outbox.dumps({"player_id": session.player_id, "user": player.user, "badge": badge.badge}),
                             now)
        if "celebration" in self.outbox_kinds.get(player.platform, ()):
            await tx.enqueue(player.platform, player.tenant, "celebration",
                             f"celebration:{session.player_id}:{badge.badge}", _route_target(session.route),
                             outbox.dumps({"badge": badge, "route": session.route,
                                           "channel": _route_target(session.route)}), now,
                             expires_at=now + CELEBRATION_TTL)
        self.deadlines_changed.set()

    async def _enqueue_timeout(self, tx: Tx, delivery: Delivery, position: int) -> None:
        player, now = delivery.player, self._now()
        kinds = self.outbox_kinds.get(player.platform)
        if kinds is None or "timeout" in kinds:
            await tx.enqueue(player.platform, player.tenant, "timeout", f"timeout:{delivery.session_id}:{position}",
                             _route_target(delivery.route), outbox.dumps(delivery.__dict__), now,
                             expires_at=now + TIMEOUT_TTL)

    @retried
    async def tenant_removed(self, platform: str, tenant: str, reason: str, fix: str | None = None) -> None:
        """The app was uninstalled, its token revoked, the bot removed: pause everything of the tenant."""
        now = self._now()
        async with self._tx() as tx:
            prior = await tx.target_state(platform, tenant, TENANT)
            if prior is not None and prior.state == "paused" and prior.reason == reason:
                return
            await tx.set_target_state(TargetState(platform, tenant, TENANT, "paused", reason,
                                                  TENANT_REASONS.get(reason, reason), fix,
                                                  prior.since if prior else now, now))
            moved = await tx.outbox_move(platform, tenant, None, None, ("pending", "sending"), "paused", now)
        log.warning("%s %s paused (%s): %d waiting deliveries held", platform, tenant, reason, moved)

    @retried
    async def tenant_restored(self, platform: str, tenant: str) -> bool:
        """Reinstalled or re-added: resume the tenant's schedules and waiting deliveries. True if it was paused."""
        now = self._now()
        async with self._tx() as tx:
            prior = await tx.target_state(platform, tenant, TENANT)
            if prior is None:
                return False
            await outbox.resume(tx, platform, tenant, None, now)
        self.deadlines_changed.set()
        return True

    @retried
    async def retry_deliveries(self, player: Player, *, celebrate_default: bool) -> list[Reply]:
        """An admin says the cause is fixed: forget the tenant's delivery problems, retry what waits."""
        now = self._now()
        async with self._tx() as tx:
            moved = 0
            for state in await tx.target_states(player.platform, player.tenant):
                moved += await outbox.resume(tx, player.platform, player.tenant, state.target or None, now)
            moved += await tx.outbox_move(player.platform, player.tenant, None, "grant", ("failed",), "pending", now)
        self.deadlines_changed.set()
        note = Notice(f"Trying {moved} waiting deliver{'y' if moved == 1 else 'ies'} again now." if moved
                      else "Nothing was waiting; admin status below.")
        return [note, *await self.admin_status(player, celebrate_default=celebrate_default)]

    @retried
    async def first_sight(self, platform: str, key: str) -> bool:
        """Record an inbound id (a Slack trigger_id or event_id): False if it was handled before."""
        async with self._tx() as tx:
            return await tx.first_sight(platform, key, self._now())

    @retried
    async def tenant_flag(self, platform: str, tenant: str, key: str, default: bool) -> bool:
        async with self._tx() as tx:
            value = await tx.get_setting(platform, tenant, key)
        return default if value is None else value == "on"

    @retried
    async def set_tenant_flag(self, platform: str, tenant: str, key: str, on: bool) -> None:
        async with self._tx() as tx:
            await tx.set_setting(platform, tenant, key, "on" if on else "off")

    async def admin_status(self, player: Player, *, celebrate_default: bool) -> list[Reply]:
        """Settings, pending grants, and per schedule and per grant target the delivery problem with its fix."""
        celebrate = await self.tenant_flag(player.platform, player.tenant, "celebrate", celebrate_default)
        pending = await self.pending_grants(player.platform, player.tenant)
        async with self._tx() as tx:
            states = {s.target: s for s in await tx.target_states(player.platform, player.tenant)}
            channels = await tx.daily_channels(player.platform, player.tenant)
        problems = {t: DeliveryProblem(s.target, s.state, s.reason, s.detail, s.fix, _ts(s.since) or self.clock.now())
                    for t, s in states.items()}
        schedules = tuple(ScheduleHealth(c.channel, c.post_time, c.timezone, c.enabled, problems.get(c.channel))
                          for c in channels)
        others = tuple(p for t, p in problems.items() if t == TENANT or t.startswith("badge:"))
        return [AdminStatus(player.platform, player.tenant, celebrate, tuple(pending), schedules, others)]

    # -----------------------------------------------------------------------------------------
    # information

    @retried
    async def stats(self, player: Player) -> list[Reply]:
        async with self._tx() as tx:
            await tx.apply_scores()
            pid = await self._player_id(tx, player)
            totals = await tx.totals(pid)
            badges = await tx.badges(pid)
            streak_days, team, rank = await self._community_stats(tx, player, pid)
            played = await tx.challenge_sets_played(pid)
            per_topic: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            answered_all = right_all = 0  # accuracy as Stats defines it, from the same rows as by topic
            for qid, answered, correct in await tx.topic_accuracy(pid):
                answered_all, right_all = answered_all + answered, right_all + correct
                q = self.bank.questions.get(qid)
                if q is not None:
                    per_topic[q.topic][0] += correct
                    per_topic[q.topic][1] += answered
        return [Stats(
            player=replace(player, display_name=clean(player.display_name)),
            points=totals.points,
            answered=answered_all,
            correct=right_all,
            badges=tuple(badges),
            by_topic=tuple(Breakdown(t, c, n) for t, (c, n) in sorted(per_topic.items())),
            challenges_played=len(played),
            streak=streak_days,
            team=team,
            rank=rank,
        )]

    def topics(self) -> list[Reply]:
        infos = []
        for t in sorted(self.bank.topics.values(), key=lambda t: t.id):
            practice = sum(1 for qid in t.question_ids if self.bank.questions[qid].solution is not None)
            infos.append(TopicInfo(t.id, t.title, len(t.question_ids), practice))
        return [TopicList(tuple(infos))]

    def learn(self, topic: str | None = None) -> list[Reply]:
        if topic is None:
            return self.topics()
        self._validate_filters(topic, None)
        t = self.bank.topics[topic]
        practice = sum(1 for qid in t.question_ids if self.bank.questions[qid].solution is not None)
        c = t.concept
        return [ConceptCard(t.id, t.title, c.what, c.shows_up, c.pay_down, c.sources, practice)]
