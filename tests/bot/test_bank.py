from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from bot.bank import BankError, load_bank
from bot.cli import cmd_bank_check
from tests.fakes.bank import question, write_bank

GOOD_Q = textwrap.dedent("""\
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
        prompt: What is gamma?
        choices:
          A: one
          B: two
          C: three
          D: four
        answer: B
        hint: Think.
        explanation: Two is right because it is.
        references: [Sculley 2015]
    """)


def problems_for(tmp_path: Path, text: str, name: str = "gamma.yaml") -> list[str]:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(BankError) as exc:
        load_bank([f])
    return [str(p) for p in exc.value.problems]


def test_fixture_bank_loads(tmp_path):
    bank = load_bank(write_bank(tmp_path))
    assert len(bank.questions) == 20 and len(bank.challenge_sets) == 2
    q = bank.question("alpha-00")
    assert q.answer == "A" and q.time_limit == 120 and q.solution is not None
    assert bank.question("alpha-08").time_limit == 180  # expert


def test_good_single_file(tmp_path):
    f = tmp_path / "gamma.yaml"
    f.write_text(GOOD_Q)
    bank = load_bank([f])
    assert bank.question("ga-01").answer_text == "two"


def test_time_limit_scale(tmp_path):
    bank = load_bank(write_bank(tmp_path), time_limit_scale=0.05)
    assert bank.question("alpha-04").time_limit == 6 and bank.question("alpha-08").time_limit == 9


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # 1 answer not a letter
        (lambda t: t.replace("answer: B", "answer: E"),
         "gamma.yaml:18: question ga-01: answer: must be one of A, B, C, D (got 'E')"),
        # 2 missing field
        (lambda t: t.replace("    hint: Think.\n", ""),
         "gamma.yaml:9: question ga-01: hint: missing required field 'hint'"),
        # 3 unknown field
        (lambda t: t.replace("    hint: Think.\n", "    hint: Think.\n    hnit: typo\n"),
         "gamma.yaml:20: question ga-01: hnit: unknown field 'hnit'"),
        # 4 bad type
        (lambda t: t.replace("type: conceptual", "type: trivia"),
         "gamma.yaml:10: question ga-01: type: must be one of conceptual, command_output, workflow, "
         "troubleshoot, best_practice (got 'trivia')"),
        # 5 bad difficulty
        (lambda t: t.replace("difficulty: easy", "difficulty: hard"),
         "gamma.yaml:11: question ga-01: difficulty: must be one of easy, medium, intermediate, advanced, "
         "expert (got 'hard')"),
        # 6 a missing choice
        (lambda t: t.replace("      D: four\n", ""),
         "gamma.yaml:13: question ga-01: choices.D: missing required field 'D'"),
        # 7 duplicate choices
        (lambda t: t.replace("D: four", "D: one"),
         "gamma.yaml:13: question ga-01: choices: choices must all be different"),
        # 8 all of the above
        (lambda t: t.replace("D: four", "D: All of the above"),
         "gamma.yaml:17: question ga-01: choices.D: no 'all/none of the above': choices are shuffled"),
        # 9 empty explanation
        (lambda t: t.replace("explanation: Two is right because it is.", "explanation: '  '"),
         "gamma.yaml:20: question ga-01: explanation: must not be blank"),
        # 10 references empty
        (lambda t: t.replace("references: [Sculley 2015]\n", "references: []\n"),
         "gamma.yaml:21: question ga-01: references: must have at least 1 item"),
        # 11 bad YAML
        (lambda t: t.replace("prompt: What is gamma?", "prompt: [What is gamma?"),
         "gamma.yaml:12:27: invalid YAML: expected ',' or ']', but got '?'"),
        # 12 topic does not match file name
        (lambda t: t.replace("topic: gamma", "topic: delta"),
         "gamma.yaml:1: file: topic: topic 'delta' does not match the file name 'gamma.yaml'"),
        # 13 letter named in the explanation
        (lambda t: t.replace("Two is right because it is.", "Option A is tempting but wrong."),
         "gamma.yaml:20: question ga-01: explanation: refers to a choice by its letter; choices are "
         "shuffled, so name it by its content"),
        # 14 duplicate key
        (lambda t: t.replace("    hint: Think.\n", "    hint: Think.\n    hint: Again.\n"),
         "gamma.yaml:20: question ga-01: hint: duplicate key 'hint'"),
        # 15 bad id
        (lambda t: t.replace("id: ga-01", "id: GA 01"),
         "gamma.yaml:9: question GA 01: id: 'GA 01' is not a valid id (lowercase letters, digits and dashes)"),
        # 16 time limit out of range
        (lambda t: t.replace("    hint: Think.\n", "    hint: Think.\n    time_limit: 5\n"),
         "gamma.yaml:20: question ga-01: time_limit: must be at least 10"),
    ],
)
def test_malformed_question_exact_message(tmp_path, edit, expected):
    problems = problems_for(tmp_path, edit(GOOD_Q))
    assert [p.removeprefix(f"{tmp_path}/") for p in problems] == [expected]


