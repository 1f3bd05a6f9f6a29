"""The loader's hint rule: a hint that describes the correct choice is rejected, naming the words."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.bank import BankError, load_bank

BANK = textwrap.dedent("""\
    topic: gamma
    title: Gamma
    concept:
      what: What gamma is.
      shows_up: [It shows.]
      pay_down: [Pay it.]
      sources: [Sculley 2015]
    questions:
      - id: ga-01
        type: conceptual
        difficulty: easy
        prompt: {prompt}
        choices:
          A: {a}
          B: More unit tests around each model
          C: A bigger staging cluster
          D: Code review checklists
        answer: A
        hint: {hint}
        explanation: The import graph shows every consumer.
        references: [Sculley 2015]
    """)
PROMPT = "Which practice finds the undeclared consumers of a model?"
KEY = "Static analysis of the import graph"


def load(tmp_path: Path, hint: str, *, prompt: str = PROMPT, a: str = KEY, d: str | None = None) -> list[str]:
    text = BANK.format(prompt=prompt, a=a, hint=hint)
    if d is not None:
        text = text.replace("D: Code review checklists", f"D: {d}")
    f = tmp_path / "gamma.yaml"
    f.write_text(text)
    try:
        load_bank([f])
    except BankError as exc:
        return [str(p).removeprefix(f"{f}:") for p in exc.problems]
    return []


def test_a_hint_that_paraphrases_the_key_is_rejected_with_its_words(tmp_path):
    assert load(tmp_path, "What tells you, by static analysis, which modules depend on which?") == [
        "19: question ga-01: hint: describes the correct choice (shares 'static', 'analysis' with it and with no "
        "other choice): guide the reasoning instead"]


@pytest.mark.parametrize("hint", [
    "Think about what the graph could tell you.",  # one shared word more than any distractor: fine
    "Which of these would still work if nobody told you about the new consumer?",  # shares nothing
])
def test_a_hint_that_guides_the_reasoning_passes(tmp_path, hint):
    assert load(tmp_path, hint) == []


def test_words_the_prompt_already_uses_are_context_not_a_leak(tmp_path):
    prompt = "Which practice, static analysis of imports or another, finds the undeclared consumers?"
    assert load(tmp_path, "Static analysis of what, exactly?", prompt=prompt) == []


def test_words_shared_with_a_distractor_as_much_as_with_the_key_pass(tmp_path):
    assert load(tmp_path, "Static analysis or a checklist review?", d="A static analysis checklist") == []


def test_a_key_matched_word_by_word_across_the_distractors_is_still_caught(tmp_path):
    # the hint shares three words with the key and one with each of three distractors: no word is the
    # key's alone, so the message says why instead of naming words
    problems = load(tmp_path, "Unit, staging or checklists - which one settles it?",
                    a="Unit checks in staging, with checklists")
    assert problems == [
        "19: question ga-01: hint: describes the correct choice (shares more words with it than with any other "
        "choice): guide the reasoning instead"]
