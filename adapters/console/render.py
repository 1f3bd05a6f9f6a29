"""Terminal text for each reply, wrapped at word boundaries to the terminal's width.

The replies' own text() is the platform-neutral wording; this adds the terminal's layout (a rule
above each question, indented choices, marks for right and wrong) and turns chat markup that means
nothing in a terminal (`<#channel>`) into plain words. Wrapping keeps list items hanging under
their first word, leaves code blocks alone (a shell command must stay one line to be copied), and
lays the help table out in one column when two do not fit.
"""

from __future__ import annotations

import re
import textwrap

from bot.replies import (
    ActiveSession,
    AdminStatus,
    BadgeAwarded,
    ConceptCard,
    DailyPost,
    DailyReveal,
    DailyStatus,
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

CODE_INDENT = "    "
_CHANNEL = re.compile(r"<#([A-Za-z0-9_.-]+)>")
# the start of a list item whose continuation lines hang under its text
_ITEM = re.compile(r"^(\s*)((?:[A-D]\)|\d+\.|-|[✔✘!⏰📅🏅])\s+)?")
HELP_TWO_COLUMNS_MIN = 28  # narrowest description column worth keeping beside the commands


def plain(text: str) -> str:
    """Chat markup a terminal would print literally: `<#general>` is shown as `#general`."""
    return _CHANNEL.sub(r"#\1", text)


def _choices(choices, tried: tuple[str, ...] = ()) -> list[str]:
    """Choice lines; a letter already tried on this question says so (the engine refuses it again)."""
    return [f"  {c.letter}) {c.text}" + (" (tried)" if c.letter in tried else "") for c in choices]


def _code(code: str | None) -> list[str]:
    if not code:
        return []
    return ["", *(CODE_INDENT + line for line in code.rstrip().splitlines()), ""]


def render(reply: Reply, width: int | None = None) -> str:
    """The terminal text of one reply; wrapped to `width` columns when one is given."""
    match reply:
        case QuestionCard():
            head = f"\n── {reply.progress} · {reply.topic} · {reply.type.replace('_', ' ')} · {reply.difficulty} ──"
            body = [head, f"[{reply.question_id}] {reply.prompt}", *_code(reply.code), *_choices(reply.choices, reply.tried)]
            if reply.deadline is not None:
                body.append(f"Time limit {reply.time_limit} s: answer by {reply.deadline:%H:%M:%S} UTC. "
                            f"Attempts left: {reply.attempts_left}.")
            else:
                body.append(f"Untimed. Attempts left: {reply.attempts_left}.")
            text = "\n".join(body)
        case Feedback():
            text = f"{'✔' if reply.correct else '✘'} {reply.text()}"
        case TimeUp():
            text = f"⏰ {reply.text()}"
        case Summary():
            text = "\n" + reply.text()
        case BadgeAwarded():
            text = f"🏅 Badge earned: {reply.badge}!"
        case Rejected():
            text = f"! {reply.message}"
        case HelpText():
            return _help(reply, width)
        case DailyPost():
            body = [f"\n📅 Daily question · {reply.local_date} · {reply.topic} · {reply.difficulty}", reply.prompt,
                    *_code(reply.code), *_choices(reply.choices),
                    f"One answer each: type a letter while no quiz is open. The answer is revealed at "
                    f"{reply.closes_at:%Y-%m-%d %H:%M} UTC."]
            text = "\n".join(body)
        case DailyReveal():
            text = f"\n📅 {reply.text()}"
        case (Skipped() | SessionStarted() | ActiveSession() | Hint() | Stats() | TopicList() | ConceptCard()
              | Notice() | Leaderboard() | TeamList() | DailyStatus() | AdminStatus() | ItemFlags()):
            text = reply.text()
        case _:
            # an unknown reply type still shows, but loudly, so a missing renderer is noticed
            text = f"[{type(reply).__name__}] {reply.text()}"
    text = plain(text)
    return wrap(text, width) if width else text


def wrap(text: str, width: int) -> str:
    """Wrap every line at word boundaries; code lines (indented four spaces) are left whole."""
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith(CODE_INDENT):
            out.append(line)
            continue
        m = _ITEM.match(line)
        lead, marker = m.group(1), m.group(2) or ""
        hang = " " * (len(lead) + len(marker)) if marker else lead
        if len(hang) > width // 2:
            hang = lead[: width // 4]
        out += textwrap.wrap(line[len(lead):], width=width, initial_indent=lead, subsequent_indent=hang,
                             break_on_hyphens=False) or [""]
    return "\n".join(out)


def _help(reply: HelpText, width: int | None) -> str:
    commands = [(plain(u), plain(d)) for u, d in reply.commands]
    intro = [plain(reply.intro)] if reply.intro else []
    if not width:
        return plain(reply.text())
    col = max(len(u) for u, _ in commands)
    lines = [wrap(i, width) for i in intro]
    if width - (col + 4) >= HELP_TWO_COLUMNS_MIN:
        for usage, desc in commands:
            lines += textwrap.wrap(desc, width=width, initial_indent=f"  {usage.ljust(col)}  ",
                                   subsequent_indent=" " * (col + 4), break_on_hyphens=False) \
                or [f"  {usage}"]
        return "\n".join(lines)
    for usage, desc in commands:  # one column: the command, its description indented below
        lines += textwrap.wrap(usage, width=width, initial_indent="  ", subsequent_indent="    ")
        if desc:
            lines += textwrap.wrap(desc, width=width, initial_indent="      ", subsequent_indent="      ",
                                   break_on_hyphens=False)
    return "\n".join(lines)
