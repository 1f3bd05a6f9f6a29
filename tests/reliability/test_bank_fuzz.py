"""Bank fuzzing: whatever is in a question file, load_bank gives a Bank or a BankError naming the file.

Four generators, each with a fixed seed (derandomize) and a modest number of examples: raw bytes,
YAML dumped from arbitrary nested data, YAML-ish text built from tokens YAML treats specially
(anchors, aliases, tags, flow collections, block scalars, document markers), and mutations of a
valid bank, both of its data (drop, replace or add a field) and of its text (drop, repeat or swap a
line, insert a token, cut the file short). Any exception other than BankError fails the test.

Mapping keys are strings everywhere here: a mapping that mixes a string key with a key of another
type (1, true, null, a date) makes load_bank raise TypeError today; that case is reported and
joins this file once the loader handles it.
"""

from __future__ import annotations

import copy
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.bank import Bank, BankError, load_bank
from tests.fakes.bank import write_bank

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml where present: the loader is what is tested
FIELDS = ("topic", "title", "concept", "what", "shows_up", "pay_down", "sources", "questions", "id", "type",
          "difficulty", "prompt", "code", "choices", "A", "B", "C", "D", "answer", "hint", "explanation",
          "references", "time_limit", "solution", "steps", "quick_check", "common_mistakes", "challenge_sets")


def check(target: Path, files: set[str]) -> Bank | BankError:
    """Load; a BankError must list problems, each naming one of the bank's files with a line."""
    try:
        bank = load_bank(target)
        event("loaded: a valid bank")
        return bank
    except BankError as exc:
        event(f"loaded: BankError, e.g. {exc.problems[0].message[:30]}" if exc.problems else "no problems")
        assert exc.problems
        for p in exc.problems:
            assert p.file in files, (p, files)
            assert p.line >= 1 and p.field and p.message, p
            assert str(p).startswith(f"{p.file}:{p.line}{f':{p.column}' if p.column else ''}: "), str(p)
        return exc


