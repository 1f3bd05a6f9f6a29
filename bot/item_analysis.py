"""Item analysis: which questions real answers show to be broken (`mldebt bank report`, `admin items`).

Pure functions over plain rows (the store's `item_answers`), so the statistics are tested on
simulated answer sets without a database.

What counts as an answer: each player's FIRST encounter with a question, judged on its first
attempt. Later encounters (review mode re-asks missed questions, a replayed challenge) measure
practice, not the item, so they are left out; a time-out counts as a wrong first attempt. Each
question then has one 0/1 score per player who met it.

Discrimination is the point-biserial correlation between that 0/1 score and the player's share
correct on the OTHER questions they met (the "rest score"). The rest score leaves the item out so
it does not correlate with itself, and it is a share, not a count, because players meet different
numbers of questions (a challenge is 5, a test 10, practice any number). We use the point-biserial
rather than the upper-lower 27% index because it uses every player, not just the two tails, which
matters while a question has only tens of answers. Players who met no other question are left out
of it. A key that is wrong shows up as a negative value: the stronger players pick the true answer
and are marked wrong.

No flag is raised below `MIN_ANSWERS` answers: with fewer, one or two players move p and r by more
than the thresholds.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .bank import LETTERS, Question
from .replies import FlaggedQuestion, ItemFlags
from .store.base import ItemAnswerRow

MIN_ANSWERS = 30
TOO_EASY_P = 0.9
TOO_HARD_P = 0.2
LOW_DISCRIMINATION = 0.10

# the order flags are shown in, most urgent first (a broken key before a dull distractor)
RULES = ("negative-discrimination", "distractor-beats-key", "too-hard", "low-discrimination", "dead-distractor",
         "too-easy")


@dataclass(frozen=True)
class Flag:
    rule: str  # one of RULES
    message: str  # the rule with this question's numbers


@dataclass(frozen=True)
class ItemStats:
    question_id: str
    topic: str
    source: str  # "file:line", relative to the repository where possible
    key: str  # the correct letter as written in the YAML
    choices: tuple[str, str, str, str]
    players: int  # first encounters = answers counted
    p: float  # first-attempt share correct
    discrimination: float | None  # point-biserial against the rest score; None if undefined
    choice_shares: Mapping[str, float]  # original letter -> share of first attempts picking it
    no_answer: float  # share of first encounters that timed out without a pick
    hint_rate: float
    median_seconds: float | None  # time from the question opening to the first answer (or time-out)
    timeout_rate: float
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class ItemReport:
    items: tuple[ItemStats, ...]  # questions with at least one answer, in bank order
    players: int
    answers: int
    min_answers: int

    @property
    def flagged(self) -> list[ItemStats]:
        """Flagged questions, most urgent first, then the most answered."""
        return sorted((s for s in self.items if s.flags),
                      key=lambda s: (min(RULES.index(f.rule) for f in s.flags), -s.players, s.question_id))


def repo_path(source: str) -> tuple[str, int]:
    """("question_bank/topics/x.yaml", 12) from a Question.source, relative to the repository.

    A path under the current directory is made relative to it; otherwise the path from its last
    `question_bank` folder on, so that links in a report work from the repository root.
    """
    file, _, line = source.rpartition(":")
    path = Path(file)
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        parts = path.parts
        rel = "/".join(parts[len(parts) - 1 - parts[::-1].index("question_bank"):]) if "question_bank" in parts \
            else path.as_posix()
    return rel, int(line) if line.isdigit() else 1


def _first_encounters(rows: Iterable[ItemAnswerRow]) -> dict[int, dict[str, ItemAnswerRow]]:
    by_player: dict[int, dict[str, ItemAnswerRow]] = defaultdict(dict)
    for r in sorted(rows, key=lambda r: (r.player_id, r.opened_at, r.session_id, r.position)):
        by_player[r.player_id].setdefault(r.question_id, r)
    return by_player


def _correct(r: ItemAnswerRow) -> int:
    return int(r.first_outcome == "correct")


def point_biserial(xs: list[int], ys: list[float]) -> float | None:
    """Pearson correlation of 0/1 scores with rest scores; None when either does not vary."""
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / (sxx * syy) ** 0.5


def _flags(q: Question, n: int, p: float, r: float | None, shares: Mapping[str, float],
           min_answers: int) -> tuple[Flag, ...]:
    if n < min_answers:
        return ()
    out: list[Flag] = []
    if r is not None and r < 0:
        out.append(Flag("negative-discrimination", f"negative discrimination: r = {r:+.2f} < 0 (players who do "
                        "well elsewhere miss it more often; check the key)"))
    key_share = shares[q.answer]
    for letter in LETTERS:
        if letter != q.answer and shares[letter] > key_share:
            out.append(Flag("distractor-beats-key", f"distractor {letter} picked more than the key {q.answer}: "
                            f"{shares[letter]:.0%} vs {key_share:.0%}"))
    if p < TOO_HARD_P:
        out.append(Flag("too-hard", f"too hard: p = {p:.2f} < {TOO_HARD_P:.2f}"))
    if r is not None and 0 <= r < LOW_DISCRIMINATION:
        out.append(Flag("low-discrimination", f"near-zero discrimination: r = {r:+.2f} < {LOW_DISCRIMINATION:.2f}"))
    for letter in LETTERS:
        if letter != q.answer and shares[letter] == 0:
            out.append(Flag("dead-distractor", f"dead distractor {letter}: picked by nobody in {n} answers"))
    if p > TOO_EASY_P:
        out.append(Flag("too-easy", f"too easy: p = {p:.2f} > {TOO_EASY_P:.2f} with {n} answers"))
    return tuple(out)


def analyse(rows: Iterable[ItemAnswerRow], questions: Mapping[str, Question],
            min_answers: int = MIN_ANSWERS) -> ItemReport:
    """Per-question statistics and flags. Rows for questions no longer in the bank still count in
    the players' rest scores but get no line of their own."""
    by_player = _first_encounters(rows)
    totals = {pid: (sum(_correct(r) for r in enc.values()), len(enc)) for pid, enc in by_player.items()}
    by_question: dict[str, list[tuple[int, ItemAnswerRow]]] = defaultdict(list)
    for pid, enc in by_player.items():
        for qid, r in enc.items():
            by_question[qid].append((pid, r))
    items = []
    for qid, q in questions.items():
        answers = by_question.get(qid)
        if not answers:
            continue
        n = len(answers)
        xs, rests = [], []
        for pid, r in answers:
            total, count = totals[pid]
            if count > 1:
                xs.append(_correct(r))
                rests.append((total - _correct(r)) / (count - 1))
        picks = [r.first_choice for _, r in answers]
        shares = {letter: picks.count(letter) / n for letter in LETTERS}
        times = [(r.answered_at if r.answered_at is not None else r.closed_at) - r.opened_at
                 for _, r in answers if r.answered_at is not None or r.closed_at is not None]
        p = sum(_correct(r) for _, r in answers) / n
        disc = point_biserial(xs, rests)
        items.append(ItemStats(
            question_id=qid,
            topic=q.topic,
            source="{}:{}".format(*repo_path(q.source)) if q.source else "",
            key=q.answer,
            choices=q.choices,
            players=n,
            p=p,
            discrimination=disc,
            choice_shares=shares,
            no_answer=picks.count(None) / n,
            hint_rate=sum(r.hint_used for _, r in answers) / n,
            median_seconds=statistics.median(times) if times else None,
            timeout_rate=sum(r.status == "timeout" for _, r in answers) / n,
            flags=_flags(q, n, p, disc, shares, min_answers),
        ))
    return ItemReport(tuple(items), players=len(by_player),
                      answers=sum(len(enc) for enc in by_player.values()), min_answers=min_answers)


def flags_reply(report: ItemReport, limit: int) -> ItemFlags:
    """The chat reply of `admin items`: the `limit` most urgent flagged questions and a summary."""
    flagged = report.flagged
    return ItemFlags(
        questions=len(report.items), players=report.players, total_flagged=len(flagged),
        min_answers=report.min_answers,
        flagged=tuple(FlaggedQuestion(s.question_id, s.source, s.players, s.p, s.discrimination,
                                      tuple(f.message for f in s.flags)) for s in flagged[:limit]))
