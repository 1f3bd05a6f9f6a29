"""The bundled question bank: valid, and able to serve every mode."""

from __future__ import annotations

from bot.bank import TEST_BANDS, TYPES, default_bank_path, load_bank
from bot.cli import cmd_bank_check


def test_shipped_bank_is_valid(capsys):
    assert cmd_bank_check(None) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("OK: ")


def test_shipped_bank_serves_every_mode():
    bank = load_bank(default_bank_path())
    assert bank.challenge_sets, "at least one Mastery challenge set"
    for s in bank.challenge_sets:
        assert sorted(bank.question(q).type for q in s.question_ids) == sorted(TYPES)
    for band, levels in TEST_BANDS.items():
        assert sum(1 for q in bank.questions.values() if q.difficulty in levels) >= 4, band
    assert len(bank.practice_questions()) >= 5


def test_mlflow_invented_command_is_never_the_answer():
    """CONTENT.md: `mlflow models list-versions` does not exist; it may only appear as a distractor."""
    bank = load_bank(default_bank_path())
    for q in bank.questions.values():
        assert "list-versions" not in q.answer_text, q.id


def test_bank_meets_every_minimum():
    """The coverage promised by issue 14: mldebt bank stats exits 0 on the shipped bank."""
    from bot.bank_stats import checks

    failed = [f"{c.name}: {c.value}" for c in checks(load_bank(default_bank_path())) if not c.ok]
    assert failed == []


def test_issue_14_numbers():
    """At least 200 questions, 12 topics of at least 15, 70 practice problems, 12 disjoint Mastery sets."""
    bank = load_bank(default_bank_path())
    assert len(bank.questions) >= 200
    assert len(bank.topics) >= 12 and min(len(t.question_ids) for t in bank.topics.values()) >= 15
    assert len(bank.practice_questions()) >= 70
    in_sets = [q for s in bank.challenge_sets for q in s.question_ids]
    assert len(bank.challenge_sets) >= 12 and len(in_sets) == len(set(in_sets))


def test_no_test_wise_rule_beats_30_percent():
    """Pick the longest / shortest, fewest / most absolute words, most / fewest hedges: at most 30%,
    over the bank and per topic."""
    from bot.bank_quality import MAX_BASELINE, baselines

    bank = load_bank(default_bank_path())
    assert len(baselines([])) == 6
    scopes = {"bank": list(bank.questions.values())}
    scopes |= {t.id: [bank.question(q) for q in t.question_ids] for t in bank.topics.values()}
    over = [f"{scope}: {b.name} {b.score:.1%}" for scope, qs in scopes.items() for b in baselines(qs)
            if b.score > MAX_BASELINE]
    assert over == []


def test_challenge_sets_follow_the_mastery_profile():
    bank = load_bank(default_bank_path())
    for s in bank.challenge_sets:
        qs = [bank.question(q) for q in s.question_ids]
        assert [q.time_limit for q in qs] == [180 if q.difficulty == "expert" else 120 for q in qs], s.id
        assert qs[-1].difficulty in ("advanced", "expert")


def test_hints_do_not_give_the_answer_away():
    bank = load_bank(default_bank_path())
    leaks = [q.id for q in bank.questions.values() if q.answer_text.casefold() in q.hint.casefold()]
    assert leaks == []


def test_every_topic_has_a_concept_card_with_practice():
    bank = load_bank(default_bank_path())
    for t in bank.topics.values():
        assert t.concept.what and t.concept.shows_up and t.concept.pay_down and t.concept.sources
        assert len(bank.practice_questions(t.id)) >= 3, t.id