@pytest.fixture(scope="module")
def valid_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated test bank cut down to one topic and its challenge set (quick to load 200 times)."""
    root = write_bank(tmp_path_factory.mktemp("valid") / "bank")
    sets = yaml.safe_load((root / "challenges" / "sets.yaml").read_text())["challenge_sets"]
    [keep] = [s for s in sets if s["id"] == "cs-alpha"]
    topic = yaml.safe_load((root / "topics" / "alpha.yaml").read_text())
    topic["questions"] = [q for q in topic["questions"] if q["id"] in keep["questions"]]
    (root / "topics" / "alpha.yaml").write_text(yaml.safe_dump(topic, sort_keys=False))
    (root / "topics" / "beta.yaml").unlink()
    (root / "challenges" / "sets.yaml").write_text(yaml.safe_dump({"challenge_sets": [keep]}, sort_keys=False))
    return root


@pytest.fixture
def one_file(tmp_path: Path) -> Path:
    (tmp_path / "topics").mkdir()
    return tmp_path / "topics" / "gamma.yaml"


@cache
def valid_file(path: Path) -> tuple[str, object]:
    text = path.read_text()
    return text, yaml.safe_load(text)


def dump(doc: object, **kwargs: object) -> str:
    return yaml.dump(doc, Dumper=DUMPER, **kwargs)


# -- generators ------------------------------------------------------------------------------------

keys = st.sampled_from(FIELDS) | st.text(max_size=12)
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | st.dates()
           | st.sampled_from(["A", "B", "E", "easy", "expert", "conceptual", "ga-01", "alpha", ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=12)
documents = st.dictionaries(keys, values, max_size=6) | values

TOKENS = ["x", "'quoted'", '"esc\\t\\u00e9"', "1", "-3", "0x1F", "0o17", "1e3", "12:30:00", ".nan", "-.inf",
          "~", "null", "true", "no", "2001-12-14", "2001-12-14T21:59:43.10-05:00", "!!binary aGVsbG8=",
          "!!str 1", "!!int '3'", "!!float x", "!!python/name:os.system", "!!set {'a'}", "!!omap ['a': 1]",
          "&a v", "*a", "*undefined", "<<", "|", "|-\n  block", ">\n  folded", "['a', 'b']", "{'a': 1}",
          "{'a': *a}", "[", "]", "{", "}", "'", '"', ":", ",", "- ", "? 'k'", "%YAML 1.1", "%TAG ! !x", "---",
          "...", "#c", "@", "`", "\t", "\x00", "\ufeff", "\u202e", "\u2028", "\x85", "é", "A" * 300]
tokens = st.sampled_from(TOKENS) | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
lines = st.tuples(st.integers(0, 4), st.sampled_from(["", "- "]), st.none() | st.sampled_from(FIELDS),
                  st.lists(tokens, max_size=3))


def render(line: tuple[int, str, str | None, list[str]]) -> str:
    indent, dash, key, parts = line
    head = "  " * indent + dash + (f"'{key}': " if key else "")
    return head + " ".join(parts)


def paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a document, parents before children."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


def mutate(doc: object, data: st.DataObject) -> object:
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        where = data.draw(st.sampled_from(paths(doc)), label="path")
        op = data.draw(st.sampled_from(["drop", "replace", "add", "repeat"]), label="op")
        if not where:
            doc = data.draw(values, label="whole") if op == "replace" else doc
            continue
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        if op == "drop":
            del parent[last]
        elif op == "replace":
            parent[last] = data.draw(values, label="value")
        elif op == "add" and isinstance(parent, dict):
            parent[data.draw(keys, label="key")] = data.draw(values, label="value")
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
    return doc


def mutate_text(text: str, data: st.DataObject) -> str:
    rows = text.split("\n")
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        i = data.draw(st.integers(0, max(0, len(rows) - 1)), label="line")
        op = data.draw(st.sampled_from(["drop", "repeat", "swap", "insert", "indent", "cut"]), label="edit")
        if op == "drop" and rows:
            del rows[i]
        elif op == "repeat" and rows:
            rows.insert(i, rows[i])
        elif op == "swap" and len(rows) > 1:
            j = data.draw(st.integers(0, len(rows) - 1), label="other")
            rows[i], rows[j] = rows[j], rows[i]
        elif op == "insert" and rows:
            at = data.draw(st.integers(0, len(rows[i])), label="column")
            rows[i] = rows[i][:at] + data.draw(tokens, label="token") + rows[i][at:]
        elif op == "indent" and rows:
            rows[i] = " " * data.draw(st.integers(0, 5), label="spaces") + rows[i].lstrip()
        elif op == "cut":
            rows = rows[:i]
    return "\n".join(rows)


# -- properties ------------------------------------------------------------------------------------

@FUZZ
@given(content=st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: t.encode("utf-8")))
def test_any_bytes(one_file: Path, content: bytes):
    one_file.write_bytes(content)
    check(one_file, {str(one_file)})


@FUZZ
@given(doc=documents, unicode=st.booleans(), flow=st.none() | st.booleans())
def test_any_yaml_data(one_file: Path, doc: object, unicode: bool, flow: bool | None):
    one_file.write_text(dump(doc, allow_unicode=unicode, default_flow_style=flow), encoding="utf-8")
    check(one_file, {str(one_file)})


@FUZZ
@given(body=st.lists(lines, max_size=25))
def test_yaml_ish_text(one_file: Path, body: list):
    one_file.write_text("\n".join(render(line) for line in body), encoding="utf-8")
    check(one_file, {str(one_file)})


@FUZZ
@given(data=st.data())
def test_mutated_valid_bank(tmp_path: Path, valid_bank: Path, data: st.DataObject):
    bank = tmp_path / "bank"
    if not bank.exists():
        shutil.copytree(valid_bank, bank)
    files = sorted(p for p in bank.rglob("*.yaml"))
    target = data.draw(st.sampled_from(files), label="file")
    original, parsed = valid_file(valid_bank / target.relative_to(bank))
    try:
        if data.draw(st.booleans(), label="as text"):
            target.write_text(mutate_text(original, data), encoding="utf-8")
        else:
            doc = mutate(copy.deepcopy(parsed), data)
            target.write_text(dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        check(bank, {str(p) for p in files})
    finally:
        target.write_text(original)


def test_the_mutations_start_from_a_valid_bank(valid_bank: Path):
    bank = load_bank(valid_bank)
    assert isinstance(bank, Bank) and len(bank.questions) == 5 and len(bank.challenge_sets) == 1
