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
    """The coverage promised by the bank issue: mldebt bank stats exits 0 on the shipped bank."""
    from bot.bank_stats import checks

    failed = [f"{c.name}: {c.value}" for c in checks(load_bank(default_bank_path())) if not c.ok]
    assert failed == []


def test_challenge_sets_follow_the_mastery_profile():
    bank = load_bank(default_bank_path())
    assert len(bank.challenge_sets) >= 8
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
