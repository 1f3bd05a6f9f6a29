"""Replies -> Discord messages (content, embeds, buttons). Pure: no I/O, no engine, no quiz rules.

A question is one embed (the card) with its buttons; everything that happens to that question
later (a hint, a wrong first try, the result, a time-out) is written into the same embed as fields,
and the buttons are re-drawn from their own custom_ids, so a card can be updated from the message
alone, by a click or by the scheduler long after the interaction that posted it.

User-supplied text (display names, team names) goes through `safe()`; the client also sends every
message with `AllowedMentions.none()`, so nothing here can ping anyone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import discord

from bot.replies import (
    MODE_TITLES,
    ActiveSession,
    AdminStatus,
    BadgeAwarded,
    Choice,
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
from bot.text import clean

from .components import ButtonState, QuestionButtons, question_view

log = logging.getLogger(__name__)

FIELD_MAX, DESCRIPTION_MAX, TITLE_MAX, EMBED_TOTAL_MAX, CONTENT_MAX = 1024, 4096, 256, 6000, 2000
EMBEDS_PER_MESSAGE = 10

BLURPLE, GREEN, RED, GREY, GOLD, BLUE = 0x5865F2, 0x57F287, 0xED4245, 0x95A5A6, 0xF1C40F, 0x3498DB
STATUS = "⏳"  # the card's status line (deadline, attempts); dropped when the question closes
HINT = "💡"
RESULT_MARKS = ("✅", "❌", "⏰", "⏭", "📝", "🔎", "🤔", "\u200b")
OUTCOME_ICONS = {"correct": "✅", "wrong": "❌", "timeout": "⏰", "skipped": "⏭", "unanswered": "▫️"}
ADMIN_FOOTER = ("Server admins: /mldebt-admin status · celebrate · timezone · items · daily · retry-roles")


_MENTION_SYNTAX = re.compile(r"<(@[!&]?|#|/|t:)")


def safe(text: str) -> str:
    """User text shown by the bot: no markdown, no @everyone, no <@id>/<#id> that would render as a mention.

    Control characters are dropped too (the core stores clean names; a Player built from an
    interaction is not). Belt and braces: the client also sends every message with
    AllowedMentions.none().
    """
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(clean(text)))
    return _MENTION_SYNTAX.sub(lambda m: "<\u200b" + m.group(1), text)


_KEPT = re.compile(r"(`[^`\n]*`|<#\d{1,20}>)")  # code spans, and channel links (they never ping)


def safe_echo(message: str) -> str:
    """A core message that may quote user text (a refusal, a notice): escaped like a name, but the
    message's own `code spans` stay code (the core's command text never carries a backtick) and its
    channel links stay links."""
    parts = _KEPT.split(message)
    return "".join(part if i % 2 else safe(part) for i, part in enumerate(parts))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chunks(text: str, limit: int = FIELD_MAX) -> list[str]:
    """Split on line breaks where possible; never return an empty list."""
    out: list[str] = []
    rest = text.strip() or "\u200b"
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        cut = cut if cut > limit // 2 else limit
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    out.append(rest)
    return out


def add_long_field(embed: discord.Embed, name: str, text: str) -> None:
    for i, part in enumerate(chunks(text)):
        embed.add_field(name=clip(name, TITLE_MAX) if i == 0 else "\u200b", value=part, inline=False)


def fit(embed: discord.Embed) -> discord.Embed:
    """Drop trailing fields until the embed fits Discord's 6000-character total."""
    while len(embed) > EMBED_TOTAL_MAX and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    return embed


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------------------------
# the question card


