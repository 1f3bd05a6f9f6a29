"""What the engine returns: platform-neutral, frozen replies.

Adapters render each type richly (Block Kit, embeds, the terminal); every reply also has `text()`,
a plain-text rendering an adapter can fall back on. `private` says whether only the player should
see it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

BADGE_MASTERY = "Technical Debt Mastery"


@dataclass(frozen=True)
class Player:
    """Who is playing: a user inside a tenant (Slack team, Discord guild, or the console)."""

    platform: str
    tenant: str
    user: str
    display_name: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.platform, self.tenant, self.user)


@dataclass(frozen=True)
class Reply(ABC):
    private = True

    @abstractmethod
    def text(self) -> str:
        """A plain-text rendering every adapter can fall back on."""


@dataclass(frozen=True)
class Choice:
    letter: str
    text: str


MODE_TITLES = {
    "challenge": "Mastery challenge",
    "practice": "Practice",
    "test": "Test",
    "review": "Review",
    "daily": "Daily question",
}


@dataclass(frozen=True)
class QuestionCard(Reply):
    session_id: str
    question_id: str
    mode: str
    position: int  # 1-based
    total: int
    topic: str
    difficulty: str
    type: str
    prompt: str
    code: str | None
    choices: tuple[Choice, ...]
    deadline: datetime | None
    time_limit: int | None
    attempts_left: int
    hint_used: bool
    hint_costs_points: bool
    # letters (as shown) already tried on this question: a card shown again keeps them unclickable
    tried: tuple[str, ...] = ()

    @property
    def progress(self) -> str:
        return f"{self.position}/{self.total}"

    def text(self) -> str:
        lines = [f"{MODE_TITLES.get(self.mode, self.mode)} {self.progress} · {self.topic} · {self.difficulty}",
                 self.prompt]
        if self.code:
            lines.append(self.code.rstrip())
        lines += [f"{c.letter}) {c.text}" for c in self.choices]
        if self.tried:
            lines.append(f"Already tried: {', '.join(self.tried)}.")
        if self.deadline is not None:
            lines.append(f"Answer by {self.deadline:%H:%M:%S} UTC ({self.time_limit} s).")
        return "\n".join(lines)


@dataclass(frozen=True)
class SessionStarted(Reply):
    session_id: str
    mode: str
    total: int
    title: str

    def text(self) -> str:
        return f"{self.title}: {self.total} question{'s' if self.total != 1 else ''}."


@dataclass(frozen=True)
class ActiveSession(Reply):
    """Start was asked while a session is open: offer to carry on with it (or quit)."""

    session_id: str
    mode: str
    position: int
    total: int
    requested_mode: str

    def text(self) -> str:
        return (f"You already have a {MODE_TITLES.get(self.mode, self.mode).lower()} open "
                f"({self.position}/{self.total}). Here is your current question; use `quit` to end it "
                f"and start a new {self.requested_mode}.")


@dataclass(frozen=True)
class WorkedSolution:
    steps: tuple[str, ...]
    quick_check: str
    mistake: str | None  # what the learner's wrong pick usually means


@dataclass(frozen=True)
class Feedback(Reply):
    session_id: str
    question_id: str
    chosen: str  # the letter the player saw
    correct: bool
    points: int
    attempts_left: int
    final: bool  # no more attempts on this question
    answer_letter: str | None  # revealed only when final
    answer_text: str | None
    explanation: str | None
    solution: WorkedSolution | None = None

    def text(self) -> str:
        if self.correct:
            head = f"Correct! +{self.points} points." if self.points else "Correct!"  # practice scores nothing
        elif not self.final:
            head = (f"Not quite: {self.chosen} is wrong. {self.attempts_left} attempt"
                    f"{'s' if self.attempts_left != 1 else ''} left.")
        else:
            head = f"Wrong: the answer is {self.answer_letter}) {self.answer_text}"
        parts = [head]
        if self.explanation:
            parts.append(self.explanation)
        if self.solution:
            parts.append("Worked solution:")
            parts += [f"  {i}. {s}" for i, s in enumerate(self.solution.steps, 1)]
            parts.append(f"Quick check: {self.solution.quick_check}")
            if self.solution.mistake:
                parts.append(f"About your pick: {self.solution.mistake}")
        return "\n".join(parts)


@dataclass(frozen=True)
class Hint(Reply):
    session_id: str
    question_id: str
    hint: str
    costs_points: bool

    def text(self) -> str:
        suffix = " (a hint lowers this question's points by 25%)" if self.costs_points else ""
        return f"Hint: {self.hint}{suffix}"


@dataclass(frozen=True)
class TimeUp(Reply):
    session_id: str
    question_id: str
    answer_letter: str
    answer_text: str
    explanation: str

    def text(self) -> str:
        return f"Time's up! The answer was {self.answer_letter}) {self.answer_text}\n{self.explanation}"


@dataclass(frozen=True)
class Skipped(Reply):
    session_id: str
    question_id: str
    answer_letter: str
    answer_text: str
    explanation: str

    def text(self) -> str:
        return f"Skipped. The answer was {self.answer_letter}) {self.answer_text}\n{self.explanation}"


@dataclass(frozen=True)
class ItemResult:
    position: int
    question_id: str
    topic: str
    difficulty: str
    outcome: str  # correct | wrong | timeout | skipped | quit (open when the quiz was quit) | unanswered
    points: int


@dataclass(frozen=True)
class Breakdown:
    label: str
    correct: int
    total: int


@dataclass(frozen=True)
class Summary(Reply):
    session_id: str
    mode: str
    status: str  # finished | abandoned
    correct: int
    total: int
    points: int
    items: tuple[ItemResult, ...]
    by_topic: tuple[Breakdown, ...] = ()
    by_difficulty: tuple[Breakdown, ...] = ()

    def text(self) -> str:
        title = MODE_TITLES.get(self.mode, self.mode)
        verb = "finished" if self.status == "finished" else "ended early"
        lines = [f"{title} {verb}: {self.correct}/{self.total} correct, {self.points} points."]
        for it in self.items:
            lines.append(f"  {it.position}. {it.question_id} ({it.topic}, {it.difficulty}): {it.outcome}"
                         f"{f' +{it.points}' if it.points else ''}")
        if self.by_topic:
            lines.append("By topic: " + ", ".join(f"{b.label} {b.correct}/{b.total}" for b in self.by_topic))
        if self.by_difficulty:
            lines.append("By difficulty: " + ", ".join(f"{b.label} {b.correct}/{b.total}"
                                                       for b in self.by_difficulty))
        return "\n".join(lines)


@dataclass(frozen=True)
class BadgeAwarded(Reply):
    private = False
    player: Player
    badge: str
    session_id: str

    def text(self) -> str:
        return f"{self.player.display_name or self.player.user} earned the \"{self.badge}\" badge: 5/5!"


@dataclass(frozen=True)
class Notice(Reply):
    message: str

    def text(self) -> str:
        return self.message


@dataclass(frozen=True)
class Rejected(Reply):
    """An action the engine refused (a QuizError): shown privately, nothing was written."""

    message: str
    reason: str = "error"

    def text(self) -> str:
        return self.message


@dataclass(frozen=True)
class HelpText(Reply):
    commands: tuple[tuple[str, str], ...]
    intro: str = ""

    def text(self) -> str:
        width = max(len(u) for u, _ in self.commands)
        lines = [self.intro] if self.intro else []
        lines += [f"  {u.ljust(width)}  {d}" for u, d in self.commands]
        return "\n".join(lines)


@dataclass(frozen=True)
class TopicInfo:
    id: str
    title: str
    questions: int
    practice: int


@dataclass(frozen=True)
class TopicList(Reply):
    topics: tuple[TopicInfo, ...]

    def text(self) -> str:
        return "Topics:\n" + "\n".join(
            f"  {t.id}: {t.title} ({t.practice} practice problems)" for t in self.topics)


@dataclass(frozen=True)
class ConceptCard(Reply):
    topic: str
    title: str
    what: str
    shows_up: tuple[str, ...]
    pay_down: tuple[str, ...]
    sources: tuple[str, ...]
    practice_count: int

    def text(self) -> str:
        lines = [self.title, self.what, "How it shows up:"]
        lines += [f"  - {s}" for s in self.shows_up]
        lines.append("How to pay it down:")
        lines += [f"  - {s}" for s in self.pay_down]
        lines.append("Sources: " + "; ".join(self.sources))
        lines.append(f"{self.practice_count} practice problems: `practice {self.topic}`")
        return "\n".join(lines)


@dataclass(frozen=True)
class Stats(Reply):
    player: Player
    points: int
    answered: int
    correct: int
    badges: tuple[str, ...]
    by_topic: tuple[Breakdown, ...]
    challenges_played: int
    streak: int = 0
    team: str | None = None
    rank: int | None = None

    @property
    def accuracy(self) -> float:
        """Questions right at the first attempt / questions answered (a time-out is answered; a skip is
        not). A second-attempt save earns points but not accuracy; the by-topic figures count the same way."""
        return self.correct / self.answered if self.answered else 0.0

    def text(self) -> str:
        lines = [f"Points: {self.points} · answered {self.answered} · accuracy {self.accuracy:.0%} "
                 "(right at the first attempt)",
                 f"Badges: {', '.join(self.badges) if self.badges else 'none yet'}",
                 f"Challenges played: {self.challenges_played}"]
        if self.streak:
            lines.append(f"Streak: {self.streak} day{'s' if self.streak != 1 else ''}")
        if self.team:
            lines.append(f"Team: {self.team}")
        if self.rank:
            lines.append(f"Rank: #{self.rank}")
        if self.by_topic:
            lines.append("By topic: " + ", ".join(f"{b.label} {b.correct}/{b.total}" for b in self.by_topic))
        return "\n".join(lines)


@dataclass(frozen=True)
class PendingGrant:
    """A badge whose platform side (a Discord role, a Slack user group) is not granted yet."""

    player: Player
    badge: str
    reason: str | None
    attempts: int
    since: datetime


@dataclass(frozen=True)
class DeliveryProblem:
    """Why messages to a channel, a role/user group or the whole workspace are not getting through."""

    target: str  # a channel id, "badge:<name>" for a badge's role or user group, "" for the whole tenant
    state: str  # failing (still tried) | paused (waits for the fix)
    reason: str  # stable, listed in the README's Troubleshooting
    detail: str
    fix: str | None
    since: datetime

    def line(self) -> str:
        head = "Paused" if self.state == "paused" else "Failing"
        return f"{head} since {self.since:%Y-%m-%d %H:%M} UTC: {self.detail} ({self.reason})" + \
            (f". Fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class ScheduleHealth:
    """One daily-question schedule as the admin status shows it: its settings and its delivery problem."""

    channel: str
    post_time: str
    timezone: str
    enabled: bool
    problem: DeliveryProblem | None = None


@dataclass(frozen=True)
class AdminStatus(Reply):
    platform: str
    tenant: str
    celebrate: bool
    pending: tuple[PendingGrant, ...]
    schedules: tuple[ScheduleHealth, ...] = ()
    problems: tuple[DeliveryProblem, ...] = ()  # the workspace's own and those of badge roles/user groups

    def text(self) -> str:
        lines = [f"Badge celebrations: {'on' if self.celebrate else 'off'}"]
        for p in self.problems:
            where = "Whole workspace/server" if not p.target else p.target.removeprefix("badge:") + " grants"
            lines.append(f"{where}: {p.line()}")
        if not self.pending:
            lines.append("No pending badge grants.")
        else:
            lines.append(f"{len(self.pending)} pending badge grant{'s' if len(self.pending) != 1 else ''}:")
            for g in self.pending:
                who = g.player.display_name or g.player.user
                lines.append(f"  - {who}: {g.badge} ({g.attempts} attempt{'s' if g.attempts != 1 else ''})"
                             f"{': ' + g.reason if g.reason else ''}")
        for sch in self.schedules:
            state = "off" if not sch.enabled else ("ok" if sch.problem is None else sch.problem.line())
            lines.append(f"Daily question in <#{sch.channel}> at {sch.post_time} {sch.timezone}: {state}")
        return "\n".join(lines)


@dataclass(frozen=True)
class FlaggedQuestion:
    question_id: str
    source: str  # "file:line" in the repository
    players: int
    p: float  # first-attempt share correct
    discrimination: float | None
    reasons: tuple[str, ...]  # each flag with the rule and the numbers that raised it


@dataclass(frozen=True)
class ItemFlags(Reply):
    """`admin items`: the questions this tenant's answers show to be broken, most urgent first."""

    questions: int  # questions answered at least once
    players: int
    total_flagged: int
    min_answers: int
    flagged: tuple[FlaggedQuestion, ...]  # the first few of total_flagged

    @property
    def summary(self) -> str:
        return (f"{self.questions} question{'s' if self.questions != 1 else ''} answered by {self.players} "
                f"player{'s' if self.players != 1 else ''}; {self.total_flagged} flagged (a question needs "
                f"{self.min_answers} answers before any flag).")

    def text(self) -> str:
        lines = [self.summary]
        for f in self.flagged:
            r = "n/a" if f.discrimination is None else f"{f.discrimination:+.2f}"
            lines.append(f"{f.question_id} ({f.source}): p {f.p:.2f}, r {r}, {f.players} players")
            lines += [f"  - {reason}" for reason in f.reasons]
        if self.total_flagged > len(self.flagged):
            lines.append(f"…and {self.total_flagged - len(self.flagged)} more: `mldebt bank report` lists them all.")
        return "\n".join(lines)