def test_every_problem_listed_at_once(tmp_path):
    text = GOOD_Q.replace("answer: B", "answer: Z").replace("type: conceptual", "type: trivia")
    second = GOOD_Q.replace("topic: gamma", "topic: other").replace("ga-01", "ot-01").replace(
        "What is gamma?", "What is other?").replace("references: [Sculley 2015]\n", "")
    (tmp_path / "other.yaml").write_text(second)
    problems = problems_for(tmp_path, text)
    assert problems == problems_for(tmp_path, text)  # deterministic order
    (tmp_path / "gamma.yaml").write_text(text)
    with pytest.raises(BankError) as exc:
        load_bank([tmp_path])
    fields = sorted((Path(p.file).name, p.field) for p in exc.value.problems)
    assert fields == [("gamma.yaml", "answer"), ("gamma.yaml", "type"), ("other.yaml", "references")]


def test_duplicate_ids_across_files(tmp_path):
    (tmp_path / "gamma.yaml").write_text(GOOD_Q)
    (tmp_path / "delta.yaml").write_text(GOOD_Q.replace("topic: gamma", "topic: delta").replace(
        "What is gamma?", "What is delta?"))
    with pytest.raises(BankError) as exc:
        load_bank([tmp_path])
    [problem] = exc.value.problems
    assert problem.question_id == "ga-01" and problem.field == "id"
    assert problem.message.startswith("duplicate id (first defined at ")


def test_challenge_set_rules(tmp_path):
    root = write_bank(tmp_path)
    sets = {"challenge_sets": [
        {"id": "cs-bad", "title": "Bad", "questions": ["alpha-04", "alpha-05", "alpha-06", "alpha-07", "nope-1"]},
        {"id": "cs-types", "title": "Types", "questions": ["beta-04", "beta-04", "beta-06", "beta-07", "beta-08"]},
        {"id": "cs-easy", "title": "Easy", "questions": ["alpha-00", "alpha-05", "alpha-06", "alpha-07", "alpha-08"]},
        {"id": "cs-order", "title": "Order", "questions": ["beta-08", "beta-05", "beta-06", "beta-07", "beta-04"]},
    ]}
    (root / "challenges" / "sets.yaml").write_text(yaml.safe_dump(sets, sort_keys=False))
    with pytest.raises(BankError) as exc:
        load_bank(root)
    msgs = [(p.question_id, p.field, p.message) for p in exc.value.problems]
    assert ("cs-bad", "questions.4", "unknown question id 'nope-1'") in msgs
    assert ("cs-types", "questions", "needs one question of each type; missing command_output") in msgs
    assert ("cs-easy", "questions.0",
            "question 'alpha-00' is easy; challenge items are intermediate, advanced or expert") in msgs
    assert ("cs-order", "questions", "difficulty must not decrease along the set") in msgs
    assert ("cs-easy", "questions.1", "question 'alpha-05' is already in challenge set 'cs-bad'") in msgs


def test_wrong_top_level(tmp_path):
    assert [p.removeprefix(f"{tmp_path}/") for p in problems_for(tmp_path, "- just\n- a list\n")] == [
        "gamma.yaml:1: must be a mapping with 'questions' or 'challenge_sets'"]


def test_not_utf8(tmp_path):
    f = tmp_path / "gamma.yaml"
    f.write_bytes(b"topic: \xff\xfe\n")
    with pytest.raises(BankError) as exc:
        load_bank([f])
    assert exc.value.problems[0].message == "not UTF-8 text (byte 7)"


def test_no_files(tmp_path):
    with pytest.raises(BankError) as exc:
        load_bank([tmp_path])
    assert exc.value.problems[0].message == "no .yaml question files found"


def test_bank_check_command_output(tmp_path, capsys):
    f = tmp_path / "gamma.yaml"
    f.write_text(GOOD_Q.replace("answer: B", "answer: E").replace("type: conceptual", "type: trivia"))
    assert cmd_bank_check([f]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and err[-1] == "2 problems found."
    f.write_text(GOOD_Q)
    assert cmd_bank_check([f]) == 0
    assert capsys.readouterr().out.strip() == (
        "OK: 1 questions in 1 topics, 0 practice problems, 0 challenge sets.")


def test_common_mistake_on_correct_letter(tmp_path):
    q = question("gamma", 2, "conceptual", "easy")
    q["solution"]["common_mistakes"][q["answer"]] = "This is the answer."
    doc = {"topic": "gamma", "title": "G", "concept": {"what": "w", "shows_up": ["s"], "pay_down": ["p"],
                                                      "sources": ["x"]}, "questions": [q]}
    problems = problems_for(tmp_path, yaml.safe_dump(doc, sort_keys=False))
    assert len(problems) == 1 and problems[0].endswith(
        f"question gamma-02: solution.common_mistakes.{q['answer']}: lists the correct answer as a mistake")


def test_unquoted_hash_is_reported(tmp_path):
    text = GOOD_Q.replace("references: [Sculley 2015]\n", "references:\n      - Zinkevich, Rule #22 - clean up features\n")
    problems = problems_for(tmp_path, text)
    assert [p.removeprefix(f"{tmp_path}/") for p in problems] == [
        "gamma.yaml:22: question ga-01: references.0: the text after ' #' is read as a YAML comment and dropped; "
        "quote the value"]