def card_embed(card: QuestionCard) -> discord.Embed:
    lines = _choices_block(card.prompt, card.code, card.choices)
    lines.append("")
    rules = [plural(card.attempts_left, "attempt") + " left"]
    if card.hint_costs_points:
        rules.append("the hint costs 25% of the points")
    if card.deadline is not None:
        when = discord.utils.format_dt(card.deadline, "R")
        lines.append(f"{STATUS} Answer {when} ({card.time_limit} s) · " + " · ".join(rules))
    else:
        lines.append(f"{STATUS} Untimed · " + " · ".join(rules))
    embed = discord.Embed(title=clip(f"{MODE_TITLES.get(card.mode, card.mode)} · {card.progress}", TITLE_MAX),
                          description=clip("\n".join(lines), DESCRIPTION_MAX), colour=BLURPLE)
    embed.set_footer(text=f"{card.topic} · {card.difficulty} · {card.type.replace('_', ' ')}")
    return embed


def card_view(card: QuestionCard) -> discord.ui.View:
    letters = [c.letter for c in card.choices]
    tried = frozenset(card.tried)  # a card shown again: the letters already tried stay red and unclickable
    return question_view(card.session_id, card.question_id, letters, ButtonState(wrong=tried, hint_used=card.hint_used))


def _answer_line(letter: str | None, text: str | None) -> str:
    return f"{letter}) {text}" if letter and text else ""


def result_fields(reply: Reply) -> tuple[str, str, int] | None:
    """Title, body and colour of a result written into a card (or shown on its own)."""
    match reply:
        case Feedback(correct=True):
            points = f" +{reply.points} points" if reply.points else ""  # practice and review score nothing
            return f"✅ Correct!{points}", reply.explanation or "", GREEN
        case Feedback(final=False):
            left = plural(reply.attempts_left, "attempt")
            return f"❌ Not quite: {reply.chosen} is wrong", f"{left} left. Try again.", RED
        case Feedback():
            return (f"❌ Wrong: the answer is {_answer_line(reply.answer_letter, reply.answer_text)}",
                    reply.explanation or "", RED)
        case TimeUp():
            return (f"⏰ Time's up! The answer was {_answer_line(reply.answer_letter, reply.answer_text)}",
                    reply.explanation, GREY)
        case Skipped():
            return (f"⏭ Skipped. The answer was {_answer_line(reply.answer_letter, reply.answer_text)}",
                    reply.explanation, GREY)
    return None


def _solution_fields(embed: discord.Embed, reply: Feedback) -> None:
    if reply.solution is None:
        return
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(reply.solution.steps, 1))
    add_long_field(embed, "📝 Worked solution", steps)
    add_long_field(embed, "🔎 Quick check", reply.solution.quick_check)
    if reply.solution.mistake:
        add_long_field(embed, "🤔 About your pick", reply.solution.mistake)


def apply_to_card(embed: discord.Embed, buttons: QuestionButtons | None,
                  replies: Iterable[Reply]) -> tuple[discord.Embed, discord.ui.View | None]:
    """Write hints and results into an existing card embed and re-draw its buttons.

    Idempotent: applying the same reply twice (a retried click) gives the same message.
    """
    embed = embed.copy()
    state = buttons.state if buttons is not None else ButtonState()
    for reply in replies:
        fields = [(f.name or "", f.value or "") for f in embed.fields]
        if isinstance(reply, Hint):
            cost = " (this lowers the question's points by 25%)" if reply.costs_points else ""
            fields = [(n, v) for n, v in fields if not n.startswith(HINT)]
            embed.clear_fields()
            embed.add_field(name=f"{HINT} Hint", value=clip(reply.hint + cost, FIELD_MAX), inline=False)
            for n, v in fields:
                embed.add_field(name=n, value=v, inline=False)
            state = replace(state, hint_used=True)
            continue
        result = result_fields(reply)
        if result is None:
            continue
        title, body, colour = result
        embed.clear_fields()
        for n, v in fields:
            if not n.startswith(RESULT_MARKS):
                embed.add_field(name=n, value=v, inline=False)
        add_long_field(embed, title, body)
        embed.colour = colour
        if isinstance(reply, Feedback) and not reply.final:
            state = replace(state, wrong=state.wrong | {reply.chosen})
            continue
        if isinstance(reply, Feedback):
            _solution_fields(embed, reply)
            wrong = state.wrong | ({reply.chosen} if not reply.correct else set())
            state = replace(state, wrong=frozenset(wrong), correct=reply.answer_letter, closed=True)
        else:
            assert isinstance(reply, TimeUp | Skipped)
            state = replace(state, correct=reply.answer_letter, closed=True)
        if embed.description:
            kept = [line for line in embed.description.split("\n") if not line.startswith(STATUS)]
            embed.description = "\n".join(kept).rstrip()
    view = buttons.view(state) if buttons is not None else None
    return fit(embed), view


