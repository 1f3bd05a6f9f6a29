"""Item-writing checks that catch questions answerable by test-taking rather than knowledge.

Two families, both crude on purpose (they catch the obvious cases; a human review catches the rest):

- `hint_leak`: a hint that shares noticeably more content words with the correct choice than with
  any distractor describes the answer instead of guiding the reasoning. Words that also appear in
  the prompt are context, not a leak, and are ignored.
- `near_duplicates`: pairs of questions whose prompt and key share a large part of their content
  words; likely the same claim tested twice. Reported as a warning (wording overlap is neither
  necessary nor sufficient for testing the same claim), for an author to look at.
- `baselines`: how well a player who knows nothing would score with a test-wise rule. The rules
  come in both directions: "pick the longest choice", "pick the choice with the fewest absolute
  words", "pick the choice with the most hedges", and their reverses "pick the shortest choice",
  "pick the choice with the most absolute words", "pick the choice with the fewest hedges". A
  test-wise player adapts to whatever surface cue works; a bank that cures one habit (keys too
  long, too cautious) by overshooting (keys too short, too absolute) only moves the cue, so both
  directions are scored. Ties share the credit: if k choices tie and the key is among them, the
  rule scores 1/k for that question (its expected score when it guesses among the tied ones).
  Chance is 25%; the bank must keep each rule at or below `MAX_BASELINE`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MAX_BASELINE = 0.30
# Jaccard similarity of the content words of prompt + key at or above which a pair is reported. On
# the 145-question bank it reports 7 pairs, among them dm-06/fl-05 and db-12/op-03, each one claim
# asked twice; pairs that test one claim in different words (dm-06/fl-06) stay below it.
NEAR_DUPLICATE = 0.25
# a hint is rejected when it shares this many more content words with the key than with the
# distractor it is closest to
HINT_LEAK_MARGIN = 2

ABSOLUTE_WORDS = frozenset({
    "always", "never", "only", "all", "entirely", "every", "none", "completely", "solely",
    "guarantee", "guarantees", "guaranteed", "impossible", "cannot", "nothing", "totally",
    "forever", "any", "must", "whatever", "fully", "exactly", "purely", "nobody", "everything",
})
HEDGE_WORDS = frozenset({
    "can", "may", "might", "often", "when", "if", "usually", "typically", "unless", "could",
    "some", "likely", "depends", "depending", "tends", "sometimes", "where", "while", "mostly",
    "probably", "rather", "until", "whether",
})
_STOPWORDS = frozenset("""
a an the and or but nor of to in on at by for with from into onto over under as is are was were be
been being it its this that these those there their they them then than so such not no yes do does
did done has have had having will would should shall can could may might must which who whom whose
what when where why how if else also just more most less least very each per via about after before
between both either neither i you he she we our your his her my me us one two three first second
same other another own out up down off again further once here all any some only too own s t
""".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9_'.-]*[a-z0-9]|[a-z0-9]")


def words(text: str) -> list[str]:
    """Lower-case word tokens (identifiers such as `search_model_versions` stay whole)."""
    return _WORD.findall(text.casefold())


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in words(text) if len(w) >= 3 and w not in _STOPWORDS}


def hint_leak(prompt: str, hint: str, choices: Sequence[str], answer_index: int) -> list[str] | None:
    """The words that make a hint describe the key, or None if the hint passes.

    The hint's content words (less the prompt's) are compared with each choice's; the hint leaks
    when it shares at least HINT_LEAK_MARGIN more words with the key than with the distractor it
    shares the most with. The words returned are the ones it shares with the key and no distractor.
    """
    hint_words = content_words(hint) - content_words(prompt)
    shared = [hint_words & content_words(c) for c in choices]
    key = shared[answer_index]
    closest = max(len(s) for i, s in enumerate(shared) if i != answer_index)
    if len(key) - closest < HINT_LEAK_MARGIN:
        return None
    others: set[str] = set().union(*(s for i, s in enumerate(shared) if i != answer_index))
    return sorted(key - others)


def as_written(text: str, stems: Iterable[str]) -> list[str]:
    """The words of `text` behind `stems` (content_words' stems), as written there, in order of
    appearance: what a message to an author should quote ('analysis', not the stem 'analysi')."""
    wanted, out = set(stems), []
    for w in words(text):
        stem = _stem(w)
        if stem in wanted and len(w) >= 3 and w not in _STOPWORDS:
            wanted.discard(stem)
            out.append(w)
    return out


def near_duplicates(questions: Iterable, threshold: float = NEAR_DUPLICATE) -> list[tuple[str, str, float]]:
    """(id, id, similarity) for each pair whose prompt + key content words overlap at least
    `threshold` (Jaccard), most similar first."""
    bags = [(q.id, content_words(f"{q.prompt} {q.answer_text}")) for q in questions]
    out = []
    for i, (a, x) in enumerate(bags):
        for b, y in bags[i + 1:]:
            union = len(x | y)
            sim = len(x & y) / union if union else 0.0
            if sim >= threshold:
                out.append((a, b, sim))
    return sorted(out, key=lambda t: (-t[2], t[0], t[1]))


def _count(text: str, vocabulary: frozenset[str]) -> int:
    return sum(1 for w in words(text) if w in vocabulary)


def _credit(scores: Sequence[float], answer_index: int, pick: Callable[[Sequence[float]], float]) -> float:
    best = pick(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    return 1 / len(tied) if answer_index in tied else 0.0


@dataclass(frozen=True)
class Baseline:
    name: str
    score: float  # share of questions a player following the rule gets right (0..1)


# (name, what the rule measures on a choice, whether it picks the highest or the lowest measure)
RULES: tuple[tuple[str, Callable[[str], int], Callable[[Sequence[float]], float]], ...] = (
    ("longest choice", len, max),
    ("fewest absolute words", lambda c: _count(c, ABSOLUTE_WORDS), min),
    ("most hedges", lambda c: _count(c, HEDGE_WORDS), max),
    ("shortest choice", len, min),
    ("most absolute words", lambda c: _count(c, ABSOLUTE_WORDS), max),
    ("fewest hedges", lambda c: _count(c, HEDGE_WORDS), min),
)


def baselines(questions: Iterable) -> list[Baseline]:
    """Each test-wise rule's score over `questions` (objects with .choices and .answer_index), in
    RULES order."""
    qs = list(questions)
    n = len(qs)
    return [Baseline(name, sum(_credit([measure(c) for c in q.choices], q.answer_index, pick) for q in qs) / n
                     if n else 0.0)
            for name, measure, pick in RULES]
