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