# ---------------------------------------------------------------------------------------------
# everything else


def result_embed(reply: Reply) -> discord.Embed:
    result = result_fields(reply)
    assert result is not None
    title, body, colour = result
    embed = discord.Embed(title=clip(title, TITLE_MAX), description=clip(body, DESCRIPTION_MAX), colour=colour)
    if isinstance(reply, Feedback):
        _solution_fields(embed, reply)
    return fit(embed)


def summary_embed(reply: Summary) -> discord.Embed:
    verb = "finished" if reply.status == "finished" else "ended early"
    title = f"{MODE_TITLES.get(reply.mode, reply.mode)} {verb}: {reply.correct}/{reply.total} correct"
    lines = [f"**{reply.points} points**", ""]
    for it in reply.items:
        pts = f" · +{it.points}" if it.points else ""
        lines.append(f"{OUTCOME_ICONS.get(it.outcome, '▫️')} {it.position}. `{it.question_id}` · {it.topic} · "
                     f"{it.difficulty}{pts}")
    colour = GREEN if reply.total and reply.correct == reply.total else BLUE
    embed = discord.Embed(title=clip(title, TITLE_MAX), description=clip("\n".join(lines), DESCRIPTION_MAX),
                          colour=colour)
    if reply.by_topic:
        add_long_field(embed, "By topic", "\n".join(f"{b.label}: {b.correct}/{b.total}" for b in reply.by_topic))
    if reply.by_difficulty:
        add_long_field(embed, "By difficulty",
                       "\n".join(f"{b.label}: {b.correct}/{b.total}" for b in reply.by_difficulty))
    return fit(embed)


def stats_embed(reply: Stats) -> discord.Embed:
    embed = discord.Embed(title=clip(f"Stats for {safe(reply.player.display_name or 'you')}", TITLE_MAX),
                          colour=BLUE)
    embed.add_field(name="Points", value=str(reply.points))
    embed.add_field(name="Accuracy", value=f"{reply.accuracy:.0%} of {reply.answered}")
    embed.add_field(name="Challenges", value=str(reply.challenges_played))
    embed.add_field(name="Streak", value=plural(reply.streak, "day"))
    embed.add_field(name="Team", value=safe(reply.team) if reply.team else "none")
    embed.add_field(name="Rank", value=f"#{reply.rank}" if reply.rank else "unranked")
    embed.add_field(name="Badges", value=", ".join(reply.badges) if reply.badges else "none yet", inline=False)
    if reply.by_topic:
        add_long_field(embed, "By topic", "\n".join(f"{b.label}: {b.correct}/{b.total}" for b in reply.by_topic))
    return fit(embed)


# the core's usage lines, as typed on Discord where the app command differs
DISCORD_USAGE = {
    "leaderboard [players|teams] [week|month|all] [per-member]": "leaderboard [kind] [period] [per_member]",
    "team create|join NAME, team leave, team list": "team create|join|leave|list",
    "daily status": "daily",
}


def help_embed(reply: HelpText) -> discord.Embed:
    lines = []
    for usage, what in reply.commands:
        usage = DISCORD_USAGE.get(usage, usage)
        lines.append(f"`/mldebt {usage}` · {what}" if what else f"`/mldebt {usage}`")
    description = "\n".join(([reply.intro, ""] if reply.intro else []) + lines)
    embed = discord.Embed(title="mldebt", description=clip(description, DESCRIPTION_MAX), colour=BLURPLE)
    embed.set_footer(text=ADMIN_FOOTER)
    return embed


