"""How each mode picks its questions and what it allows.

The engine asks a Mode for the questions of a new session and for its rules (attempts, timing,
scoring, worked solutions); it holds no mode-specific branches beyond these flags.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from .bank import TEST_BANDS, Bank, Question, difficulty_rank


class NoQuestions(Exception):
    """The filters left nothing to ask."""


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    attempts: int
    timed: bool
    scored: bool
    shows_solution: bool
    hint_costs_points: bool
    awards_badge: bool = False


CHALLENGE = Mode("challenge", "Mastery challenge", attempts=2, timed=True, scored=True,
                 shows_solution=False, hint_costs_points=True, awards_badge=True)
PRACTICE = Mode("practice", "Practice", attempts=2, timed=False, scored=False,
                shows_solution=True, hint_costs_points=False)
TEST = Mode("test", "Test", attempts=1, timed=True, scored=True,
            shows_solution=False, hint_costs_points=True)
REVIEW = Mode("review", "Review", attempts=1, timed=False, scored=False,
              shows_solution=True, hint_costs_points=False)
MODES = {m.name: m for m in (CHALLENGE, PRACTICE, TEST, REVIEW)}

PRACTICE_LENGTH = 5
TEST_PLAN = (("easy", 3), ("medium", 4), ("hard", 3))


def pick_challenge(bank: Bank, rng: random.Random, failed_sets: Collection[str]) -> tuple[str, list[str]]:
    """A set the player has not failed while one is left; otherwise any set."""
    if not bank.challenge_sets:
        raise NoQuestions("The question bank has no challenge sets.")
    fresh = [s for s in bank.challenge_sets if s.id not in failed_sets]
    chosen = rng.choice(fresh or list(bank.challenge_sets))
    return chosen.id, list(chosen.question_ids)


def pick_practice(bank: Bank, rng: random.Random, topic: str | None, difficulty: str | None) -> list[str]:
    pool = bank.practice_questions(topic, difficulty)
    if not pool:
        what = " ".join(x for x in (difficulty, topic) if x)
        raise NoQuestions(f"No practice problems match {what}." if what else "No practice problems yet.")
    chosen = rng.sample(pool, min(PRACTICE_LENGTH, len(pool)))
    chosen.sort(key=lambda q: difficulty_rank(q.difficulty))
    return [q.id for q in chosen]


def pick_test(bank: Bank, rng: random.Random) -> list[str]:
    """Ten questions across easy / medium / hard, spread over as many topics as possible."""
    picked: list[Question] = []
    for band, count in TEST_PLAN:
        pool = [q for q in bank.questions.values() if q.difficulty in TEST_BANDS[band]]
        rng.shuffle(pool)
        # prefer topics not yet used, then anything
        seen = {q.topic for q in picked}
        pool.sort(key=lambda q: q.topic in seen)
        band_pick: list[Question] = []
        for q in pool:
            if len(band_pick) == count:
                break
            if q.topic in {p.topic for p in band_pick} and len({x.topic for x in pool}) > count:
                continue
            band_pick.append(q)
        for q in pool:
            if len(band_pick) == count:
                break
            if q not in band_pick:
                band_pick.append(q)
        if len(band_pick) < count:
            raise NoQuestions(f"The test needs {count} {band} questions; the bank has {len(band_pick)}.")
        picked += band_pick
    picked.sort(key=lambda q: difficulty_rank(q.difficulty))
    return [q.id for q in picked]