@dataclass(frozen=True)
class LeaderEntry:
    rank: int
    name: str
    points: int
    members: int = 0  # teams only
    is_me: bool = False

    @property
    def per_member(self) -> float:
        return self.points / self.members if self.members else float(self.points)


@dataclass(frozen=True)
class Leaderboard(Reply):
    kind: str  # players | teams
    period: str  # week | month | all
    period_label: str
    per_member: bool
    entries: tuple[LeaderEntry, ...]
    me: LeaderEntry | None  # the asking player (or their team), even outside the top 10

    def text(self) -> str:
        by = " (points per member)" if self.per_member else ""
        lines = [f"Leaderboard: {self.kind}, {self.period_label}{by}"]
        if not self.entries:
            lines.append("  No points yet. Be the first: `challenge`.")
        for e in self.entries:
            score = f"{e.per_member:.1f}/member ({e.points})" if self.per_member else f"{e.points}"
            extra = f", {e.members} member{'s' if e.members != 1 else ''}" if self.kind == "teams" else ""
            lines.append(f"  {e.rank}. {e.name}: {score}{extra}{'  ← you' if e.is_me else ''}")
        if self.me is not None and not any(e.is_me for e in self.entries):
            lines.append(f"  …\n  {self.me.rank}. {self.me.name}: {self.me.points}  ← you")
        return "\n".join(lines)


