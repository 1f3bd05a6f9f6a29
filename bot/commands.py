"""The `/mldebt ...` vocabulary, shared by every adapter.

Slack passes the slash command's text, the console the typed line, Discord the app command's name and
options; each gets the same replies. Buttons carry an action id built here (ids only, never the
answer) and come back through `handle_action`. Domain errors become a private Rejected reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import errors
from .bank import DIFFICULTIES
from .engine import QuizEngine
from .item_analysis import analyse, flags_reply
from .replies import HelpText, Player, Rejected, Reply
from .store.base import StoreBusy
from .text import command_text

HELP: tuple[tuple[str, str], ...] = (
    ("challenge", "the Mastery challenge: 5 timed questions; 5/5 earns the Technical Debt Mastery badge"),
    ("practice [topic] [difficulty]", "untimed practice with worked solutions"),
    ("test", "10 timed questions across easy, medium and hard, with a report by topic"),
    ("learn [topic]", "the concept card of a topic, then its practice problems"),
    ("topics", "list the topics"),
    ("hint", "a hint for your current question (costs 25% of its points when timed)"),
    ("skip", "skip your current question"),
    ("resume", "show your current question again"),
    ("quit", "end your current quiz"),
    ("review", "the questions you missed, back on a spaced schedule"),
    ("stats", "your points, accuracy (questions right at the first attempt / questions answered) by topic, "
              "streak, badges, team and rank"),
    ("leaderboard [players|teams] [week|month|all] [per-member]", "top 10 and your own rank (default: players, week)"),
    ("team create|join NAME, team leave, team list", "teams inside this workspace or server"),
    ("daily status", "when and where the daily question is posted"),
    ("help", "this list"),
)
ADMIN_HELP: tuple[tuple[str, str], ...] = (
    ("admin status", "pending badge grants and their reasons; celebration on/off"),
    ("admin retry", "after fixing a delivery problem that admin status shows: try again now"),
    ("admin celebrate on|off", "post (or not) a public celebration when someone earns the badge"),
    ("admin timezone Area/City", "the time zone of leaderboard weeks/months and streaks (default UTC)"),
    ("admin items [N]", "the N (default 10) questions this workspace's answers show to be broken, and why"),
    ("daily set #channel HH:MM Area/City", "post a daily question there at that local time"),
    ("daily off [#channel]", "stop the daily question"),
    ("daily now [#channel]", "post today's daily question now (still one per day)"),
)
HELP_INTRO = "mldebt teaches technical debt in ML systems. Commands:"

_ACTION = re.compile(r"^mldebt:(?P<kind>[ahsd]):(?P<session>[0-9a-f]{1,32}):(?P<question>[a-z0-9-]{1,40})"
                     r"(?::(?P<choice>[A-D]))?$")


@dataclass(frozen=True)
class Action:
    kind: str  # a = answer, h = hint, s = skip, d = answer a daily post (session_id is the post id)
    session_id: str
    question_id: str
    choice: str | None = None

    def encode(self) -> str:
        tail = f":{self.choice}" if self.choice else ""
        return f"mldebt:{self.kind}:{self.session_id}:{self.question_id}{tail}"

    @classmethod
    def decode(cls, value: str) -> Action | None:
        m = _ACTION.match(value or "")
        if not m or (m["kind"] in "ad") != (m["choice"] is not None):
            return None
        return cls(m["kind"], m["session"], m["question"], m["choice"])


def help_reply(unknown: str | None = None) -> HelpText:
    intro = f"Unknown command '{unknown}'. {HELP_INTRO}" if unknown else HELP_INTRO
    return HelpText(HELP, intro)


def _practice_filters(engine: QuizEngine, args: list[str]) -> tuple[str | None, str | None]:
    topic = difficulty = None
    for arg in args:
        if arg in DIFFICULTIES:
            difficulty = arg
        elif topic is None:
            topic = arg
        else:
            raise errors.BadRequest(f"Too many arguments: practice takes a topic and a difficulty, got '{arg}'.")
    return topic, difficulty


async def _admin(engine: QuizEngine, player: Player, args: list[str], is_admin: bool,
                 celebrate_default: bool) -> list[Reply]:
    if not is_admin:
        return [Rejected("Only workspace or server admins can use `admin` commands.", "NotAdmin")]
    raw, args = args, [a.lower() for a in args]
    if args == ["status"]:
        return await engine.admin_status(player, celebrate_default=celebrate_default)
    if len(args) == 2 and args[0] == "celebrate" and args[1] in ("on", "off"):
        await engine.set_tenant_flag(player.platform, player.tenant, "celebrate", args[1] == "on")
        return await engine.admin_status(player, celebrate_default=celebrate_default)
    if len(args) == 2 and args[0] == "timezone":
        return await engine.set_timezone(player, raw[1])
    if args[:1] == ["items"] and len(args) <= 2:
        return [await _item_flags(engine, player, args[1:])]
    if args == ["retry"]:
        return await engine.retry_deliveries(player, celebrate_default=celebrate_default)
    return [HelpText(ADMIN_HELP, "Admin commands:")]


async def _item_flags(engine: QuizEngine, player: Player, args: list[str]) -> Reply:
    """Item analysis over this tenant's answers (`mldebt bank report` is the whole-database version)."""
    if args and not (args[0].isdigit() and 1 <= int(args[0]) <= 25):
        raise errors.BadRequest("Usage: admin items [N], N from 1 to 25.")
    try:
        async with engine.store.transaction() as tx:
            rows = await tx.item_answers(player.platform, player.tenant)
    except StoreBusy as exc:
        raise errors.Busy() from exc
    return flags_reply(analyse(rows, engine.bank.questions), int(args[0]) if args else 10)


