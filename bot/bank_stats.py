"""Coverage of a bank against the minimums the product promises (`mldebt bank stats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .bank import DIFFICULTIES, LETTERS, TYPES, Bank
from .bank_quality import MAX_BASELINE, NEAR_DUPLICATE, baselines, near_duplicates

MIN_QUESTIONS = 200
MIN_TOPICS = 12
MIN_PER_TOPIC = 15
MIN_TYPES_PER_TOPIC = 3
MIN_DIFFICULTIES_PER_TOPIC = 3
MIN_CODE = 15
MIN_PRACTICE = 70
MIN_CHALLENGE_SETS = 12  # disjoint: the loader refuses a question in two sets
LETTER_SHARE = (0.15, 0.35)


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool


def _baseline_checks(scope: str, questions: list) -> list[Check]:
    """One check per test-wise rule: a player who knows nothing must not beat MAX_BASELINE with it."""
    return [Check(f"{scope}: '{b.name}' baseline <= {MAX_BASELINE:.0%}", f"{b.score:.1%}", b.score <= MAX_BASELINE)
            for b in baselines(questions)]


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
    out += _baseline_checks("bank", qs)
    for t in sorted(bank.topics.values(), key=lambda t: t.id):
        out += _baseline_checks(t.id, [bank.questions[i] for i in t.question_ids])
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
    col = max(len(t) for t in TYPES)
    lines.append(f"{'topic'.ljust(width)}  " + "  ".join(t.ljust(col) for t in TYPES) + "  total")
    for topic in sorted(bank.topics):
        qs = [bank.questions[i] for i in bank.topics[topic].question_ids]
        cells = []
        for t in TYPES:
            c = Counter(q.difficulty for q in qs if q.type == t)
            cells.append(("".join(f"{abbrev[d]}{c[d]}" for d in DIFFICULTIES if c[d]) or "-").ljust(col))
        lines.append(f"{topic.ljust(width)}  " + "  ".join(cells) + f"  {len(qs)}")
    lines.append("")
    results = checks(bank)
    for c in results:
        lines.append(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.value}")
    ok = all(c.ok for c in results)
    pairs = near_duplicates(bank.questions.values())
    if pairs:
        lines += ["", f"Possible near-duplicates (prompt + key share >= {NEAR_DUPLICATE:.0%} of their content words; "
                  "a warning: check they do not test the same claim):"]
        lines += [f"  {a} ~ {b}: {sim:.0%}" for a, b, sim in pairs]
    lines.append("")
    lines.append("All minimums met." if ok else "Some minimums are not met.")
    return "\n".join(lines), ok
