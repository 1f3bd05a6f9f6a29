"""Loads question_bank/ (YAML) into immutable objects, reporting every problem at once.

Each problem names the file, the line, the question id and the field, so that an author can fix a
whole bank in one pass. Validation is the JSON Schema in question_bank/schema.json plus the rules a
schema cannot express (answer letters, unique ids and prompts, challenge-set composition).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from .bank_quality import as_written, hint_leak

LETTERS = ("A", "B", "C", "D")
TYPES = ("conceptual", "command_output", "workflow", "troubleshoot", "best_practice")
DIFFICULTIES = ("easy", "medium", "intermediate", "advanced", "expert")
CHALLENGE_DIFFICULTIES = ("intermediate", "advanced", "expert")
TEST_BANDS = {"easy": ("easy",), "medium": ("medium", "intermediate"), "hard": ("advanced", "expert")}
DEFAULT_TIME_LIMIT = 120
EXPERT_TIME_LIMIT = 180
# choices are shuffled per session, so prose must name a choice by its content, never its letter
_LETTER_REF = re.compile(
    r"\b(?:[Oo]ption|[Cc]hoice|[Aa]nswer|[Ll]etter)s?\s+\(?[A-D]\b"  # "option B", "answer (C)"
    r"|(?:^|\s)\(?[A-D]\)\s"  # "(A) ", "B) "
    r"|(?<![\w'+#.-])[B-D](?![\w'+#-])"  # a lone B, C or D
    r"|(?<![\w'+#.-])A\s+(?:is|was|would|and|or|fails|reverses|swaps|treats|rejects|relies|blocks|misreads|"
    r"keeps|contradicts|describes|confuses|invents|gets|sounds|looks|ignores|misses|builds|assumes|picks|"
    r"may|might|shows|moves|tests|has|adds|breaks|lets|makes|leaves|finds|trades|names|claims|says)\b"
)
_CATCH_ALL = re.compile(r"\b(all|none|both|neither) of the (above|others|options)\b", re.IGNORECASE)


def difficulty_rank(difficulty: str) -> int:
    return DIFFICULTIES.index(difficulty)


@dataclass(frozen=True)
class Solution:
    steps: tuple[str, ...]
    quick_check: str
    common_mistakes: Mapping[str, str]


@dataclass(frozen=True)
class Question:
    id: str
    topic: str
    type: str
    difficulty: str
    prompt: str
    choices: tuple[str, str, str, str]
    answer: str
    hint: str
    explanation: str
    references: tuple[str, ...]
    time_limit: int
    code: str | None = None
    solution: Solution | None = None
    source: str = ""

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer_index]


@dataclass(frozen=True)
class Concept:
    what: str
    shows_up: tuple[str, ...]
    pay_down: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    id: str
    title: str
    concept: Concept
    question_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChallengeSet:
    id: str
    title: str
    question_ids: tuple[str, ...]


@dataclass(frozen=True)
class Bank:
    questions: Mapping[str, Question]
    topics: Mapping[str, Topic]
    challenge_sets: tuple[ChallengeSet, ...]

    def question(self, question_id: str) -> Question:
        return self.questions[question_id]

    def practice_questions(self, topic: str | None = None, difficulty: str | None = None) -> list[Question]:
        return [
            q
            for q in self.questions.values()
            if q.solution is not None
            and (topic is None or q.topic == topic)
            and (difficulty is None or q.difficulty == difficulty)
        ]


@dataclass(frozen=True, order=True)
class BankProblem:
    file: str
    line: int
    question_id: str | None
    field: str
    message: str
    column: int | None = None  # 1-based, where the parser knows it (YAML syntax errors)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")
        if self.question_id is None and self.field == "(file)":
            return f"{where}: {self.message}"  # about the whole file: no field to name
        qid = f"question {self.question_id}" if self.question_id else "file"
        return f"{where}: {qid}: {self.field}: {self.message}"


class BankError(Exception):
    """The bank is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[BankProblem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def default_bank_path() -> Path:
    return Path(str(resources.files("question_bank")))


@cache
def _schema() -> dict[str, Any]:
    return json.loads(resources.files("question_bank").joinpath("schema.json").read_text("utf-8"))


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


def _compose(text: str) -> tuple[Any, dict[tuple, int], list[tuple[tuple, int, str]], list[tuple[tuple, int]]]:
    """Parse YAML into plain data, a map from each value's path to its 1-based line, the duplicate
    keys, and the plain values cut short by a ' #' that YAML took for a comment."""
    try:
        node, data = _parse(_FAST_LOADER, text)
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
        node, data = _parse(yaml.SafeLoader, text)  # the pure parser words its errors better
    if node is None:
        return None, {}, [], []
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    duplicates: list[tuple[tuple, int, str]] = []
    comments: list[tuple[tuple, int]] = []
    source_lines = text.splitlines()

    def walk(n: yaml.Node, path: tuple) -> None:
        if isinstance(n, yaml.ScalarNode) and not n.style and n.end_mark.line < len(source_lines):
            # `Rule #22` unquoted loses everything from ' #' on: YAML reads it as a comment
            rest = source_lines[n.end_mark.line][n.end_mark.column:]
            if rest.lstrip().startswith("#") and path and path[-1] != "id":
                comments.append((path, n.end_mark.line + 1))
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in n.value:
                key = key_node.value
                if key in seen:
                    duplicates.append((path, key_node.start_mark.line + 1, str(key)))
                seen.add(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    walk(node, ())
    return data, lines, duplicates, comments


# libyaml parses about eight times faster than the pure-Python parser where PyYAML was built with it
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(loader_cls: type, text: str) -> tuple[yaml.Node | None, Any]:
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _refuse_aliases(node)
        return node, loader.construct_document(node)
    finally:
        loader.dispose()


class _AliasFound(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark) -> None:
        self.problem = "anchors and aliases (& and *) are not allowed in question files"
        self.problem_mark = mark
        super().__init__(self.problem)


def _refuse_aliases(root: yaml.Node) -> None:
    """A node reached twice is an alias; refusing them keeps loading linear ("billion laughs")."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise _AliasFound(n.start_mark)
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def _line_for(lines: dict[tuple, int], path: tuple) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def _field_name(path: tuple) -> str:
    """The field a path points at, inside its question or challenge set: 'choices.B', 'answer'."""
    if len(path) >= 2 and path[0] in ("questions", "challenge_sets") and isinstance(path[1], int):
        rest = path[2:]
    else:
        rest = path
    return ".".join(str(p) for p in rest) or "(file)"


def _missing_key(error: jsonschema.ValidationError) -> str:
    """The one property a `required` error is about (jsonschema reports each missing one apart)."""
    m = re.match(r"^'(.+)' is a required property$", error.message)
    if m:
        return m.group(1)
    missing = [k for k in error.validator_value if k not in (error.instance or {})]
    return missing[0] if missing else "?"


def _schema_message(error: jsonschema.ValidationError) -> str:
    v = error.validator
    if v == "required":
        return f"missing required field '{_missing_key(error)}'"
    if v == "additionalProperties":
        extra = sorted(map(str, set(error.instance) - set(error.schema.get("properties", {}))))
        return f"unknown field '{extra[0]}'" if extra else error.message
    if v == "type":
        return f"must be of type {error.validator_value}, got {type(error.instance).__name__}"
    if v == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))} (got {error.instance!r})"
    if v == "pattern":
        if error.validator_value == r"\S":
            return "must not be blank"
        return f"{error.instance!r} is not a valid id (lowercase letters, digits and dashes)"
    if v == "minLength":
        return "must not be empty"
    if v in ("minItems", "maxItems"):
        n = error.validator_value
        return f"must have {'at least' if v == 'minItems' else 'at most'} {n} item{'s' if n != 1 else ''}"
    if v in ("minimum", "maximum"):
        return f"must be {'at least' if v == 'minimum' else 'at most'} {error.validator_value}"
    return error.message


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Collector:
    problems: list[BankProblem] = field(default_factory=list)

    def add(self, file: str, line: int, qid: str | None, field_: str, message: str, column: int | None = None) -> None:
        self.problems.append(BankProblem(file, line, qid, field_, message, column))

    def at(self, file: str, lines: dict[tuple, int], prefix: tuple, qid: str | None, field_: str,
           message: str) -> None:
        """A problem in the item at `prefix`, on the line of its `field_` (dotted path)."""
        key = tuple(int(p) if p.isdigit() else p for p in field_.split(".")) if field_ else ()
        self.add(file, _line_for(lines, prefix + key), qid, field_, message)


def _bank_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml") and x.is_file()))
        else:
            files.append(p)
    return files


def _as_paths(paths: Iterable[Path | str] | Path | str | None) -> list[Path]:
    if paths is None:
        return [default_bank_path()]
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def bank_files(paths: Iterable[Path | str] | Path | str | None = None) -> list[Path]:
    """The question files a bank is loaded from, in load order."""
    return _bank_files(_as_paths(paths))


def load_bank(paths: Iterable[Path | str] | Path | str | None = None, *, time_limit_scale: float = 1.0,
              cache_dir: Path | None = None) -> Bank:
    """Load and validate a bank. Raises BankError listing every problem found.

    With `cache_dir`, a bank validated before from byte-identical files (by the same loader code and
    schema) is read back from the cache instead of being parsed and validated again; see bank_cache.
    """
    roots = _as_paths(paths)
    files = _bank_files(roots)
    if not files:
        where = ", ".join(str(p) for p in roots) or "."
        raise BankError([BankProblem(where, 1, None, "(file)", "no .yaml question files found")])
    if cache_dir is not None:
        from .bank_cache import load_cached

        return load_cached(files, time_limit_scale, cache_dir, lambda: validate_bank(files, time_limit_scale))
    return validate_bank(files, time_limit_scale)


# a file that could not be parsed still names its ids, so the challenge sets that use them do not
# report them as unknown (the file's own error is the one to fix)
_ID_LINE = re.compile(r"^[ \t-]*id:[ \t]*['\"]?([a-z0-9][a-z0-9-]*)['\"]?[ \t]*(?:#.*)?$", re.MULTILINE)


def validate_bank(files: list[Path], time_limit_scale: float = 1.0) -> Bank:
    """Parse and check every file, collecting every problem; a problem in one question or one
    challenge set leaves the rest of its file checked and loaded."""
    out = _Collector()
    validator_cls = jsonschema.validators.validator_for(_schema())
    root = {k: v for k, v in _schema().items() if k != "oneOf"}
    topic_validator = validator_cls({**root, "$ref": "#/$defs/topicFile"})
    challenge_validator = validator_cls({**root, "$ref": "#/$defs/challengeFile"})

    questions: dict[str, Question] = {}
    present: set[str] = set()  # ids of questions that exist but could not be loaded
    question_where: dict[str, tuple[str, int]] = {}
    prompts: dict[str, str] = {}
    topics: dict[str, Topic] = {}
    raw_sets: list[tuple[str, dict[tuple, int], int, dict]] = []

    for path in files:
        name = str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            out.add(name, 1, None, "(file)", f"cannot read: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            out.add(name, 1, None, "(file)", f"not UTF-8 text (byte {exc.start})")
            continue
        try:
            data, lines, dups, comments = _compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            out.add(name, line, None, "(file)", f"invalid YAML: {problem}", column)
            present.update(_ID_LINE.findall(text))
            continue
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            out.add(name, 1, None, "(file)", f"invalid YAML: {type(exc).__name__}")
            present.update(_ID_LINE.findall(text))
            continue
        for dpath, line, key in dups:
            out.add(name, line, _qid_at(data, dpath), _field_name(dpath + (key,)), f"duplicate key '{key}'")
        for cpath, line in comments:
            out.add(name, line, _qid_at(data, cpath), _field_name(cpath),
                    "the text after ' #' is read as a YAML comment and dropped; quote the value")
        if not isinstance(data, dict):
            out.add(name, 1, None, "(file)", "must be a mapping with 'questions' or 'challenge_sets'")
            continue
        is_challenge = "challenge_sets" in data and "questions" not in data
        validator = challenge_validator if is_challenge else topic_validator
        bad_items: set[int] = set()  # questions (or challenge sets) of this file with a schema error
        bad_keys: set[str] = set()  # top-level keys with a schema error
        for err in validator.iter_errors(data):
            epath = tuple(err.absolute_path)
            fpath = epath
            if err.validator in ("required", "additionalProperties") and isinstance(err.instance, dict):
                # point at the offending key where there is one
                if err.validator == "additionalProperties":
                    extra = sorted(map(str, set(err.instance) - set(err.schema.get("properties", {}))))
                    if extra:
                        fpath = epath + (extra[0],)
                else:
                    fpath = epath + (_missing_key(err),)
            out.add(name, _line_for(lines, epath if fpath != epath and fpath not in lines else fpath),
                    _qid_at(data, epath), _field_name(fpath), _schema_message(err))
            if len(epath) >= 2 and epath[0] in ("questions", "challenge_sets") and isinstance(epath[1], int):
                bad_items.add(epath[1])
            else:
                bad_keys.add(str(fpath[0]) if fpath else "(file)")
        items = data.get("challenge_sets" if is_challenge else "questions")
        if not isinstance(items, list) or bad_keys & {"(file)", "challenge_sets", "questions"}:
            present.update(_ID_LINE.findall(text))
            continue
        if is_challenge:
            raw_sets += [(name, lines, i, cs) for i, cs in enumerate(items) if i not in bad_items]
            continue
        present.update(q["id"] for i, q in enumerate(items)
                       if i in bad_items and isinstance(q, dict) and isinstance(q.get("id"), str))
        if "topic" in bad_keys:
            present.update(q["id"] for i, q in enumerate(items) if i not in bad_items)
            continue
        topic_id = data["topic"]
        if path.stem != topic_id:
            out.add(name, _line_for(lines, ("topic",)), None, "topic",
                    f"topic '{topic_id}' does not match the file name '{path.name}'")
        if topic_id in topics:
            out.add(name, _line_for(lines, ("topic",)), None, "topic", f"topic '{topic_id}' is defined twice")
        ids: list[str] = []
        for i, q in enumerate(items):
            if i in bad_items:
                continue  # its schema problems are reported; the file's other questions still load
            qline = _line_for(lines, ("questions", i))
            qid = q["id"]

            def flag(fld: str, msg: str, _where: tuple = (name, lines, ("questions", i), qid)) -> None:
                out.at(*_where, fld, msg)

            if qid in question_where:
                other, oline = question_where[qid]
                flag("id", f"duplicate id (first defined at {other}:{oline})")
                continue
            question_where[qid] = (name, qline)
            choices = tuple(str(q["choices"][k]).strip() for k in LETTERS)
            if len({c.casefold() for c in choices}) < 4:
                flag("choices", "choices must all be different")
            for letter, choice in zip(LETTERS, choices, strict=True):
                if _CATCH_ALL.search(choice):
                    flag(f"choices.{letter}", "no 'all/none of the above': choices are shuffled")
            prose = [("hint", q["hint"]), ("explanation", q["explanation"])]
            if "solution" in q:
                prose += [(f"solution.steps.{j}", step) for j, step in enumerate(q["solution"]["steps"])]
                prose.append(("solution.quick_check", q["solution"]["quick_check"]))
                prose += [(f"solution.common_mistakes.{k}", v) for k, v in q["solution"]["common_mistakes"].items()]
            for fld, value in prose:
                if _LETTER_REF.search(value):
                    flag(fld, "refers to a choice by its letter; choices are shuffled, so name it by its content")
            leak = hint_leak(q["prompt"], q["hint"], choices, LETTERS.index(q["answer"]))
            if leak is not None:
                shared = ", ".join(f"'{w}'" for w in as_written(q["hint"], leak))
                flag("hint", f"describes the correct choice (shares {shared} with it and with no other choice): "
                     "guide the reasoning instead" if shared else "describes the correct choice (shares more words "
                     "with it than with any other choice): guide the reasoning instead")
            prompt_key = " ".join(q["prompt"].split()).casefold()
            if prompt_key in prompts:
                flag("prompt", f"same prompt as question {prompts[prompt_key]}")
            prompts.setdefault(prompt_key, qid)
            solution = None
            if "solution" in q:
                s = q["solution"]
                for letter in s["common_mistakes"]:
                    if letter == q["answer"]:
                        flag(f"solution.common_mistakes.{letter}", "lists the correct answer as a mistake")
                solution = Solution(
                    steps=tuple(s["steps"]),
                    quick_check=s["quick_check"],
                    common_mistakes=MappingProxyType(dict(s["common_mistakes"])),
                )
            default_limit = EXPERT_TIME_LIMIT if q["difficulty"] == "expert" else DEFAULT_TIME_LIMIT
            limit = q.get("time_limit", default_limit)
            questions[qid] = Question(
                id=qid,
                topic=topic_id,
                type=q["type"],
                difficulty=q["difficulty"],
                prompt=q["prompt"].strip(),
                choices=choices,  # type: ignore[arg-type]
                answer=q["answer"],
                hint=q["hint"].strip(),
                explanation=q["explanation"].strip(),
                references=tuple(q["references"]),
                time_limit=max(1, round(limit * time_limit_scale)),
                code=q.get("code"),
                solution=solution,
                source=f"{name}:{qline}",
            )
            ids.append(qid)
        if bad_keys & {"title", "concept"}:
            continue
        c = data["concept"]
        topics[topic_id] = Topic(
            id=topic_id,
            title=data["title"],
            concept=Concept(c["what"].strip(), tuple(c["shows_up"]), tuple(c["pay_down"]), tuple(c["sources"])),
            question_ids=tuple(ids),
        )

    challenge_sets = _check_challenge_sets(raw_sets, questions, present, out)
    if out.problems:
        raise BankError(out.problems)
    return Bank(
        questions=MappingProxyType(questions),
        topics=MappingProxyType(topics),
        challenge_sets=tuple(challenge_sets),
    )


def _qid_at(data: Any, path: tuple) -> str | None:
    if len(path) >= 2 and path[0] in ("questions", "challenge_sets") and isinstance(path[1], int):
        try:
            item = data[path[0]][path[1]]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            return item["id"]
    return None


def _check_challenge_sets(
    raw_sets: list[tuple[str, dict[tuple, int], int, dict]],
    questions: Mapping[str, Question],
    present: set[str],
    out: _Collector,
) -> list[ChallengeSet]:
    sets: list[ChallengeSet] = []
    used: dict[str, str] = {}
    set_ids: set[str] = set()
    for name, lines, i, cs in raw_sets:
        sid = cs["id"]

        def flag(fld: str, msg: str, _where: tuple = (name, lines, ("challenge_sets", i), sid)) -> None:
            out.at(*_where, fld, msg)

        ok = True
        if sid in set_ids:
            flag("id", "duplicate challenge set id")
            ok = False
        set_ids.add(sid)
        found: list[Question] = []
        for j, qid in enumerate(cs["questions"]):
            q = questions.get(qid)
            if q is None:
                if qid not in present:  # an invalid question already has its own problem reported
                    flag(f"questions.{j}", f"unknown question id '{qid}'")
                ok = False
                continue
            if qid in used and used[qid] != sid:
                flag(f"questions.{j}", f"question '{qid}' is already in challenge set '{used[qid]}'")
                ok = False
            used.setdefault(qid, sid)
            if q.difficulty not in CHALLENGE_DIFFICULTIES:
                flag(f"questions.{j}", f"question '{qid}' is {q.difficulty}; challenge items are "
                     "intermediate, advanced or expert")
                ok = False
            found.append(q)
        if len(found) == len(cs["questions"]):
            types = [q.type for q in found]
            missing = [t for t in TYPES if t not in types]
            if missing:
                flag("questions", f"needs one question of each type; missing {', '.join(missing)}")
                ok = False
            ranks = [difficulty_rank(q.difficulty) for q in found]
            if ranks != sorted(ranks):
                flag("questions", "difficulty must not decrease along the set")
                ok = False
        if ok:
            sets.append(ChallengeSet(sid, cs["title"], tuple(cs["questions"])))
    return sets
