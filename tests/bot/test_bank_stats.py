"""`mldebt bank stats` on small synthetic banks: the test-wise baselines and the coverage header."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from bot.bank import LETTERS, Bank
from bot.bank_quality import near_duplicates
from bot.bank_stats import checks, coverage_report
from bot.cli import cmd_bank_stats
from tests.fakes.bank import make_bank, write_bank

RULES = ("longest choice", "fewest absolute words", "most hedges",
         "shortest choice", "most absolute words", "fewest hedges")


def _with_choices(bank: Bank, topic: str, make) -> Bank:
    """The bank with every question of `topic` given the choices make(question) returns."""
    qs = {qid: dataclasses.replace(q, choices=make(q)) if q.topic == topic else q for qid, q in bank.questions.items()}
    return dataclasses.replace(bank, questions=MappingProxyType(qs))


def _baseline_rows(bank: Bank) -> dict[str, tuple[str, bool]]:
    return {c.name: (c.value, c.ok) for c in checks(bank) if "baseline" in c.name}


def test_equal_choices_score_chance_on_every_baseline(tmp_path):
    rows = _baseline_rows(make_bank(tmp_path))
    assert rows == {
        f"{scope}: '{rule}' baseline <= 30%": ("25.0%", True)
        for scope in ("bank", "alpha", "beta")
        for rule in RULES
    }


def test_a_key_recognisable_by_its_shape_fails_the_topic_and_the_bank(tmp_path):
    def shaped(q):
        # the key is the long, hedged one; every distractor says "always"
        return tuple(f"it can often help when the {q.id} data shifts" if letter == q.answer
                     else f"it always fixes {q.id}" for letter in LETTERS)

    rows = _baseline_rows(_with_choices(make_bank(tmp_path), "alpha", shaped))
    for rule in ("longest choice", "fewest absolute words", "most hedges"):
        assert rows[f"alpha: '{rule}' baseline <= 30%"] == ("100.0%", False)
        assert rows[f"beta: '{rule}' baseline <= 30%"] == ("25.0%", True)
        # half the bank answered by shape: 10 x 1 + 10 x 1/4 over 20 questions
        assert rows[f"bank: '{rule}' baseline <= 30%"] == ("62.5%", False)
    for rule in ("shortest choice", "most absolute words", "fewest hedges"):
        assert rows[f"alpha: '{rule}' baseline <= 30%"] == ("0.0%", True)


def test_an_overshoot_the_other_way_fails_the_reverse_rules(tmp_path):
    """A bank cured of long, hedged keys by making them short and absolute is just as test-wise."""
    def overshot(q):
        return tuple(f"it always fixes {q.id}" if letter == q.answer
                     else f"it can often help when the {q.id} data shifts" for letter in LETTERS)

    rows = _baseline_rows(_with_choices(make_bank(tmp_path), "alpha", overshot))
    for rule in ("shortest choice", "most absolute words", "fewest hedges"):
        assert rows[f"alpha: '{rule}' baseline <= 30%"] == ("100.0%", False)
        assert rows[f"beta: '{rule}' baseline <= 30%"] == ("25.0%", True)
        assert rows[f"bank: '{rule}' baseline <= 30%"] == ("62.5%", False)
    for rule in ("longest choice", "fewest absolute words", "most hedges"):
        assert rows[f"alpha: '{rule}' baseline <= 30%"] == ("0.0%", True)


def test_the_minimums_of_issue_14(tmp_path):
    failed = {c.name: c.value for c in checks(make_bank(tmp_path)) if not c.ok}
    assert failed == {
        "questions >= 200": "20",
        "topics >= 12": "2",
        "alpha: >= 15 questions, >= 3 types, >= 3 difficulties": "10 q, 5 types, 5 difficulties",
        "beta: >= 15 questions, >= 3 types, >= 3 difficulties": "10 q, 5 types, 5 difficulties",
        "questions with code >= 15": "0",
        "practice problems >= 70": "10",
        "challenge sets >= 12": "2",
    }


def test_coverage_header_names_every_type_in_full(tmp_path):
    report, ok = coverage_report(make_bank(tmp_path))
    header = report.splitlines()[2].split()
    assert header == ["topic", "conceptual", "command_output", "workflow", "troubleshoot", "best_practice", "total"]
    assert not ok and report.endswith("Some minimums are not met.")
    # the cells line up under their column
    head, row = report.splitlines()[2:4]
    assert row.index("E1I1  ", 10) == head.index("command_output")


def test_bank_stats_command_prints_the_baselines_and_fails_below_the_minimums(tmp_path, capsys):
    assert cmd_bank_stats([write_bank(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[ok] bank: 'fewest absolute words' baseline <= 30%: 25.0%" in out
    assert "[ok] bank: 'most absolute words' baseline <= 30%: 25.0%" in out
    assert "[FAIL] questions >= 200: 20" in out


def test_near_duplicates_are_listed_as_a_warning(tmp_path):
    bank = make_bank(tmp_path)
    a, b = bank.question("alpha-01"), bank.question("beta-03")
    twin = dataclasses.replace(
        b, prompt="After each weekly retrain the share of mail flagged as spam jumps between 2% and 9%. Why?",
        choices=tuple("A fixed threshold in a dynamic system: learn it on held-out data at every retrain"
                      if x == b.answer else c for x, c in zip(LETTERS, b.choices, strict=True)))
    first = dataclasses.replace(
        a, prompt="Since weekly retraining began, the share of mail flagged as spam swings from 2% to 9%. Why?",
        choices=tuple("A fixed threshold in a dynamic system; re-learn the cut-off on held-out data each retrain"
                      if x == a.answer else c for x, c in zip(LETTERS, a.choices, strict=True)))
    other = dataclasses.replace(bank.question("beta-04"), prompt="Which store keeps features for serving?")
    assert [(x, y) for x, y, _ in near_duplicates([first, twin, other])] == [("alpha-01", "beta-03")]
    sim = near_duplicates([first, twin])[0][2]
    qs = {**bank.questions, a.id: first, b.id: twin}
    report, ok = coverage_report(dataclasses.replace(bank, questions=MappingProxyType(qs)))
    assert ("Possible near-duplicates (prompt + key share >= 25% of their content words; a warning: check they do "
            "not test the same claim):") in report.splitlines()
    assert f"  alpha-01 ~ beta-03: {sim:.0%}" in report.splitlines()
    # a warning: it never changes the checks or the verdict
    assert [c.name for c in checks(bank)] == [c.name for c in checks(dataclasses.replace(
        bank, questions=MappingProxyType(qs)))]
    assert ok is coverage_report(bank)[1]
