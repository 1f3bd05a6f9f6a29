"""Every scoring rule in one place (the README's "Scoring" section documents the same table).

Points are by difficulty; a correct answer on the second attempt earns half; having taken the hint
takes a quarter off; a time-out, a skip or a wrong answer earns nothing. Practice earns no points:
it shows worked solutions, so it is for learning, not for the leaderboard.
"""

from __future__ import annotations

BASE_POINTS = {"easy": 10, "medium": 20, "intermediate": 30, "advanced": 40, "expert": 50}
SECOND_ATTEMPT_FACTOR = 0.5
HINT_FACTOR = 0.75


def points_for(difficulty: str, *, correct: bool, attempt: int, hint_used: bool, scored: bool = True) -> int:
    if not (correct and scored):
        return 0
    value = BASE_POINTS[difficulty]
    if attempt > 1:
        value *= SECOND_ATTEMPT_FACTOR
    if hint_used:
        value *= HINT_FACTOR
    return int(round(value))