def topics_embed(reply: TopicList) -> discord.Embed:
    lines = [f"**{t.title}** (`{t.id}`) · {plural(t.practice, 'practice problem')}" for t in reply.topics]
    lines += ["", "`/mldebt learn topic:<id>` for the concept card, `/mldebt practice topic:<id>` to practise."]
    return discord.Embed(title="Topics", description=clip("\n".join(lines), DESCRIPTION_MAX), colour=BLUE)


def concept_embed(reply: ConceptCard) -> discord.Embed:
    embed = discord.Embed(title=clip(reply.title, TITLE_MAX), description=clip(reply.what, DESCRIPTION_MAX),
                          colour=BLUE)
    add_long_field(embed, "How it shows up", "\n".join(f"• {s}" for s in reply.shows_up))
    add_long_field(embed, "How to pay it down", "\n".join(f"• {s}" for s in reply.pay_down))
    add_long_field(embed, "Sources", "\n".join(f"• {s}" for s in reply.sources))
    embed.set_footer(text=f"{plural(reply.practice_count, 'practice problem')}: /mldebt practice "
                          f"topic:{reply.topic}")
    return fit(embed)


def problem_line(p: DeliveryProblem) -> str:
    head = "**paused**" if p.state == "paused" else "failing"
    fix = f" **Fix:** {safe(p.fix)}" if p.fix else ""
    return f"{head} since {discord.utils.format_dt(p.since, 'R')}: {safe(p.detail)} (`{p.reason}`).{fix}"


def admin_embed(reply: AdminStatus) -> discord.Embed:
    embed = discord.Embed(title="mldebt admin status", colour=GOLD if reply.pending else GREEN)
    embed.add_field(name="Badge celebrations", value="on" if reply.celebrate else "off", inline=False)
    if not reply.pending:
        embed.add_field(name="Mastery role grants", value="No pending grants.", inline=False)
    shown = reply.pending[:20]
    for g in shown:
        who = safe(g.player.display_name or g.player.user)
        since = discord.utils.format_dt(g.since, "R")
        reason = safe(g.reason) if g.reason else "not tried yet (the bot may have stopped before trying)"
        value = f"<@{g.player.user}> · {g.badge} · {plural(g.attempts, 'attempt')} · since {since}\n{reason}"
        embed.add_field(name=clip(f"Pending: {who}", TITLE_MAX), value=clip(value, FIELD_MAX), inline=False)
    if len(reply.pending) > len(shown):
        embed.add_field(name="\u200b", value=f"…and {len(reply.pending) - len(shown)} more.", inline=False)
    for p in reply.problems:
        where = "The whole server" if not p.target else f"{p.target.removeprefix('badge:')} grants"
        embed.add_field(name=clip(f"⚠️ {where}", TITLE_MAX), value=clip(problem_line(p), FIELD_MAX), inline=False)
    if reply.schedules:
        rows = [f"<#{s.channel}> at {s.post_time} {s.timezone}: "
                + ("off" if not s.enabled else "ok" if s.problem is None else f"⚠️ {problem_line(s.problem)}")
                for s in reply.schedules]
        embed.add_field(name="Daily question schedules", value=clip("\n".join(rows), FIELD_MAX), inline=False)
    if reply.pending:
        embed.set_footer(text="Fix the cause, then run /mldebt-admin retry-roles. Passing failures are "
                              "retried on their own.")
    return fit(embed)


def item_flags_embed(reply: ItemFlags) -> discord.Embed:
    embed = discord.Embed(title="mldebt item analysis", description=clip(reply.summary, DESCRIPTION_MAX),
                          colour=GOLD if reply.flagged else GREEN)
    for q in reply.flagged[:25]:
        r = "n/a" if q.discrimination is None else f"{q.discrimination:+.2f}"
        value = f"`{q.source}` · p {q.p:.2f} · r {r} · {plural(q.players, 'player')}\n"
        value += "\n".join(f"• {reason}" for reason in q.reasons)
        embed.add_field(name=clip(q.question_id, TITLE_MAX), value=clip(value, FIELD_MAX), inline=False)
    if reply.total_flagged > len(reply.flagged):
        embed.set_footer(text=f"…and {reply.total_flagged - len(reply.flagged)} more: `mldebt bank report` "
                              "lists them all.")
    return fit(embed)


