"""Replies -> Block Kit. Pure functions of the replies (plus the immutable bank for titles).

Every reply type the core has today gets its own layout; a type added to the core later still
shows, through its `text()` (escaped), and a warning is logged so the missing layout gets noticed.
All text that comes from the bank or from users is escaped (`esc`); only the tokens built here
(`<@U…>`, `<!date…>`) are left as markup.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.bank import Bank
from bot.commands import Action
from bot.replies import (
    MODE_TITLES,
    ActiveSession,
    AdminStatus,
    BadgeAwarded,
    ConceptCard,
    DailyPost,
    DailyReveal,
    DailyStatus,
    DeliveryProblem,
    Feedback,
    HelpText,
    Hint,
    ItemFlags,
    Leaderboard,
    Notice,
    QuestionCard,
    Rejected,
    Reply,
    SessionStarted,
    Skipped,
    Stats,
    Summary,
    TeamList,
    TimeUp,
    TopicList,
)

from .mrkdwn import (
    BUTTON_LIMIT,
    FALLBACK_LIMIT,
    SECTION_LIMIT,
    channel,
    clip,
    esc,
    esc_with_channels,
    mention,
    slack_date,
)

log = logging.getLogger(__name__)

Block = dict[str, Any]
MAX_BLOCKS = 50  # Slack refuses messages with more
RANK_ICONS = {1: ":first_place_medal:", 2: ":second_place_medal:", 3: ":third_place_medal:"}
OUTCOME_ICONS = {"correct": ":white_check_mark:", "wrong": ":x:", "timeout": ":alarm_clock:",
                 "skipped": ":fast_forward:", "unanswered": ":heavy_minus_sign:"}
COMMAND = "/mldebt"


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}]}


def button(label: str, action_id: str) -> Block:
    """A button whose id and value are the same encoded action (ids only, never the answer)."""
    return {"type": "button", "action_id": action_id, "value": action_id,
            "text": {"type": "plain_text", "text": clip(label, BUTTON_LIMIT)}}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _problem(p: DeliveryProblem) -> str:
    """A delivery problem in one line: paused/failing since when, what happened, the fix."""
    head = "*paused*" if p.state == "paused" else "failing"
    fix = f" *Fix:* {esc(p.fix)}" if p.fix else ""
    return f"{head} since {slack_date(p.since, '{date_short} {time}')}: {esc(p.detail)} (`{esc(p.reason)}`).{fix}"


class Renderer:
    """Turns engine replies into Slack messages; `bank` supplies topic titles, prompts and hints."""

    def __init__(self, bank: Bank | None = None) -> None:
        self.bank = bank

    # -- helpers that read the bank (display only) ---------------------------------------------

    def _topic(self, topic_id: str) -> str:
        topic = self.bank.topics.get(topic_id) if self.bank else None
        return topic.title if topic else topic_id

    def _prompt_quote(self, question_id: str) -> list[Block]:
        q = self.bank.questions.get(question_id) if self.bank else None
        return [context(f"> {esc(clip(q.prompt, 500))}")] if q else []

    def _hint(self, question_id: str) -> str | None:
        q = self.bank.questions.get(question_id) if self.bank else None
        return q.hint if q else None

    # -- one reply -------------------------------------------------------------------------------

    def blocks(self, reply: Reply) -> list[Block]:
        match reply:
            case QuestionCard():
                return self._card(reply)
            case Feedback():
                return self._feedback(reply)
            case Hint():
                cost = " _(this lowers the question's points by 25%)_" if reply.costs_points else ""
                return [section(f":bulb: *Hint:* {esc(reply.hint)}{cost}")]
            case TimeUp():
                return [*self._prompt_quote(reply.question_id),
                        section(f":alarm_clock: *Time's up!* The answer was *{reply.answer_letter})* "
                                f"{esc(reply.answer_text)}"),
                        section(esc(reply.explanation))]
            case Skipped():
                return [*self._prompt_quote(reply.question_id),
                        section(f":fast_forward: *Skipped.* The answer was *{reply.answer_letter})* "
                                f"{esc(reply.answer_text)}"),
                        section(esc(reply.explanation))]
            case Summary():
                return self._summary(reply)
            case SessionStarted():
                return [section(f":rocket: *{esc(reply.title)}* · {_plural(reply.total, 'question')}")]
            case ActiveSession():
                return [context(f":information_source: {esc(reply.text())}")]
            case BadgeAwarded():
                return [section(f":medal: You earned the *{esc(reply.badge)}* badge!")]
            case Rejected():
                return [section(f":warning: {esc_with_channels(reply.message)}")]
            case HelpText():
                return self._help(reply)
            case Stats():
                return self._stats(reply)
            case TopicList():
                lines = [f"*{esc(t.title)}* (`{esc(t.id)}`): {_plural(t.practice, 'practice problem')}"
                         for t in reply.topics]
                return [section("*Topics*\n" + "\n".join(lines)),
                        context(f"`{COMMAND} learn <topic>` for a concept card, "
                                f"`{COMMAND} practice <topic>` to practise.")]
            case ConceptCard():
                return self._concept(reply)
            case AdminStatus():
                return self._admin(reply)
            case ItemFlags():
                return self._item_flags(reply)
            case Notice():
                return [section(esc_with_channels(reply.message))]
            case Leaderboard():
                return self._leaderboard(reply)
            case TeamList():
                return self._teams(reply)
            case DailyStatus():
                return self._daily_status(reply)
            case DailyPost():
                return self.daily_post(reply)["blocks"]
            case DailyReveal():
                return self.daily_reveal(reply)["blocks"]
            case _:
                log.warning("no Block Kit layout for reply type %s; showing its text()", type(reply).__name__)
                return [section(esc(reply.text()))]

    def _card(self, c: QuestionCard) -> list[Block]:
        title = MODE_TITLES.get(c.mode, c.mode)
        blocks = [context(f"*{esc(title)}* · {c.progress} · {esc(self._topic(c.topic))} · {esc(c.difficulty)}"
                          f" · {esc(c.type.replace('_', ' '))}"),
                  section(esc(c.prompt))]
        if c.code:
            blocks.append(section("```" + esc(c.code.rstrip()) + "```"))
        blocks.append(self._choices(c.choices))
        hint = self._hint(c.question_id) if c.hint_used else None
        if hint:
            blocks.append(context(f":bulb: *Hint:* {esc(hint)}"))
        buttons = [button(ch.letter, Action("a", c.session_id, c.question_id, ch.letter).encode())
                   for ch in c.choices]
        for b in buttons[:len(c.choices)]:  # Block Kit cannot disable a button: mark it; the engine refuses it
            if b["text"]["text"] in c.tried:
                b["style"] = "danger"
        if not c.hint_used:
            buttons.append(button("Hint", Action("h", c.session_id, c.question_id).encode()))
        buttons.append(button("Skip", Action("s", c.session_id, c.question_id).encode()))
        blocks.append({"type": "actions", "elements": buttons})
        status = []
        if c.deadline is not None:
            status.append(f":stopwatch: Answer by {slack_date(c.deadline)} ({c.time_limit} s)")
        else:
            status.append("Untimed")
        status.append(_plural(c.attempts_left, "attempt") + " left")
        if c.tried:
            status.append(f"already tried: {', '.join(c.tried)}")
        if c.hint_costs_points and not c.hint_used:
            status.append("the hint costs 25% of the points")
        blocks.append(context(" · ".join(status)))
        return blocks

    def _feedback(self, f: Feedback) -> list[Block]:
        if f.correct:
            head = ":white_check_mark: *Correct!*" + (f" +{f.points} points." if f.points else "")
        elif not f.final:
            head = (f":x: Not quite: *{f.chosen}* is wrong. {_plural(f.attempts_left, 'attempt')} left.")
        else:
            head = f":x: *Wrong.* The answer is *{f.answer_letter})* {esc(f.answer_text or '')}"
        blocks = [*(self._prompt_quote(f.question_id) if f.final else []), section(head)]
        if f.explanation:
            blocks.append(section(esc(f.explanation)))
        if f.solution:
            lines = ["*Worked solution*"]
            lines += [f"{i}. {esc(step)}" for i, step in enumerate(f.solution.steps, 1)]
            lines.append(f"*Quick check:* {esc(f.solution.quick_check)}")
            if f.solution.mistake:
                lines.append(f"*About your pick:* {esc(f.solution.mistake)}")
            blocks.append(section("\n".join(lines)))
        return blocks

    def _summary(self, s: Summary) -> list[Block]:
        title = MODE_TITLES.get(s.mode, s.mode)
        verb = "finished" if s.status == "finished" else "ended early"
        lines = [f":checkered_flag: *{esc(title)} {verb}:* {s.correct}/{s.total} correct, "
                 f"{_plural(s.points, 'point')}."]
        for it in s.items:
            pts = f" +{it.points}" if it.points else ""
            lines.append(f"{OUTCOME_ICONS.get(it.outcome, '•')} {it.position}. {esc(self._topic(it.topic))} "
                         f"({esc(it.difficulty)}): {esc(it.outcome)}{pts}")
        blocks = [section("\n".join(lines))]
        breakdown = []
        if s.by_topic:
            breakdown.append("*By topic:* " + ", ".join(f"{esc(self._topic(b.label))} {b.correct}/{b.total}"
                                                       for b in s.by_topic))
        if s.by_difficulty:
            breakdown.append("*By difficulty:* " + ", ".join(f"{esc(b.label)} {b.correct}/{b.total}"
                                                            for b in s.by_difficulty))
        if breakdown:
            blocks.append(section("\n".join(breakdown)))
        return blocks

    def _help(self, h: HelpText) -> list[Block]:
        lines = [f"`{COMMAND} {esc(usage)}`: {esc(desc)}" for usage, desc in h.commands]
        blocks = [section(esc(h.intro))] if h.intro else []
        blocks.append(section("\n".join(lines)))
        return blocks

    def _stats(self, s: Stats) -> list[Block]:
        lines = [f"*Points:* {s.points} · *answered:* {s.answered} · *accuracy:* {s.accuracy:.0%}",
                 f"*Badges:* {', '.join(f':medal: {esc(b)}' for b in s.badges) if s.badges else 'none yet'}",
                 f"*Challenges played:* {s.challenges_played}"]
        if s.streak:
            lines.append(f"*Streak:* {_plural(s.streak, 'day')}")
        if s.team:
            lines.append(f"*Team:* {esc(s.team)}")
        if s.rank:
            lines.append(f"*Rank:* #{s.rank}")
        blocks = [section("\n".join(lines))]
        if s.by_topic:
            blocks.append(context("By topic: " + ", ".join(f"{esc(self._topic(b.label))} {b.correct}/{b.total}"
                                                           for b in s.by_topic)))
        return blocks

    def _concept(self, c: ConceptCard) -> list[Block]:
        return [
            section(f"*{esc(c.title)}*\n{esc(c.what)}"),
            section("*How it shows up*\n" + "\n".join(f"• {esc(x)}" for x in c.shows_up)),
            section("*How to pay it down*\n" + "\n".join(f"• {esc(x)}" for x in c.pay_down)),
            context("Sources: " + "; ".join(esc(x) for x in c.sources)),
            context(f"{_plural(c.practice_count, 'practice problem')}: `{COMMAND} practice {esc(c.topic)}`"),
        ]

    def _admin(self, a: AdminStatus) -> list[Block]:
        lines = [f"*Badge celebrations:* {'on' if a.celebrate else 'off'}"]
        if not a.pending:
            lines.append("No pending badge grants.")
        else:
            lines.append(f"*{_plural(len(a.pending), 'pending badge grant')}:*")
            for g in a.pending:
                who = f"{mention(g.player.user)} ({esc(g.player.display_name)})" if g.player.display_name \
                    else mention(g.player.user)
                reason = f": `{esc(g.reason)}`" if g.reason else ""
                lines.append(f"• {who}: {esc(g.badge)}, {_plural(g.attempts, 'attempt')}{reason}")
        blocks = [section("\n".join(lines))]
        for p in a.problems:
            where = "The whole workspace" if not p.target else f"{esc(p.target.removeprefix('badge:'))} grants"
            blocks.append(section(f":warning: *{where}:* {_problem(p)}"))
        if a.schedules:
            rows = []
            for sch in a.schedules:
                state = "off" if not sch.enabled else (":white_check_mark: ok" if sch.problem is None
                                                       else f":warning: {_problem(sch.problem)}")
                rows.append(f"• <#{esc(sch.channel)}> at {esc(sch.post_time)} {esc(sch.timezone)}: {state}")
            blocks.append(section("*Daily question schedules:*\n" + "\n".join(rows)))
        return blocks

    def _item_flags(self, f: ItemFlags) -> list[Block]:
        blocks = [section(f":mag: *Item analysis* · {esc(f.summary)}")]
        for q in f.flagged:
            r = "n/a" if q.discrimination is None else f"{q.discrimination:+.2f}"
            lines = [f"*{esc(q.question_id)}* `{esc(q.source)}` · p {q.p:.2f} · r {r} · {_plural(q.players, 'player')}"]
            lines += [f"• {esc(reason)}" for reason in q.reasons]
            blocks.append(section(clip("\n".join(lines), SECTION_LIMIT)))
        if f.total_flagged > len(f.flagged):
            blocks.append(context(f"…and {f.total_flagged - len(f.flagged)} more: `mldebt bank report` lists them all."))
        return blocks

    def _leaderboard(self, board: Leaderboard) -> list[Block]:
        by = " (points per member)" if board.per_member else ""
        lines = [f"*Leaderboard: {esc(board.kind)}, {esc(board.period_label)}{by}*"]
        if not board.entries:
            lines.append(f"No points yet. Be the first: `{COMMAND} challenge`.")

        def line(e) -> str:
            score = f"{e.per_member:.1f}/member ({e.points})" if board.per_member else f"{e.points}"
            extra = f", {_plural(e.members, 'member')}" if board.kind == "teams" else ""
            name = f"*{esc(e.name)}*" if e.is_me else esc(e.name)
            return f"{RANK_ICONS.get(e.rank, f'{e.rank}.')} {name}: {score}{extra}{'  ← you' if e.is_me else ''}"

        lines += [line(e) for e in board.entries]
        if board.me is not None and not any(e.is_me for e in board.entries):
            lines += ["…", line(board.me)]
        return [section("\n".join(lines))]

    def _teams(self, t: TeamList) -> list[Block]:
        if not t.teams:
            return [section(f"No teams yet. Create one with `{COMMAND} team create NAME`.")]
        lines = ["*Teams*"]
        for team in t.teams:
            mine = "  ← yours" if team.name == t.mine else ""
            lines.append(f"• *{esc(team.name)}*: {_plural(team.members, 'member')}, "
                         f"{_plural(team.points, 'point')}{mine}")
        return [section("\n".join(lines))]

    def _daily_status(self, d: DailyStatus) -> list[Block]:
        if not d.channels:
            return [section("No daily question is scheduled. Admins: "
                            f"`{COMMAND} daily set #channel HH:MM Area/City`.")]
        lines = ["*Daily question*"]
        for c in d.channels:
            if c.enabled and c.next_post is not None:
                when = (f"every day at {esc(c.post_time)} {esc(c.timezone)}, next "
                        f"{slack_date(c.next_post, '{date_short_pretty} {time}', fallback=f'{c.next_post:%Y-%m-%d %H:%M} UTC')}")
            else:
                when = "off"
            lines.append(f"• {channel(c.channel)}: {when}")
        return [section("\n".join(lines))]

    def _choices(self, choices) -> Block:
        return section("\n".join(f"*{ch.letter})* {esc(ch.text)}" for ch in choices))

    def daily_post(self, post: DailyPost) -> dict[str, Any]:
        """The public daily question: everyone in the channel may answer once."""
        closes = slack_date(post.closes_at, "{date_short_pretty} at {time}",
                            fallback=f"{post.closes_at:%Y-%m-%d %H:%M} UTC")
        blocks = [context(f"*Daily question* · {esc(post.local_date)} · {esc(self._topic(post.topic))} · "
                          f"{esc(post.difficulty)}"),
                  section(esc(post.prompt))]
        if post.code:
            blocks.append(section("```" + esc(post.code.rstrip()) + "```"))
        blocks.append(self._choices(post.choices))
        blocks.append({"type": "actions", "elements": [
            button(ch.letter, Action("d", post.post_id, post.question_id, ch.letter).encode())
            for ch in post.choices]})
        blocks.append(context(f"One answer each; your feedback is private. The answer is revealed {closes}."))
        return {"text": clip(esc(f"Daily question: {post.prompt}"), FALLBACK_LIMIT), "blocks": blocks}

    def daily_reveal(self, r: DailyReveal) -> dict[str, Any]:
        """The daily post, edited when its window closes: no buttons, the answer, how people did."""
        who = (f"{r.correct} of {_plural(r.answered, 'answer')} right ({r.share_correct:.0%})."
               if r.answered else "Nobody answered this one.")
        lines = [f"{':white_check_mark:' if ch.letter == r.answer_letter else ':white_small_square:'} "
                 f"*{ch.letter})* {esc(ch.text)}" for ch in r.choices]
        blocks = [context(f"*Daily question* · {esc(r.local_date)} · closed"),
                  section(esc(r.prompt)),
                  section("\n".join(lines)),
                  section(f"*Answer: {r.answer_letter})* {esc(r.answer_text)}\n{esc(r.explanation)}"),
                  context(who)]
        return {"text": clip(esc(f"Daily question, closed: {r.answer_letter}) {r.answer_text}"), FALLBACK_LIMIT),
                "blocks": blocks}

    # -- whole messages --------------------------------------------------------------------------

    def message(self, replies: Sequence[Reply]) -> dict[str, Any]:
        """One Slack message (`text` fallback + `blocks`) holding these replies in order."""
        blocks: list[Block] = []
        for reply in replies:
            if blocks:
                blocks.append({"type": "divider"})
            blocks += self.blocks(reply)
        if len(blocks) > MAX_BLOCKS:
            blocks = blocks[: MAX_BLOCKS - 1] + [context("… (cut: too long for one Slack message)")]
        text = clip(esc("\n".join(r.text() for r in replies)), FALLBACK_LIMIT)
        return {"text": text, "blocks": blocks}

    def celebration(self, badge: BadgeAwarded) -> dict[str, Any]:
        """The public message: the player's mention (an id), never their display name."""
        text = f":tada: {mention(badge.player.user)} earned the *{esc(badge.badge)}* badge: 5/5!"
        return {"text": text, "blocks": [section(text)]}

    def home(self, stats: Stats, help_text: HelpText) -> dict[str, Any]:
        """The App Home tab: the player's stats (badge, streak, team once the core has them) and how to play."""
        blocks: list[Block] = [
            {"type": "header", "text": {"type": "plain_text", "text": "mldebt: technical debt in ML systems"}},
            *self._stats(stats),
            {"type": "divider"},
            section(f"Start with `{COMMAND} challenge`: five timed questions; 5/5 earns the badge."),
            *self._help(HelpText(help_text.commands)),
        ]
        return {"type": "home", "blocks": blocks[:100]}