@dataclass(frozen=True)
class TeamInfo:
    name: str
    members: int
    points: int


@dataclass(frozen=True)
class TeamList(Reply):
    teams: tuple[TeamInfo, ...]
    mine: str | None

    def text(self) -> str:
        if not self.teams:
            return "No teams yet. Create one with `team create NAME`."
        lines = ["Teams:"]
        for t in self.teams:
            mark = "  ← yours" if t.name == self.mine else ""
            lines.append(f"  {t.name}: {t.members} member{'s' if t.members != 1 else ''}, {t.points} points{mark}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DailyChannelInfo:
    channel: str
    post_time: str
    timezone: str
    enabled: bool
    next_post: datetime | None
    posting_now: bool = False  # today's question is due and not posted yet: it goes out right away


@dataclass(frozen=True)
class DailyStatus(Reply):
    channels: tuple[DailyChannelInfo, ...]

    def text(self) -> str:
        if not self.channels:
            return "No daily question is scheduled. Admins: `daily set #channel HH:MM Area/City`."
        lines = ["Daily question:"]
        for c in self.channels:
            if c.enabled and c.posting_now:
                state = f"every day at {c.post_time} {c.timezone}; today's question is being posted now"
            elif c.enabled and c.next_post:
                state = f"every day at {c.post_time} {c.timezone}, next {c.next_post:%Y-%m-%d %H:%M} UTC"
            else:
                state = "off"
            lines.append(f"  <#{c.channel}>: {state}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DailyPost(Reply):
    """A daily question to post publicly in a channel, with answer buttons."""

    private = False
    post_id: str
    platform: str
    tenant: str
    channel: str
    local_date: str
    question_id: str
    topic: str
    difficulty: str
    prompt: str
    code: str | None
    choices: tuple[Choice, ...]
    closes_at: datetime
    reconcile: bool = False  # a previous attempt may have posted it: look before posting again

    def text(self) -> str:
        lines = [f"Daily question · {self.local_date} · {self.topic} · {self.difficulty}", self.prompt]
        if self.code:
            lines.append(self.code.rstrip())
        lines += [f"{c.letter}) {c.text}" for c in self.choices]
        lines.append(f"One answer each; the answer is revealed at {self.closes_at:%Y-%m-%d %H:%M} UTC.")
        return "\n".join(lines)


@dataclass(frozen=True)
class DailyReveal(Reply):
    """The window of a daily post closed: edit the post to show the answer and how people did."""

    private = False
    post_id: str
    platform: str
    tenant: str
    channel: str
    message_ref: str | None
    local_date: str
    question_id: str
    prompt: str
    choices: tuple[Choice, ...]
    answer_letter: str
    answer_text: str
    explanation: str
    answered: int
    correct: int

    @property
    def share_correct(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    def text(self) -> str:
        who = (f"{self.correct} of {self.answered} got it right ({self.share_correct:.0%})."
               if self.answered else "Nobody answered this one.")
        return (f"Daily question · {self.local_date} · closed\n{self.prompt}\n"
                f"Answer: {self.answer_letter}) {self.answer_text}\n{self.explanation}\n{who}")
