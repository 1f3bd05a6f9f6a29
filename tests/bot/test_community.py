"""Teams, leaderboards, daily posts, streaks and review, with a FakeClock and a real SQLite file."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot import errors
from bot.commands import handle_text
from bot.engine import QuizEngine
from bot.replies import DailyPost, Feedback, Leaderboard, Player, QuestionCard, Rejected, Stats, TeamList
from bot.scheduler import Scheduler
from tests.fakes.bank import correct_letter, wrong_letter

T = "T1"


def member(n: int, tenant: str = T) -> Player:
    return Player("slack", tenant, f"U{n:03d}", f"User {n}")


async def score(engine, bank, player, right: int, wrong: int = 0, prefix: str = ""):
    """Play a test: `right` correct answers first, then `wrong` wrong ones, then quit."""
    replies = await engine.start(player, "test")
    card = replies[-1]
    for i in range(right + wrong):
        letter = correct_letter(bank, card) if i < right else wrong_letter(bank, card)
        replies = await engine.answer(player, card.session_id, card.question_id, letter, f"{prefix}{player.user}{i}")
        nxt = [r for r in replies if isinstance(r, QuestionCard)]
        if not nxt:
            break
        card = nxt[0]
    await engine.quit(player)


# -- teams ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "Team names need 3 to 32 characters."),
        ("x" * 33, "Team names need 3 to 32 characters."),
        ("@everyone", "Team names may use letters, digits, spaces, '-', '_' and '.' only."),
        ("<!channel>", "Team names may use letters, digits, spaces, '-', '_' and '.' only."),
        ("zero\u200bwidth", "Team names may use letters, digits, spaces, '-', '_' and '.' only."),
        ("rtl\u202eeman", "Team names may use letters, digits, spaces, '-', '_' and '.' only."),
        ("-dash first", "Team names must start with a letter or a digit."),
    ],
)
async def test_team_name_rules(engine, name, message):
    [reply] = await handle_text(engine, member(1), f"team create {name}")
    assert reply == Rejected(message, "BadRequest")


async def test_team_lifecycle(engine, store):
    a, b = member(1), member(2)
    [created] = await handle_text(engine, a, "team create Data  Plumbers")
    assert created.message.startswith("Team 'Data Plumbers' created")
    [dup] = await handle_text(engine, b, "team create data plumbers")
    assert dup.message == "A team called 'data plumbers' already exists here (names ignore case)."
    [joined] = await handle_text(engine, b, "team join DATA PLUMBERS")
    assert joined.message == "You joined team 'Data Plumbers'."
    [again] = await handle_text(engine, a, "team create Other")
    assert again.message == "You are already in team 'Data Plumbers'. Leave it first with `team leave`."
    [missing] = await handle_text(engine, a, "team join Nobody")
    assert missing.message == "There is no team called 'Nobody' here. See `team list`."
    [listing] = await handle_text(engine, a, "team list")
    assert isinstance(listing, TeamList) and listing.mine == "Data Plumbers"
    assert [(t.name, t.members) for t in listing.teams] == [("Data Plumbers", 2)]
    # teams live inside one workspace
    [elsewhere] = await handle_text(engine, member(3, "T2"), "team join Data Plumbers")
    assert isinstance(elsewhere, Rejected)
    await handle_text(engine, a, "team leave")
    await handle_text(engine, b, "team leave")
    [empty] = await handle_text(engine, a, "team list")
    assert empty.teams == ()  # an empty team is removed and its name is free again
    [not_in] = await handle_text(engine, a, "team leave")
    assert not_in.message == "You are not in a team."


# -- leaderboards --------------------------------------------------------------------------------

async def test_leaderboard_order_ties_and_own_rank(engine, bank, clock):
    players = [member(i) for i in range(14)]
    # player i scores i+1 correct easy/medium answers; the first three tie (1 easy each) in join order
    for i, p in enumerate(players):
        await score(engine, bank, p, right=1 if i < 3 else min(i, 9))
        clock.advance(1)
    [board] = await engine.leaderboard(players[0], "players", "all")
    assert isinstance(board, Leaderboard) and len(board.entries) == 10
    points = [e.points for e in board.entries]
    assert points == sorted(points, reverse=True)
    # ties: equal points rank by who reached them first
    tied = [e for e in (await engine.leaderboard(players[0], "players", "all", limit=100))[0].entries
            if e.points == 10]
    assert [e.name for e in tied] == ["User 0", "User 1", "User 2"]
    assert board.me is not None and board.me.rank == 12 and board.me.is_me
    assert "← you" in board.text()


async def test_leaderboard_periods_follow_calendar_weeks(engine, bank, clock):
    p = member(1)
    clock.set(datetime(2026, 3, 1, 12, tzinfo=UTC))  # a Sunday
    await score(engine, bank, p, right=1)
    clock.set(datetime(2026, 3, 2, 12, tzinfo=UTC))  # Monday: a new week, same month
    [week] = await engine.leaderboard(p, "players", "week")
    [month] = await engine.leaderboard(p, "players", "month")
    assert week.entries == () and month.entries[0].points == 10
    assert week.period_label == "week of 2026-03-02" and month.period_label == "March 2026"


async def test_team_leaderboard_total_and_per_member(engine, bank):
    a1, a2, b1 = member(1), member(2), member(3)
    await handle_text(engine, a1, "team create Alpha")
    await handle_text(engine, a2, "team join Alpha")
    await handle_text(engine, b1, "team create Beta")
    await score(engine, bank, a1, right=3)  # 10+10+10 (easy)
    await score(engine, bank, a2, right=1)
    await score(engine, bank, b1, right=3)
    [total] = await engine.leaderboard(a1, "teams", "all")
    assert [(e.name, e.points) for e in total.entries] == [("Alpha", 40), ("Beta", 30)]
    [avg] = await engine.leaderboard(a1, "teams", "all", per_member=True)
    assert [e.name for e in avg.entries] == ["Beta", "Alpha"] and avg.me.name == "Alpha"


async def test_leaderboard_bad_options(engine):
    [r] = await handle_text(engine, member(1), "leaderboard galaxy")
    assert r.message.startswith("Unknown leaderboard option 'galaxy'.")


# -- daily posts ---------------------------------------------------------------------------------

class RecordingPoster:
    def __init__(self, existing: dict[str, str] | None = None, fail: bool = False) -> None:
        self.posts: list[DailyPost] = []
        self.reveals = []
        self.existing = existing if existing is not None else {}
        self.fail = fail

    async def post(self, post):
        if self.fail:
            raise RuntimeError("platform down")
        self.posts.append(post)
        self.existing[post.post_id] = f"msg-{len(self.posts)}"
        return self.existing[post.post_id]

    async def find(self, post):
        return self.existing.get(post.post_id)

    async def reveal(self, reveal):
        self.reveals.append(reveal)


async def set_daily(engine, at="09:00", tz="Europe/Berlin", channel="<#C1|quiz>"):
    admin = member(99)
    [status] = await handle_text(engine, admin, f"daily set {channel} {at} {tz}", is_admin=True)
    return status


async def test_daily_set_validation(engine):
    admin = member(99)
    [bad_tz] = await handle_text(engine, admin, "daily set #quiz 09:00 Mars/Base", is_admin=True)
    assert bad_tz.message == "Unknown time zone 'Mars/Base'. Use an IANA name like Europe/Berlin."
    [bad_time] = await handle_text(engine, admin, "daily set #quiz 25:00 UTC", is_admin=True)
    assert bad_time.message == "'25:00' is not a time: use 24-hour HH:MM, like 09:00."
    [not_admin] = await handle_text(engine, admin, "daily set #quiz 09:00 UTC")
    assert not_admin.message == "Only workspace or server admins can change the daily question."
    [usage] = await handle_text(engine, admin, "daily set #quiz", is_admin=True)
    assert usage.message.startswith("Usage: daily set #channel HH:MM Area/City")


async def test_daily_posts_once_and_reveals(engine, bank, clock):
    clock.set(datetime(2026, 6, 1, 6, 0, tzinfo=UTC))  # 08:00 in Berlin (CEST)
    status = await set_daily(engine)
    assert status.channels[0].next_post == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster()
    scheduler.register_daily("slack", poster)
    await scheduler.tick()
    # before 09:00 local the latest slot is yesterday's: that one is still open, so it is caught up
    assert [p.local_date for p in poster.posts] == ["2026-05-31"]
    clock.set(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    await scheduler.tick()
    await scheduler.tick()
    assert [p.local_date for p in poster.posts] == ["2026-05-31", "2026-06-01"]
    assert [r.local_date for r in poster.reveals] == ["2026-05-31"]  # the next post closes the window
    today = poster.posts[-1]
    # members answer once; feedback is private; points count
    a, b = member(1), member(2)
    right = next(c.letter for c in today.choices if c.text == bank.question(today.question_id).answer_text)
    wrong = next(c.letter for c in today.choices if c.letter != right)
    [fa] = await engine.daily_answer(a, today.post_id, today.question_id, right, "ev-a")
    assert isinstance(fa, Feedback) and fa.correct and fa.private and fa.points > 0
    assert await engine.daily_answer(a, today.post_id, today.question_id, right, "ev-a") == [fa]  # redelivery
    with pytest.raises(errors.NoAttemptsLeft):
        await engine.daily_answer(a, today.post_id, today.question_id, wrong, "ev-a2")
    await engine.daily_answer(b, today.post_id, today.question_id, wrong, "ev-b")
    [board] = await engine.leaderboard(a, "players", "all")
    assert board.entries[0].name == "User 1"
    clock.set(datetime(2026, 6, 2, 7, 0, tzinfo=UTC))
    await scheduler.tick()
    reveal = next(r for r in poster.reveals if r.post_id == today.post_id)
    assert (reveal.answered, reveal.correct, reveal.answer_letter) == (2, 1, right)
    assert reveal.message_ref == "msg-2"
    with pytest.raises(errors.QuestionClosed):
        await engine.daily_answer(member(3), today.post_id, today.question_id, right, "ev-c")


async def test_daily_exactly_once_across_restart_and_two_engines(new_store, bank, clock):
    stores = [new_store(), new_store()]
    for s in stores:
        await s.open()
    try:
        engines = [QuizEngine(s, bank, clock, rng=random.Random(i)) for i, s in enumerate(stores)]
        clock.set(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
        await set_daily(engines[0])
        shared: dict[str, str] = {}
        posters = [RecordingPoster(shared), RecordingPoster(shared)]
        schedulers = [Scheduler(e, clock) for e in engines]
        for sch, poster in zip(schedulers, posters, strict=True):
            sch.register_daily("slack", poster)
        await asyncio.gather(*(s.tick() for s in schedulers))
        await asyncio.gather(*(s.tick() for s in schedulers))
        assert len(posters[0].posts) + len(posters[1].posts) == 1
        # a crash mid-post: the claim is taken but the process dies before recording the message
        clock.set(datetime(2026, 6, 2, 7, 0, tzinfo=UTC))
        crashed = RecordingPoster(shared)
        crashing = Scheduler(engines[0], clock)

        class DiesAfterSending(RecordingPoster):
            async def post(self, post):
                await crashed.post(post)  # the message went out...
                raise RuntimeError("killed before recording it")  # ...but the bot never learnt the ref

        crashing.register_daily("slack", DiesAfterSending(shared))
        await crashing.tick()
        assert len(crashed.posts) == 1
        # restart: a new engine on the same file; after the lease expires it finds the message, no repost
        restarted_store = new_store()
        await restarted_store.open()
        stores.append(restarted_store)
        restarted = Scheduler(QuizEngine(restarted_store, bank, clock), clock)
        fresh = RecordingPoster(shared)
        restarted.register_daily("slack", fresh)
        await restarted.tick()
        clock.advance(61)
        await restarted.tick()
        assert fresh.posts == []
        async with restarted_store.transaction() as tx:
            rows = await tx._all("SELECT local_date, status, message_ref FROM daily_posts ORDER BY local_date")
        assert [(d, s) for d, s, _ in rows] == [("2026-06-01", "closed"), ("2026-06-02", "posted")]
        assert rows[1][2] == shared[crashed.posts[0].post_id]
    finally:
        for s in stores:
            await s.close()


async def test_failed_post_is_retried_after_the_lease(engine, clock):
    clock.set(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    await set_daily(engine)
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster(fail=True)
    scheduler.register_daily("slack", poster)
    await scheduler.tick()
    poster.fail = False
    await scheduler.tick()
    assert poster.posts == []  # still within the lease of the failed attempt
    clock.advance(61)
    await scheduler.tick()
    assert len(poster.posts) == 1 and poster.posts[0].reconcile


async def test_daily_now_and_status(engine, clock):
    clock.set(datetime(2026, 6, 1, 5, 0, tzinfo=UTC))  # 07:00 Berlin, before the 09:00 slot
    await set_daily(engine)
    admin = member(99)
    [queued] = await handle_text(engine, admin, "daily now", is_admin=True)
    assert queued.message == "Posting today's question in <#C1> now."
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster()
    scheduler.register_daily("slack", poster)
    await scheduler.tick()
    assert [p.local_date for p in poster.posts] == ["2026-06-01"]
    [again] = await handle_text(engine, admin, "daily now", is_admin=True)
    assert again.message == "Today's question is already posted in <#C1>; one per day."
    clock.set(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))  # the 09:00 slot: today's post already exists
    await scheduler.tick()
    assert len(poster.posts) == 1
    [off] = await handle_text(engine, admin, "daily off", is_admin=True)
    assert off.channels[0].enabled is False and "off" in off.text()


async def test_missed_post_is_caught_up_while_the_window_is_open(engine, clock):
    clock.set(datetime(2026, 6, 1, 6, 0, tzinfo=UTC))
    await set_daily(engine, at="09:00", tz="UTC")
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster()
    scheduler.register_daily("slack", poster)
    clock.set(datetime(2026, 6, 1, 15, 30, tzinfo=UTC))  # the bot was down at 09:00
    await scheduler.tick()
    assert [p.local_date for p in poster.posts] == ["2026-06-01"]
    assert poster.posts[0].closes_at == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    clock.set(datetime(2026, 6, 4, 10, 0, tzinfo=UTC))  # down for days: only today's is posted
    await scheduler.tick()
    assert [p.local_date for p in poster.posts] == ["2026-06-01", "2026-06-04"]


@pytest.mark.parametrize("switch", [datetime(2026, 3, 29), datetime(2026, 10, 25)])
async def test_daily_keeps_local_time_across_dst(engine, clock, switch):
    berlin = ZoneInfo("Europe/Berlin")
    clock.set(datetime(switch.year, switch.month, switch.day - 2, 0, 0, tzinfo=UTC))
    await set_daily(engine)
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster()
    scheduler.register_daily("slack", poster)
    for _ in range(5):
        clock.set(await engine.next_wakeup())
        await scheduler.tick()
    # every post went out at 09:00 Berlin time, on both sides of the switch
    posted_at = await _posted_times(engine)
    assert [t.astimezone(berlin).strftime("%H:%M") for t in posted_at] == ["09:00"] * len(posted_at)
    assert len(posted_at) >= 3


async def _posted_times(engine):
    async with engine.store.transaction() as tx:
        rows = await tx._all("SELECT posted_at FROM daily_posts WHERE posted_at IS NOT NULL ORDER BY posted_at")
    return [datetime.fromtimestamp(r[0], UTC) for r in rows]


async def test_no_repeated_question_until_the_bank_is_exhausted(engine, bank, clock):
    clock.set(datetime(2026, 1, 1, 9, 0, tzinfo=UTC))
    await set_daily(engine, tz="UTC")
    scheduler = Scheduler(engine, clock)
    poster = RecordingPoster()
    scheduler.register_daily("slack", poster)
    n = len(bank.questions)
    for day in range(n + 3):
        clock.set(datetime(2026, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=day))
        await scheduler.tick()
    ids = [p.question_id for p in poster.posts]
    assert len(ids) == n + 3
    assert len(set(ids[:n])) == n  # the whole bank before any repeat
    assert len(set(ids[n:])) == 3


# -- streaks and review --------------------------------------------------------------------------

async def test_streak_counts_local_days(engine, bank, clock):
    p = Player("slack", "T9", "U1", "Streaker")
    await handle_text(engine, member(99, "T9"), "admin timezone America/New_York", is_admin=True)

    async def finish_challenge():
        replies = await engine.start(p, "challenge")
        card = replies[-1]
        for i in range(5):
            replies = await engine.answer(p, card.session_id, card.question_id, correct_letter(bank, card),
                                          f"s{clock.now().timestamp()}{i}")
            if i < 4:
                card = replies[-1]

    clock.set(datetime(2026, 6, 1, 3, 0, tzinfo=UTC))  # May 31, 23:00 in New York
    await finish_challenge()
    clock.set(datetime(2026, 6, 1, 5, 0, tzinfo=UTC))  # June 1, 01:00 in New York: a new local day
    await finish_challenge()
    [stats] = await engine.stats(p)
    assert isinstance(stats, Stats) and stats.streak == 2
    clock.set(datetime(2026, 6, 2, 23, 0, tzinfo=UTC))  # June 2 local, no activity yet: still 2
    assert (await engine.stats(p))[0].streak == 2
    clock.set(datetime(2026, 6, 4, 5, 0, tzinfo=UTC))  # a day missed
    assert (await engine.stats(p))[0].streak == 0


async def test_review_schedule(engine, bank, clock):
    p = member(1)
    replies = await engine.start(p, "challenge")
    card = replies[-1]
    missed = card.question_id
    first = wrong_letter(bank, card)
    await engine.answer(p, card.session_id, card.question_id, first, "r1")
    await engine.answer(p, card.session_id, card.question_id, wrong_letter(bank, card, but=first), "r2")
    await engine.quit(p)

    async def review_once(right: bool, key: str):
        replies = await engine.start(p, "review")
        card = replies[-1]
        assert card.question_id == missed and card.mode == "review" and card.deadline is None
        letter = correct_letter(bank, card) if right else wrong_letter(bank, card)
        return await engine.answer(p, card.session_id, card.question_id, letter, key)

    await review_once(True, "v1")  # box 1 -> 2, due in 1 day
    [nothing] = await handle_text(engine, p, "review")
    assert nothing.message.startswith("Nothing due yet: 1 question in review, the next one on ")
    clock.advance(days=1)
    await review_once(False, "v2")  # wrong: back to box 1, due tomorrow
    clock.advance(days=1)
    for key, wait in (("v3", 1), ("v4", 3), ("v5", 7)):
        await review_once(True, key)
        clock.advance(days=wait)
    await review_once(True, "v6")  # right in box 4: retired
    [done] = await handle_text(engine, p, "review")
    assert done.message == "Nothing to review: questions you miss come back here on a spaced schedule."


async def test_stats_show_team_rank_and_streak(engine, bank):
    p = member(1)
    await handle_text(engine, p, "team create Owls")
    await score(engine, bank, p, right=2)
    [stats] = await engine.stats(p)
    assert (stats.team, stats.rank) == ("Owls", 1)
    assert "Team: Owls" in stats.text() and "Rank: #1" in stats.text()
