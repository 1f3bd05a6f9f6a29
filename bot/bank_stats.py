"""Coverage of a bank against the minimums the product promises (`mldebt bank stats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .bank import DIFFICULTIES, LETTERS, TYPES, Bank

MIN_QUESTIONS = 120
MIN_TOPICS = 12
MIN_PER_TOPIC = 8
MIN_TYPES_PER_TOPIC = 3
MIN_DIFFICULTIES_PER_TOPIC = 3
MIN_CODE = 15
MIN_PRACTICE = 40
MIN_CHALLENGE_SETS = 8
MAX_LONGEST_CORRECT = 0.35
LETTER_SHARE = (0.15, 0.35)


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool


def longest_is_correct(q) -> bool:
    lengths = [len(c) for c in q.choices]
    return lengths[q.answer_index] > max(n for i, n in enumerate(lengths) if i != q.answer_index)


def checks(bank: Bank) -> list[Check]:
    qs = list(bank.questions.values())
    n = len(qs) or 1
    out = [
        Check(f"questions >= {MIN_QUESTIONS}", str(len(qs)), len(qs) >= MIN_QUESTIONS),
        Check(f"topics >= {MIN_TOPICS}", str(len(bank.topics)), len(bank.topics) >= MIN_TOPICS),
    ]
    for t in sorted(bank.topics.values(), key=lambda t: t.id):
        tq = [bank.questions[i] for i in t.question_ids]
        types = {q.type for q in tq}
        diffs = {q.difficulty for q in tq}
        out.append(Check(f"{t.id}: >= {MIN_PER_TOPIC} questions, >= {MIN_TYPES_PER_TOPIC} types, "
                         f">= {MIN_DIFFICULTIES_PER_TOPIC} difficulties",
                         f"{len(tq)} q, {len(types)} types, {len(diffs)} difficulties",
                         len(tq) >= MIN_PER_TOPIC and len(types) >= MIN_TYPES_PER_TOPIC
                         and len(diffs) >= MIN_DIFFICULTIES_PER_TOPIC))
    code = sum(1 for q in qs if q.code)
    practice = sum(1 for q in qs if q.solution is not None)
    out += [
        Check(f"questions with code >= {MIN_CODE}", str(code), code >= MIN_CODE),
        Check(f"practice problems >= {MIN_PRACTICE}", str(practice), practice >= MIN_PRACTICE),
        Check(f"challenge sets >= {MIN_CHALLENGE_SETS}", str(len(bank.challenge_sets)),
              len(bank.challenge_sets) >= MIN_CHALLENGE_SETS),
    ]
    longest = sum(1 for q in qs if longest_is_correct(q)) / n
    out.append(Check(f"correct choice is the longest in <= {MAX_LONGEST_CORRECT:.0%}", f"{longest:.1%}",
                     longest <= MAX_LONGEST_CORRECT))
    letters = Counter(q.answer for q in qs)
    for letter in LETTERS:
        share = letters[letter] / n
        out.append(Check(f"answer {letter} in {LETTER_SHARE[0]:.0%}-{LETTER_SHARE[1]:.0%}", f"{share:.1%}",
                         LETTER_SHARE[0] <= share <= LETTER_SHARE[1]))
    return out


def coverage_report(bank: Bank) -> tuple[str, bool]:
    """The topic x type x difficulty matrix and every minimum, with a pass/fail mark each."""
    abbrev = {"easy": "E", "medium": "M", "intermediate": "I", "advanced": "A", "expert": "X"}
    lines = ["Coverage (cells: count by difficulty E/M/I/A/X)", ""]
    width = max([len(t) for t in bank.topics] + [5])
    lines.append(f"{'topic'.ljust(width)}  " + "  ".join(t[:13].ljust(13) for t in TYPES) + "  total")
    for topic in sorted(bank.topics):
        qs = [bank.questions[i] for i in bank.topics[topic].question_ids]
        cells = []
        for t in TYPES:
            c = Counter(q.difficulty for q in qs if q.type == t)
            cells.append(("".join(f"{abbrev[d]}{c[d]}" for d in DIFFICULTIES if c[d]) or "-").ljust(13))
        lines.append(f"{topic.ljust(width)}  " + "  ".join(cells) + f"  {len(qs)}")
    lines.append("")
    results = checks(bank)
    for c in results:
        lines.append(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.value}")
    ok = all(c.ok for c in results)
    lines.append("")
    lines.append("All minimums met." if ok else "Some minimums are not met.")
    return "\n".join(lines), ok
