"""A small generated question bank for engine tests, independent of the shipped content."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.bank import LETTERS, TYPES, Bank, load_bank
from bot.replies import QuestionCard

TOPICS = ("alpha", "beta")
# per topic: (type, difficulty) of each question; challenge sets use the intermediate+ ones
PLAN = [
    ("conceptual", "easy"), ("workflow", "easy"), ("troubleshoot", "medium"), ("best_practice", "medium"),
    ("conceptual", "intermediate"), ("command_output", "intermediate"), ("workflow", "advanced"),
    ("troubleshoot", "advanced"), ("best_practice", "expert"), ("command_output", "easy"),
]


def question(topic: str, n: int, qtype: str, difficulty: str) -> dict:
    answer = LETTERS[n % 4]
    q = {
        "id": f"{topic}-{n:02d}",
        "type": qtype,
        "difficulty": difficulty,
        "prompt": f"Question {n} about {topic}?",
        "choices": {letter: f"{topic} {n} choice {letter}" for letter in LETTERS},
        "answer": answer,
        "hint": f"Hint for {topic} {n}.",
        "explanation": f"Because the right one is right for {topic} {n}.",
        "references": ["Sculley et al. 2015, sec. 2"],
    }
    if n % 2 == 0:
        q["solution"] = {
            "steps": [f"Step one for {n}.", "Step two."],
            "quick_check": "Check it.",
            "common_mistakes": {x: f"This pick ({n}) means a mix-up." for x in LETTERS if x != answer},
        }
    return q


def write_bank(root: Path) -> Path:
    (root / "topics").mkdir(parents=True, exist_ok=True)
    (root / "challenges").mkdir(exist_ok=True)
    for topic in TOPICS:
        doc = {
            "topic": topic,
            "title": topic.title(),
            "concept": {"what": f"What {topic} is.", "shows_up": ["It shows."], "pay_down": ["Pay it."],
                        "sources": ["Sculley et al. 2015"]},
            "questions": [question(topic, i, t, d) for i, (t, d) in enumerate(PLAN)],
        }
        (root / "topics" / f"{topic}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sets = []
    for topic in TOPICS:
        by_type = {t: f"{topic}-{i:02d}" for i, (t, d) in enumerate(PLAN)
                   if d in ("intermediate", "advanced", "expert")}
        sets.append({"id": f"cs-{topic}", "title": f"{topic.title()} set",
                     "questions": [by_type[t] for t in TYPES]})
    (root / "challenges" / "sets.yaml").write_text(yaml.safe_dump({"challenge_sets": sets}, sort_keys=False))
    return root


def make_bank(root: Path, **kwargs) -> Bank:
    return load_bank(write_bank(root), **kwargs)


def correct_letter(bank: Bank, card: QuestionCard) -> str:
    answer = bank.question(card.question_id).answer_text
    return next(c.letter for c in card.choices if c.text == answer)


def wrong_letter(bank: Bank, card: QuestionCard, *, but: str = "") -> str:
    """A wrong letter not yet tried (the engine refuses a letter tried twice), nor any letter in `but`."""
    answer = bank.question(card.question_id).answer_text
    return next(c.letter for c in card.choices if c.text != answer and c.letter not in card.tried
                and c.letter not in but)