def leaderboard_embed(reply: Leaderboard) -> discord.Embed:
    by = " · points per member" if reply.per_member else ""
    lines = []
    for e in reply.entries:
        score = f"{e.per_member:.1f}/member ({e.points})" if reply.per_member else str(e.points)
        extra = f" · {plural(e.members, 'member')}" if reply.kind == "teams" else ""
        me = " ← you" if e.is_me else ""
        lines.append(f"**{e.rank}.** {safe(e.name)} · {score}{extra}{me}")
    if not lines:
        lines.append("No points yet. Be the first: `/mldebt challenge`.")
    if reply.me is not None and not any(e.is_me for e in reply.entries):
        lines += ["…", f"**{reply.me.rank}.** {safe(reply.me.name)} · {reply.me.points} ← you"]
    return discord.Embed(title=clip(f"Leaderboard: {reply.kind}, {reply.period_label}{by}", TITLE_MAX),
                         description=clip("\n".join(lines), DESCRIPTION_MAX), colour=GOLD)


def teams_embed(reply: TeamList) -> discord.Embed:
    if not reply.teams:
        return discord.Embed(title="Teams", description="No teams yet. Create one with `/mldebt team create`.",
                             colour=BLUE)
    lines = [f"**{safe(t.name)}** · {plural(t.members, 'member')} · {t.points} points"
             f"{' ← yours' if t.name == reply.mine else ''}" for t in reply.teams]
    return discord.Embed(title="Teams", description=clip("\n".join(lines), DESCRIPTION_MAX), colour=BLUE)


def daily_status_embed(reply: DailyStatus) -> discord.Embed:
    if not reply.channels:
        text = "No daily question is scheduled. Admins: `/mldebt-admin daily set`."
        return discord.Embed(title="Daily question", description=text, colour=BLUE)
    lines = []
    for c in reply.channels:
        if c.enabled and c.next_post is not None:
            state = f"every day at {c.post_time} {c.timezone}; next {discord.utils.format_dt(c.next_post, 'R')}"
        else:
            state = "off"
        lines.append(f"<#{c.channel}>: {state}")
    return discord.Embed(title="Daily question", description=clip("\n".join(lines), DESCRIPTION_MAX), colour=BLUE)


def hint_embed(reply: Hint) -> discord.Embed:
    cost = "\n(this lowers the question's points by 25%)" if reply.costs_points else ""
    return discord.Embed(title=f"{HINT} Hint", description=clip(reply.hint + cost, DESCRIPTION_MAX), colour=GOLD)


def badge_note(reply: BadgeAwarded, role: str | None) -> discord.Embed:
    lines = [f"You earned the **{reply.badge}** badge: 5/5!"]
    if role:
        lines.append(f"The **{safe(role)}** role is being added to you; if it cannot be, the server admins see "
                     "why in `/mldebt-admin status`.")
    return discord.Embed(title="🏅 Badge earned", description="\n".join(lines), colour=GOLD)


def celebration(reply: BadgeAwarded, role_mention: str | None) -> str:
    name = safe(reply.player.display_name or "Someone")
    extra = f" and the {role_mention} role" if role_mention else ""
    return clip(f"🏅 **{name}** earned the **{reply.badge}** badge{extra}: 5/5 in the Mastery challenge!",
                CONTENT_MAX)


# ---------------------------------------------------------------------------------------------
# grouping replies into messages


