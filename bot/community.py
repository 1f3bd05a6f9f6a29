"""Teams, leaderboards, daily question posts, streaks and spaced review.

A mixin of QuizEngine: it shares the engine's store, bank, clock and transaction helper. Each scored
result is recorded as a fact in the answer's transaction; the store folds the facts into per-period
aggregates (week, month, all time) once per commit, and a read of totals, ranks or team points
folds in any pending ones first, so a leaderboard never sums raw answers and never lags.

Rules, documented in the README:
- a player is in at most one team per workspace/server; team points are the points members earned
  while in the team; teams rank by total points, or by points per current member;
- ranks: most points first; a tie goes to whoever reached that score first, then to the lower id;
- a daily post is claimed in the database before it is sent (one row per channel and local date),
  so a restart, a crash mid-post or a second process never posts twice;
- review is a Leitner schedule: a miss puts the question in box 1 (due now); each right review
  moves it up a box (due again in 1, 3, 7 days); right in box 4 retires it; a wrong review
  sends it back to box 1, due tomorrow.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import unicodedata
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from . import errors
from .bank import LETTERS
from .outbox import OutboxEntry, ShardFilter, dumps, resume
from .periods import (
    PERIODS,
    daily_instant,
    latest_slot,
    local_date,
    next_slot,
    parse_hhmm,
    period_key,
    period_keys_window,
    period_label,
    streak,
    zone,
)
from .platform_errors import Permanent, Transient
from .replies import (
    Choice,
    DailyChannelInfo,
    DailyPost,
    DailyReveal,
    DailyStatus,
    Feedback,
    Leaderboard,
    LeaderEntry,
    Notice,
    Player,
    Reply,
    TeamInfo,
    TeamList,
)
from .retry import retried
from .scoring import points_for
from .store import DailyChannelRow, DailyPostRow, Tx
from .store.outbox import NewOutboxEntry
from .text import clean, fold_key

if TYPE_CHECKING:
    from .engine import QuizEngine

TEAM_NAME_MIN, TEAM_NAME_MAX = 3, 32
REVIEW_INTERVAL_DAYS = {1: 1, 2: 3, 3: 7}  # days until the next review after a right answer in box n
REVIEW_RETIRE_AFTER_BOX = 4
REVIEW_BATCH = 5
DAILY_QUEUE_CHUNK = 500  # channels queued per transaction
_CHANNEL_REF = re.compile(r"^<#([A-Za-z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_ID = re.compile(r"^#?([A-Za-z0-9_-]{1,80})$")


def scope_of(platform: str, tenant: str) -> str:
    return f"{platform}:{tenant}"


def fold_name(raw: str) -> str:
    """How a team name is shown: NFC, runs of white space folded. `team_key` is how it is compared."""
    return " ".join(unicodedata.normalize("NFC", raw).split())


def team_key(name: str) -> str:
    """The key that makes two spellings one team: NFKC and case-folded (`Ａｄｍｉｎｓ` is `admins`)."""
    return fold_key(name)


def normalise_team_name(raw: str) -> str:
    """Validate a team name; return it folded. Raises BadRequest with the rule it breaks."""
    name = fold_name(raw)
    if not TEAM_NAME_MIN <= len(name) <= TEAM_NAME_MAX:
        raise errors.BadRequest(f"Team names need {TEAM_NAME_MIN} to {TEAM_NAME_MAX} characters.")
    if any(not (ch.isalnum() or ch in " -_.") for ch in name):
        raise errors.BadRequest("Team names may use letters, digits, spaces, '-', '_' and '.' only.")
    if not name[0].isalnum():
        raise errors.BadRequest("Team names must start with a letter or a digit.")
    return name


def parse_channel(token: str) -> str:
    """A channel reference as typed: Slack `<#C123|name>`, Discord `<#123>`, or a bare id/name."""
    m = _CHANNEL_REF.match(token) or _CHANNEL_ID.match(token)
    if not m:
        raise errors.BadRequest(f"'{token[:40]}' is not a channel. Mention it, like #general.")
    return m.group(1)


class CommunityMixin:
    """Mixed into QuizEngine; see the module docstring for the rules."""

    default_tz: ZoneInfo
    _tz_cache: dict[str, ZoneInfo]
    _player_scope: dict[int, tuple[str, str]]
    _period_cache: dict[ZoneInfo, tuple[float, float, str, str]]  # zone -> span, week key, month key

    # -- helpers used inside engine transactions ---------------------------------------------------

    async def _scope_of_player(self: QuizEngine, tx: Tx, player_id: int) -> tuple[str, str]:
        cached = self._player_scope.get(player_id)
        if cached is None:
            row = await tx.get_player(player_id)
            assert row is not None
            cached = self._player_scope[player_id] = (row.platform, row.tenant)
        return cached

    async def _tenant_tz(self: QuizEngine, tx: Tx, platform: str, tenant: str) -> ZoneInfo:
        key = scope_of(platform, tenant)
        tz = self._tz_cache.get(key)
        if tz is None:
            name = await tx.get_setting(platform, tenant, "timezone")
            tz = self._tz_cache[key] = (zone(name) if name else None) or self.default_tz
        return tz

    async def _record_result(self: QuizEngine, tx: Tx, player_id: int, points: int, answered: int, correct: int,
                             now: float) -> None:
        """A scoring fact; totals and the week/month/all aggregates of the player and their team
        follow from the facts, once per commit (see Tx.apply_scores)."""
        platform, tenant = await self._scope_of_player(tx, player_id)
        tz = await self._tenant_tz(tx, platform, tenant)
        start, end, week, month = self._period_cache.get(tz, (0.0, 0.0, "", ""))
        if not start <= now < end:
            (week, month, _), start, end = period_keys_window(datetime.fromtimestamp(now, UTC), tz)
            self._period_cache[tz] = (start, end, week, month)
        await tx.add_score(scope_of(platform, tenant), week, month, player_id, points, answered, correct, now)

    async def _record_activity(self: QuizEngine, tx: Tx, player_id: int, now: float) -> None:
        platform, tenant = await self._scope_of_player(tx, player_id)
        tz = await self._tenant_tz(tx, platform, tenant)
        await tx.add_activity(player_id, local_date(datetime.fromtimestamp(now, UTC), tz).isoformat())

    async def _review_after(self: QuizEngine, tx: Tx, player_id: int, question_id: str, mode: str, outcome: str,
                            now: float) -> None:
        if mode == "review":
            box = await tx.review_box(player_id, question_id) or 1
            if outcome == "correct":
                if box >= REVIEW_RETIRE_AFTER_BOX:
                    await tx.drop_review(player_id, question_id)
                else:
                    await tx.set_review(player_id, question_id, box + 1, now + REVIEW_INTERVAL_DAYS[box] * 86400)
            elif outcome in ("wrong", "timeout"):
                await tx.set_review(player_id, question_id, 1, now + 86400)
        elif outcome in ("wrong", "timeout"):
            await tx.set_review(player_id, question_id, 1, now)

    # -- teams --------------------------------------------------------------------------------------

    @retried
    async def team(self: QuizEngine, player: Player, action: str, raw_name: str = "") -> list[Reply]:
        now = self._now()
        scope = scope_of(player.platform, player.tenant)
        async with self._tx() as tx:
            await tx.apply_scores()
            pid = await self._player_id(tx, player)
            current = await tx.team_of(pid)
            if action == "create":
                name = normalise_team_name(raw_name)
                if current is not None:
                    raise errors.BadRequest(f"You are already in team '{current.name}'. Leave it first with "
                                            "`team leave`.")
                team_id = await tx.create_team(scope, name, team_key(name), pid, now)
                if team_id is None:
                    raise errors.BadRequest(f"A team called '{name}' already exists here (names ignore case).")
                await tx.join_team(pid, team_id, now)
                return [Notice(f"Team '{name}' created, and you are in it. Others join with `team join {name}`.")]
            if action == "join":
                name = fold_name(raw_name)
                team = await tx.team_by_key(scope, team_key(name)) if name else None
                if team is None:
                    raise errors.BadRequest(f"There is no team called '{name[:40]}' here. See `team list`.")
                if current is not None:
                    if current.id == team.id:
                        return [Notice(f"You are already in team '{team.name}'.")]
                    raise errors.BadRequest(f"You are already in team '{current.name}'. Leave it first with "
                                            "`team leave`.")
                await tx.join_team(pid, team.id, now)
                return [Notice(f"You joined team '{team.name}'.")]
            if action == "leave":
                if current is None:
                    raise errors.BadRequest("You are not in a team.")
                await tx.leave_team(pid)
                return [Notice(f"You left team '{current.name}'.")]
            rows = await tx.list_teams(scope)
            return [TeamList(tuple(TeamInfo(r.name, r.members, r.points) for r in rows),
                             current.name if current else None)]

    # -- leaderboards ---------------------------------------------------------------------------------

    @retried
    async def leaderboard(self: QuizEngine, player: Player, kind: str = "players", period: str = "week",
                          per_member: bool = False, limit: int = 10) -> list[Reply]:
        if kind not in ("players", "teams"):
            raise errors.BadRequest("Use `leaderboard players` or `leaderboard teams`.")
        if period not in PERIODS:
            raise errors.BadRequest("The period is `week`, `month` or `all`.")
        scope = scope_of(player.platform, player.tenant)
        async with self._tx() as tx:
            await tx.apply_scores()
            pid = await self._player_id(tx, player)
            tz = await self._tenant_tz(tx, player.platform, player.tenant)
            instant = self.clock.now()
            key = period_key(period, instant, tz)
            if kind == "players":
                rows = await tx.top_players(scope, key, limit)
                entries = tuple(LeaderEntry(i, r.name, r.points, 0, r.id == pid) for i, r in enumerate(rows, 1))
                mine = await tx.player_rank(scope, key, pid)
                me = LeaderEntry(mine[0], clean(player.display_name) or player.user, mine[1], 0, True) if mine else None
            else:
                team = await tx.team_of(pid)
                rows = await tx.top_teams(scope, key, per_member, 10_000)
                ranked = [LeaderEntry(i, r.name, r.points, r.members, team is not None and r.id == team.id)
                          for i, r in enumerate(rows, 1)]
                entries = tuple(ranked[:limit])
                me = next((e for e in ranked if e.is_me), None)
        return [Leaderboard(kind, period, period_label(period, instant, tz), per_member and kind == "teams",
                            entries, me)]

    @retried
    async def set_timezone(self: QuizEngine, player: Player, name: str) -> list[Reply]:
        tz = zone(name)
        if tz is None:
            raise errors.BadRequest(f"Unknown time zone '{name[:60]}'. Use an IANA name like Europe/Berlin.")
        async with self._tx() as tx:
            await tx.set_setting(player.platform, player.tenant, "timezone", name)
        self._tz_cache[scope_of(player.platform, player.tenant)] = tz
        return [Notice(f"Weeks, months and streaks now follow {name}.")]

    # -- streaks and stats -----------------------------------------------------------------------------

    async def _streak(self: QuizEngine, tx: Tx, player: Player, pid: int) -> int:
        tz = await self._tenant_tz(tx, player.platform, player.tenant)
        return streak(await tx.activity_dates(pid, 400), local_date(self.clock.now(), tz))

    async def _community_stats(self: QuizEngine, tx: Tx, player: Player, pid: int) -> tuple[int, str | None, int | None]:
        team = await tx.team_of(pid)
        rank = await tx.player_rank(scope_of(player.platform, player.tenant), "all", pid)
        return await self._streak(tx, player, pid), team.name if team else None, rank[0] if rank else None

    # -- review ---------------------------------------------------------------------------------------

    async def _review_questions(self: QuizEngine, tx: Tx, pid: int, now: float) -> list[str]:
        due = [q for q in await tx.due_reviews(pid, now, REVIEW_BATCH * 4) if q in self.bank.questions]
        if due:
            return due[:REVIEW_BATCH]
        nxt = await tx.next_review(pid)
        if nxt is None:
            raise errors.BadRequest("Nothing to review: questions you miss come back here on a spaced schedule.")
        when = datetime.fromtimestamp(nxt[0], UTC)
        raise errors.BadRequest(f"Nothing due yet: {nxt[1]} question{'s' if nxt[1] != 1 else ''} in review, "
                                f"the next one on {when:%Y-%m-%d %H:%M} UTC.")

    # -- daily posts ------------------------------------------------------------------------------------

    @retried
    async def daily_set(self: QuizEngine, player: Player, channel_token: str, hhmm: str, tz_name: str) -> list[Reply]:
        channel = parse_channel(channel_token)
        at = parse_hhmm(hhmm)
        if at is None:
            raise errors.BadRequest(f"'{hhmm[:20]}' is not a time: use 24-hour HH:MM, like 09:00.")
        tz = zone(tz_name)
        if tz is None:
            raise errors.BadRequest(f"Unknown time zone '{tz_name[:60]}'. Use an IANA name like Europe/Berlin.")
        await self._probe_channel(player, channel)
        async with self._tx() as tx:
            await tx.set_daily_channel(DailyChannelRow(player.platform, player.tenant, channel, at.strftime("%H:%M"),
                                                       tz_name, True), self._now())
            await resume(tx, player.platform, player.tenant, channel, self._now())  # the admin re-checked it
        self.deadlines_changed.set()
        return await self.daily_status(player)

    async def _probe_channel(self: QuizEngine, player: Player, channel: str) -> None:
        """Refuse a daily channel the bot cannot post in, with the platform's reason and the fix."""
        probe = self.channel_probes.get(player.platform)
        if probe is None:
            return
        try:
            await probe(player.tenant, channel)
        except Permanent as exc:
            raise errors.BadRequest(f"I can't post in <#{channel}>: {exc.detail}."
                                    + (f" Fix: {exc.fix}" if exc.fix else "")) from exc
        except Transient as exc:
            raise errors.BadRequest(f"I could not check <#{channel}> just now ({exc.reason}); please try again "
                                    "in a minute.") from exc

    @retried
    async def daily_off(self: QuizEngine, player: Player, channel_token: str | None) -> list[Reply]:
        async with self._tx() as tx:
            rows = await tx.daily_channels(player.platform, player.tenant)
            if channel_token is not None:
                channel = parse_channel(channel_token)
                rows = [r for r in rows if r.channel == channel]
                if not rows:
                    raise errors.BadRequest(f"No daily question is set for <#{channel[:40]}>.")
            for r in rows:
                r.enabled = False
                await tx.set_daily_channel(r, self._now())
        return await self.daily_status(player)

    @retried
    async def daily_status(self: QuizEngine, player: Player) -> list[Reply]:
        now = self.clock.now()
        infos = []
        async with self._tx() as tx:
            for r in await tx.daily_channels(player.platform, player.tenant):
                tz, at = zone(r.timezone), parse_hhmm(r.post_time)
                nxt = next_slot(now, at, tz) if (r.enabled and tz and at) else None
                posting_now = False
                if nxt is not None:
                    # the scheduler posts the latest slot's question at once when it was never posted
                    day = latest_slot(now, at, tz)
                    posting_now = all([await tx.daily_post_on(r.platform, r.tenant, r.channel, d.isoformat()) is None
                                       for d in (day, day + timedelta(days=1))])
                infos.append(DailyChannelInfo(r.channel, r.post_time, r.timezone, r.enabled, nxt, posting_now))
        return [DailyStatus(tuple(infos))]

    @retried
    async def daily_now(self: QuizEngine, player: Player, channel_token: str | None) -> list[Reply]:
        """Queue today's post for immediate sending (still one post per channel per local day)."""
        now = self._now()
        async with self._tx() as tx:
            rows = [r for r in await tx.daily_channels(player.platform, player.tenant) if r.enabled]
            if channel_token is not None:
                channel = parse_channel(channel_token)
                rows = [r for r in rows if r.channel == channel]
            if not rows:
                raise errors.BadRequest("Set a daily channel first: `daily set #channel HH:MM Area/City`.")
            if len(rows) > 1:
                raise errors.BadRequest("Several channels have a daily question; name one: `daily now #channel`.")
            row = rows[0]
            tz, at = zone(row.timezone), parse_hhmm(row.post_time)
            assert tz is not None and at is not None
            today = local_date(datetime.fromtimestamp(now, UTC), tz)
            if await tx.daily_post_on(row.platform, row.tenant, row.channel, today.isoformat()) is not None:
                raise errors.BadRequest(f"Today's question is already posted in <#{row.channel}>; "
                                        "one per day.")
            await self._queue_post(tx, row, today, tz, at, now)
        self.deadlines_changed.set()
        return [Notice(f"Posting today's question in <#{row.channel}> now.")]

    async def _queue_post(self: QuizEngine, tx: Tx, row: DailyChannelRow, day: date, tz: ZoneInfo, at,
                          now: float) -> DailyPost | None:
        question_id = self._next_daily_question(await tx.daily_history(row.platform, row.tenant, row.channel))
        closes = daily_instant(day + timedelta(days=1), at, tz).timestamp()
        post = DailyPostRow(secrets.token_hex(8), row.platform, row.tenant, row.channel, day.isoformat(), question_id,
                            self._shuffle(), "queued", None, 0.0, None, max(closes, now + 3600))
        if not await tx.insert_daily_post(post):
            return None
        # the previous post's window closes when the next one goes out
        await tx.close_daily_windows(row.platform, row.tenant, row.channel, post.id, now)
        reply = self._daily_reply(post)
        await tx.enqueue(row.platform, row.tenant, "daily_post", f"daily_post:{row.channel}:{post.local_date}",
                         row.channel, dumps({"post_id": post.id, "post": reply}), now, expires_at=post.closes_at)
        self.deadlines_changed.set()
        return reply

    def _next_daily_question(self: QuizEngine, history_newest_first: list[str]) -> str:
        """A question the channel has not seen in the current pass through the whole bank."""
        if not history_newest_first:  # a new channel (most of them at a first 09:00): the whole bank
            return self.rng.choice(self._sorted_question_ids())
        all_ids = set(self.bank.questions)
        seen: set[str] = set()
        for qid in history_newest_first:
            if qid not in all_ids:
                continue
            if qid in seen or len(seen) == len(all_ids):
                break
            seen.add(qid)
        if len(seen) == len(all_ids):
            seen = set()
        return self.rng.choice(sorted(all_ids - seen))

    def _sorted_question_ids(self: QuizEngine) -> list[str]:
        """The bank's question ids in order, sorted once per bank instead of once per channel."""
        cached = self.__dict__.get("_sorted_ids")
        if cached is None or cached[0] is not self.bank:
            cached = self.__dict__["_sorted_ids"] = (self.bank, sorted(self.bank.questions))
        return cached[1]

    async def queue_daily_posts(self: QuizEngine, platforms: Collection[str],
                                queued_some: asyncio.Event | None = None) -> list[DailyPost]:
        """Write the daily posts that are due (a `daily_posts` row and its outbox entry, together).

        Only `platforms` (those this process can post to) are queued; a channel or tenant whose
        deliveries are paused gets none until an admin fixes it. The entry expires when the post's
        window closes, so a post that could not go out in time is dropped, never posted late.
        Channels are queued `DAILY_QUEUE_CHUNK` per transaction, and `queued_some` is set after
        each, so the outbox worker can start sending the first ones while the rest are queued. A
        chunk that collides with another process's is run again alone (it then finds that
        process's posts), not the whole call.
        """
        now_dt = self.clock.now()
        queued: list[DailyPost] = []
        due = await self._daily_due(platforms)
        starts = list(range(0, len(due), DAILY_QUEUE_CHUNK))
        # processes on one database start at different chunks, so they queue different channels
        # instead of colliding on the same ones (a chunk another process queued costs one read)
        first = random.randrange(len(starts)) if starts else 0
        for start in starts[first:] + starts[:first]:
            queued += await self._queue_chunk_tx(due[start:start + DAILY_QUEUE_CHUNK], now_dt)
            if queued_some is not None:
                queued_some.set()
        if queued:
            self.deadlines_changed.set()
        return queued

    @retried
    async def _daily_due(self: QuizEngine, platforms: Collection[str]) -> list[tuple[DailyChannelRow, ZoneInfo, Any]]:
        """The enabled daily channels of `platforms` with a valid time, except paused ones."""
        async with self._tx() as tx:
            paused = {(s.platform, s.tenant, s.target) for s in await tx.target_states(None, None)
                      if s.state == "paused"}
            due = []
            for row in await tx.daily_channels(None, None):
                tz, at = zone(row.timezone), parse_hhmm(row.post_time)
                if not row.enabled or tz is None or at is None or row.platform not in platforms:
                    continue
                if {(row.platform, row.tenant, row.channel), (row.platform, row.tenant, "")} & paused:
                    continue
                due.append((row, tz, at))
        return due

    @retried
    async def _queue_chunk_tx(self: QuizEngine, chunk: list[tuple[DailyChannelRow, ZoneInfo, Any]],
                              now_dt: datetime) -> list[DailyPost]:
        async with self._tx() as tx:
            return await self._queue_chunk(tx, chunk, now_dt)

    async def _queue_chunk(self: QuizEngine, tx: Tx, chunk: list[tuple[DailyChannelRow, ZoneInfo, Any]],
                           now_dt: datetime) -> list[DailyPost]:
        """`_queue_post` for a chunk of channels in a handful of statements (bot/store/daily_sql.py):
        the same rules (none if the channel has today's or, posted early by `daily now`, the next
        day's post; a question it has not seen in this pass through the bank; the previous window
        ends), decided here from one read of the chunk's recent posts."""
        now = now_dt.timestamp()
        # a pass through the bank is at most its size: older posts cannot change the pick
        recent = await tx.daily_recent([(r.platform, r.tenant, r.channel) for r, _, _ in chunk],
                                       len(self.bank.questions) + 1, now)
        rows: list[DailyPostRow] = []
        for row, tz, at in chunk:
            day = latest_slot(now_dt, at, tz)
            posts = recent.get((row.platform, row.tenant, row.channel), [])
            if {day.isoformat(), (day + timedelta(days=1)).isoformat()} & {p.local_date for p in posts}:
                continue
            closes = daily_instant(day + timedelta(days=1), at, tz).timestamp()
            rows.append(DailyPostRow(secrets.token_hex(8), row.platform, row.tenant, row.channel, day.isoformat(),
                                     self._next_daily_question([p.question_id for p in posts]), self._shuffle(),
                                     "queued", None, 0.0, None, max(closes, now + 3600)))
        inserted = await tx.insert_daily_posts(rows)
        rows = [r for r in rows if r.id in inserted]
        # the previous post's window closes when the next one goes out
        await tx.end_daily_windows([p.id for r in rows for p in recent.get((r.platform, r.tenant, r.channel), [])
                                    if p.status in ("queued", "posted") and p.closes_at > now], now)
        replies = [self._daily_reply(r) for r in rows]
        await tx.enqueue_many([NewOutboxEntry(r.platform, r.tenant, "daily_post", f"daily_post:{r.channel}:{r.local_date}",
                                              r.channel, dumps({"post_id": r.id, "post": reply}), expires_at=r.closes_at)
                               for r, reply in zip(rows, replies, strict=True)], now)
        return replies

    def _daily_reply(self: QuizEngine, post: DailyPostRow) -> DailyPost:
        q = self.bank.question(post.question_id)
        choices = tuple(Choice(LETTERS[i], q.choices[LETTERS.index(o)]) for i, o in enumerate(post.choice_order))
        return DailyPost(post.id, post.platform, post.tenant, post.channel, post.local_date, q.id, q.topic,
                         q.difficulty, q.prompt, q.code, choices, datetime.fromtimestamp(post.closes_at, UTC))

    @retried
    async def daily_posted(self: QuizEngine, post_id: str, message_ref: str) -> bool:
        async with self._tx() as tx:
            return await self._mark_posted(tx, post_id, message_ref)

    async def _mark_posted(self: QuizEngine, tx: Tx, post_id: str, message_ref: str | None) -> bool:
        post = await tx.get_daily_post(post_id)
        if post is None or post.status not in ("queued", "missed"):
            return False
        expect = post.status
        post.status, post.message_ref, post.posted_at = "posted", message_ref, self._now()
        return await tx.update_daily_post(post, expect)

    async def on_daily_post_settled(self: QuizEngine, tx: Tx, entry: OutboxEntry) -> None:
        """The outbox hook of a daily post: posted (with its message), or missed (failed or too late)."""
        post_id = entry.data["post_id"]
        if entry.status == "sent":
            await self._mark_posted(tx, post_id, entry.sent_ref)
            return
        post = await tx.get_daily_post(post_id)
        if post is not None and post.status == "queued":
            post.status = "missed"
            await tx.update_daily_post(post, "queued")

    async def on_daily_posts_settled(self: QuizEngine, tx: Tx, entries: list[OutboxEntry]) -> None:
        """`on_daily_post_settled` for a settling batch: the posts sent are marked posted in one statement."""
        sent = [e for e in entries if e.status == "sent"]
        await tx.daily_posts_posted([(e.data["post_id"], e.sent_ref) for e in sent], self._now())
        for entry in entries:
            if entry.status != "sent":
                await self.on_daily_post_settled(tx, entry)

    @retried
    async def close_daily_posts(self: QuizEngine) -> list[DailyReveal]:
        """Close every post whose window has ended and write its reveal to the outbox (same transaction)."""
        now = self._now()
        out: list[DailyReveal] = []
        async with self._tx() as tx:
            for post in await tx.daily_posts_due("queued", now, "closes_at"):
                post.status = "missed"  # its outbox entry expires with the window
                await tx.update_daily_post(post, "queued")
            for post in await tx.daily_posts_due("posted", now, "closes_at"):
                post.status = "closed"
                if not await tx.update_daily_post(post, "posted"):
                    continue
                q = self.bank.question(post.question_id)
                answered, correct = await tx.daily_counts(post.id)
                choices = tuple(Choice(LETTERS[i], q.choices[LETTERS.index(o)])
                                for i, o in enumerate(post.choice_order))
                reveal = DailyReveal(post.id, post.platform, post.tenant, post.channel, post.message_ref,
                                     post.local_date, q.id, q.prompt, choices,
                                     LETTERS[post.choice_order.index(q.answer)], q.answer_text, q.explanation,
                                     answered, correct)
                await tx.enqueue(post.platform, post.tenant, "daily_reveal", f"daily_reveal:{post.id}", post.channel,
                                 dumps(reveal), now)
                out.append(reveal)
        return out

    @retried
    async def daily_answer(self: QuizEngine, player: Player, post_id: str, question_id: str, choice: str,
                           event_id: str) -> list[Reply]:
        shown = (choice or "").strip().upper()
        key = f"{player.platform}:{event_id}"
        now = self._now()
        async with self._tx() as tx:
            pid = await self._player_id(tx, player)
            post = await tx.get_daily_post(post_id)
            if post is None or post.question_id != question_id:
                raise errors.QuestionClosed("That daily question no longer exists.")
            if post.platform != player.platform or post.tenant != player.tenant:
                raise errors.NotYourSession("That daily question belongs to another workspace.")
            q = self.bank.question(post.question_id)
            prior = await tx.daily_answer(post.id, pid)
            if prior is not None:
                was_shown, was_correct, was_points, prior_key = prior
                if prior_key != key:
                    raise errors.NoAttemptsLeft("You already answered today's question: one answer each.")
                return [self._daily_feedback(post, q, was_shown, was_correct, was_points)]
            if post.status in ("closing", "closed") or now >= post.closes_at:
                raise errors.QuestionClosed("This daily question has closed; the answer is in the post.")
            if shown not in LETTERS:
                raise errors.UnknownChoice()
            original = post.choice_order[LETTERS.index(shown)]
            correct = original == q.answer
            points = points_for(q.difficulty, correct=correct, attempt=1, hint_used=False)
            if not await tx.insert_daily_answer(post.id, pid, original, shown, correct, points, key, now):
                raise errors.NoAttemptsLeft("You already answered today's question: one answer each.")
            await self._record_result(tx, pid, points, 1, int(correct), now)
            await self._record_activity(tx, pid, now)
            await self._review_after(tx, pid, q.id, "daily", "correct" if correct else "wrong", now)
            return [self._daily_feedback(post, q, shown, correct, points)]

    @staticmethod
    def _daily_feedback(post: DailyPostRow, q, shown: str, correct: bool, points: int) -> Feedback:
        return Feedback(session_id=post.id, question_id=q.id, chosen=shown, correct=correct, points=points,
                        attempts_left=0, final=True, answer_letter=LETTERS[post.choice_order.index(q.answer)],
                        answer_text=q.answer_text, explanation=q.explanation)

    @retried
    async def next_wakeup(self: QuizEngine, routes: Collection[str] = (),
                          shards: Collection[ShardFilter] = ()) -> datetime | None:
        """The earliest of: a question deadline, a daily window close, a scheduled daily post, and a due
        or lease-expired outbox entry of `routes` (the "platform:kind" this process delivers) and of
        `shards` (an entry only another shard's process delivers must not wake this one in a loop)."""
        now = self.clock.now()
        candidates: list[float] = []
        async with self._tx() as tx:
            for value in (await tx.next_deadline(), await tx.next_daily_event(),
                          await tx.next_outbox_event(routes, shards)):
                if value is not None:
                    candidates.append(value)
            for row in await tx.daily_channels(None, None):
                tz, at = zone(row.timezone), parse_hhmm(row.post_time)
                if row.enabled and tz and at:
                    candidates.append(next_slot(now, at, tz).timestamp())
        return datetime.fromtimestamp(min(candidates), UTC) if candidates else None

