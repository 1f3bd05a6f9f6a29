"""`mldebt bank check`: every problem in every file in one run, and no problem caused by another.

A file with one broken question still loads its other questions, so the challenge sets that use
them are checked as usual; an id is "unknown" only when no file defines it (a question that exists
but is invalid has its own problem, not a second one in each challenge set that uses it).
"""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from bot.cli import cmd_bank_check
from tests.fakes.bank import write_bank


def check(root: Path) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    code = cmd_bank_check([root], out, err)
    return code, [line.removeprefix(f"{root}/") for line in (out.getvalue() + err.getvalue()).splitlines()]


def edit_topic(root: Path, topic: str, change) -> None:
    f = root / "topics" / f"{topic}.yaml"
    doc = yaml.safe_load(f.read_text())
    change(doc["questions"])
    f.write_text(yaml.safe_dump(doc, sort_keys=False))


def line_of(root: Path, topic: str, needle: str) -> int:
    text = (root / "topics" / f"{topic}.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(text, 1) if needle in line)


def test_one_question_without_an_answer_is_the_only_problem(tmp_path):
    root = write_bank(tmp_path / "bank")
    edit_topic(root, "alpha", lambda qs: qs[5].pop("answer"))  # alpha-05 is in challenge set cs-alpha
    code, lines = check(root)
    assert code == 1
    assert lines == [
        f"topics/alpha.yaml:{line_of(root, 'alpha', '- id: alpha-05')}: question alpha-05: answer: "
        "missing required field 'answer'",
        "1 problem found.",
    ]


def test_several_problems_in_one_file_are_all_reported(tmp_path):
    root = write_bank(tmp_path / "bank")

    def break_three(qs):
        qs[1]["difficulty"] = "hard"  # a schema problem
        qs[2]["hint"] = "Option B is the one."  # a rule the schema cannot express
        qs[3].pop("references")  # another schema problem, in another question

    edit_topic(root, "beta", break_three)
    code, lines = check(root)
    assert code == 1
    assert lines == [
        f"topics/beta.yaml:{line_of(root, 'beta', 'difficulty: hard')}: question beta-01: difficulty: must be one "
        "of easy, medium, intermediate, advanced, expert (got 'hard')",
        f"topics/beta.yaml:{line_of(root, 'beta', 'hint: Option B')}: question beta-02: hint: refers to a choice "
        "by its letter; choices are shuffled, so name it by its content",
        f"topics/beta.yaml:{line_of(root, 'beta', '- id: beta-03')}: question beta-03: references: missing "
        "required field 'references'",
        "3 problems found.",
    ]


def test_invalid_yaml_names_line_and_column_and_causes_no_unknown_ids(tmp_path):
    root = write_bank(tmp_path / "bank")
    f = root / "topics" / "alpha.yaml"
    text = f.read_text().replace("prompt: Question 5 about alpha?", "prompt: [Question 5 about alpha?")
    f.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "[Question 5" in t)
    column = text.splitlines()[line - 1].index("?") + 1
    code, lines = check(root)
    assert code == 1
    assert lines == [f"topics/alpha.yaml:{line}:{column}: invalid YAML: expected ',' or ']', but got '?'",
                     "1 problem found."]


def test_an_id_no_file_defines_is_still_unknown(tmp_path):
    root = write_bank(tmp_path / "bank")
    edit_topic(root, "alpha", lambda qs: qs[5].pop("answer"))
    sets_file = root / "challenges" / "sets.yaml"
    sets = yaml.safe_load(sets_file.read_text())
    sets["challenge_sets"][1]["questions"][0] = "beta-99"
    sets_file.write_text(yaml.safe_dump(sets, sort_keys=False))
    code, lines = check(root)
    sets_line = next(i for i, t in enumerate(sets_file.read_text().splitlines(), 1) if "beta-99" in t)
    assert code == 1 and len(lines) == 3 and lines[1].startswith("topics/alpha.yaml:")
    assert lines[0] == (f"challenges/sets.yaml:{sets_line}: question cs-beta: questions.0: unknown question id "
                        "'beta-99'")
    assert lines[2] == "2 problems found."


def test_a_broken_challenge_set_leaves_the_others_checked(tmp_path):
    root = write_bank(tmp_path / "bank")
    sets_file = root / "challenges" / "sets.yaml"
    sets = yaml.safe_load(sets_file.read_text())
    sets["challenge_sets"][0].pop("title")
    sets["challenge_sets"][1]["questions"][0] = "alpha-00"  # easy, and already used nowhere else
    sets_file.write_text(yaml.safe_dump(sets, sort_keys=False))
    code, lines = check(root)
    assert code == 1
    assert [line.split(": ", 1)[-1] for line in lines] == [
        "question cs-alpha: title: missing required field 'title'",
        "question cs-beta: questions.0: question 'alpha-00' is easy; challenge items are intermediate, advanced "
        "or expert",
        "2 problems found.",
    ]