@dataclass
class Outgoing:
    """One Discord message to send."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    view: discord.ui.View | None = None
    private: bool = True
    card: QuestionCard | None = None  # the open question this message shows (its buttons are live)

    @property
    def empty(self) -> bool:
        return not self.content and not self.embeds


def _add_content(out: Outgoing, text: str) -> None:
    out.content = clip(f"{out.content}\n{text}" if out.content else text, CONTENT_MAX)


def embed_for(reply: Reply) -> discord.Embed | None:
    match reply:
        case Summary():
            return summary_embed(reply)
        case Stats():
            return stats_embed(reply)
        case HelpText():
            return help_embed(reply)
        case TopicList():
            return topics_embed(reply)
        case ConceptCard():
            return concept_embed(reply)
        case AdminStatus():
            return admin_embed(reply)
        case ItemFlags():
            return item_flags_embed(reply)
        case Leaderboard():
            return leaderboard_embed(reply)
        case TeamList():
            return teams_embed(reply)
        case DailyStatus():
            return daily_status_embed(reply)
        case Hint():
            return hint_embed(reply)
        case Feedback() | TimeUp() | Skipped():
            return result_embed(reply)
    return None


def compose(replies: Sequence[Reply]) -> list[Outgoing]:
    """Group replies into messages: text and embeds accumulate until a question card closes a message.

    BadgeAwarded is not rendered here (the caller grants the role and celebrates first).
    """
    messages: list[Outgoing] = []
    current = Outgoing()

    def close() -> None:
        nonlocal current
        if not current.empty:
            messages.append(current)
        current = Outgoing()

    for reply in replies:
        if isinstance(reply, BadgeAwarded):
            continue
        if not reply.private:
            close()
            messages.append(Outgoing(content=clip(safe(reply.text()), CONTENT_MAX), private=False))
            log.warning("no Discord renderer for public reply %s; sent its text()", type(reply).__name__)
            continue
        if len(current.embeds) >= EMBEDS_PER_MESSAGE:
            close()
        match reply:
            case QuestionCard():
                current.embeds.append(card_embed(reply))
                current.view, current.card = card_view(reply), reply
                close()
            case SessionStarted():
                _add_content(current, f"**{reply.title}** · {plural(reply.total, 'question')}")
            case ActiveSession():
                _add_content(current, reply.text())
            case Rejected():
                _add_content(current, f"⚠️ {safe_echo(reply.message)}")
            case Notice():
                _add_content(current, safe_echo(reply.message))
            case _:
                embed = embed_for(reply)
                if embed is not None:
                    current.embeds.append(embed)
                else:
                    log.warning("no Discord renderer for %s; sent its text()", type(reply).__name__)
                    _add_content(current, safe(reply.text()))
    close()
    return messages


# ---------------------------------------------------------------------------------------------
# the daily question (a public post in a channel)


def _choices_block(prompt: str, code: str | None, choices: Iterable[Choice]) -> list[str]:
    lines = [prompt]
    if code:
        lines += ["```", code.rstrip().replace("```", "`\u200b``"), "```"]
    lines.append("")
    lines += [f"**{c.letter}** · {c.text}" for c in choices]
    return lines


def daily_embed(post: DailyPost) -> discord.Embed:
    lines = _choices_block(post.prompt, post.code, post.choices)
    lines += ["", f"One answer each; your feedback is private. The answer is revealed "
                  f"{discord.utils.format_dt(post.closes_at, 'R')}."]
    embed = discord.Embed(title=f"📅 Daily question · {post.local_date}",
                          description=clip("\n".join(lines), DESCRIPTION_MAX), colour=BLURPLE)
    embed.set_footer(text=f"{post.topic} · {post.difficulty}")
    return embed


def reveal_embed(reveal: DailyReveal) -> discord.Embed:
    embed = discord.Embed(title=f"📅 Daily question · {reveal.local_date} · closed",
                          description=clip("\n".join(_choices_block(reveal.prompt, None, reveal.choices)),
                                           DESCRIPTION_MAX), colour=GREY)
    add_long_field(embed, f"✅ Answer: {reveal.answer_letter}) {reveal.answer_text}", reveal.explanation)
    who = (f"{reveal.correct} of {plural(reveal.answered, 'answer')} right ({reveal.share_correct:.0%})"
           if reveal.answered else "Nobody answered this one.")
    embed.add_field(name="How the server did", value=who, inline=False)
    return fit(embed)