def _leaderboard_args(args: list[str]) -> tuple[str, str, bool]:
    kind, period, per_member = "players", "week", False
    for arg in (a.lower() for a in args):
        if arg in ("players", "teams"):
            kind = arg
        elif arg in ("week", "month", "all"):
            period = arg
        elif arg in ("per-member", "permember", "average"):
            per_member = True
        else:
            raise errors.BadRequest(f"Unknown leaderboard option '{arg[:30]}'. Use: leaderboard [players|teams] "
                                    "[week|month|all] [per-member].")
    return kind, period, per_member


async def _daily(engine: QuizEngine, player: Player, args: list[str], is_admin: bool) -> list[Reply]:
    action = args[0].lower() if args else "status"
    if action == "status":
        return await engine.daily_status(player)
    if action not in ("set", "off", "now"):
        return [HelpText(tuple(h for h in ADMIN_HELP if h[0].startswith("daily")) + (("daily status", ""),),
                         "Daily question commands:")]
    if not is_admin:
        return [Rejected("Only workspace or server admins can change the daily question.", "NotAdmin")]
    if action == "set":
        if len(args) != 4:
            raise errors.BadRequest("Usage: daily set #channel HH:MM Area/City (e.g. daily set #ml 09:00 "
                                    "Europe/Berlin).")
        return await engine.daily_set(player, args[1], args[2], args[3])
    channel = args[1] if len(args) > 1 else None
    if action == "off":
        return await engine.daily_off(player, channel)
    return await engine.daily_now(player, channel)


async def handle_text(engine: QuizEngine, player: Player, text: str, *, route: str | None = None,
                      is_admin: bool = False, celebrate_default: bool = True) -> list[Reply]:
    """Run one typed command (the text after `/mldebt`).

    `is_admin` is the platform's verdict (Discord Manage Server, Slack workspace admin); the
    console's single local player is always admin.
    """
    words = command_text(text or "").strip().split()
    if not words:
        return [help_reply()]
    name, raw_args = words[0].lower(), words[1:]
    args = [w.lower() for w in raw_args]
    try:
        match name:
            case "challenge" | "test":
                return await engine.start(player, name, route=route)
            case "practice":
                topic, difficulty = _practice_filters(engine, args)
                return await engine.start(player, "practice", topic=topic, difficulty=difficulty, route=route)
            case "learn":
                return engine.learn(args[0] if args else None)
            case "topics":
                return engine.topics()
            case "hint":
                return await engine.hint(player)
            case "skip":
                return await engine.skip(player)
            case "resume" | "continue":
                return await engine.resume(player, route=route)
            case "quit" | "stop":
                return await engine.quit(player)
            case "stats":
                return await engine.stats(player)
            case "help":
                return [help_reply()]
            case "admin":
                return await _admin(engine, player, raw_args, is_admin, celebrate_default)
            case "review":
                return await engine.start(player, "review", route=route)
            case "leaderboard" | "top":
                kind, period, per_member = _leaderboard_args(args)
                return await engine.leaderboard(player, kind, period, per_member)
            case "team" | "teams":
                action = "list" if name == "teams" or not args else args[0]
                if action not in ("create", "join", "leave", "list"):
                    return [HelpText(tuple(h for h in HELP if h[0].startswith("team")), "Team commands:")]
                return await engine.team(player, action, " ".join(raw_args[1:]))
            case "daily":
                return await _daily(engine, player, raw_args, is_admin)
            case _:
                return [help_reply(words[0][:40])]
    except errors.QuizError as exc:
        return [Rejected(exc.message, type(exc).__name__)]


async def handle_action(engine: QuizEngine, player: Player, action_id: str, event_id: str,
                        *, route: str | None = None) -> list[Reply]:
    """Run a button click. `event_id` is the platform's id for this delivery (idempotency key)."""
    action = Action.decode(action_id)
    if action is None:
        return [Rejected("That button is not one of mine.", "BadAction")]
    try:
        if action.kind == "a":
            assert action.choice is not None
            return await engine.answer(player, action.session_id, action.question_id, action.choice, event_id,
                                       route=route)
        if action.kind == "d":
            assert action.choice is not None
            return await engine.daily_answer(player, action.session_id, action.question_id, action.choice, event_id)
        if action.kind == "h":
            return await engine.hint(player, action.session_id, action.question_id)
        return await engine.skip(player, action.session_id, action.question_id)
    except errors.QuizError as exc:
        return [Rejected(exc.message, type(exc).__name__)]
