"""A cache of the validated bank, so a start-up does not parse and validate unchanged files again.

Parsing YAML with line numbers and checking every rule costs about a second at 2,000 questions;
reading the same bank back as JSON costs a small fraction of that. The cache entry is keyed by
everything the result depends on: the bytes of every bank file (and their order), the time-limit
scale, the loader's own source and the schema, and the versions of PyYAML and jsonschema. Any
change there makes the key differ and the bank is validated again in full. Only a bank that passed
validation is cached; an invalid one is never stored, so its problems are reported on every run.

The entry is plain JSON data, never pickled objects. A missing, unreadable or corrupt entry is
ignored and rebuilt; a cache folder that cannot be written only costs the speed-up. Two processes
may write the same entry at once: each writes a temporary file in the folder and renames it into
place, which is atomic, so a reader sees one whole entry or the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .bank import Bank, ChallengeSet, Concept, Question, Solution, Topic, _schema

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the JSON layout below changes
# the modules whose code decides what a valid bank is; a change to any of them invalidates the cache
_LOADER_SOURCES = ("bank.py", "bank_quality.py", "bank_cache.py")


def _loader_fingerprint() -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    here = Path(__file__).parent
    for name in _LOADER_SOURCES:
        path = here / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    h.update(json.dumps(_schema(), sort_keys=True).encode())
    for package in ("PyYAML", "jsonschema"):
        try:
            h.update(f"{package} {metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package} ?\n".encode())
    return h.hexdigest()


def cache_key(files: list[Path], time_limit_scale: float) -> str:
    """The content key: changes whenever a file's bytes, the file list, the scale or the loader change."""
    h = hashlib.sha256(_loader_fingerprint().encode())
    h.update(f"scale {time_limit_scale!r}\n".encode())
    for path in files:
        h.update(str(path).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def entry_path(files: list[Path], time_limit_scale: float, cache_dir: Path) -> Path:
    """One entry per bank location and scale, overwritten when its content changes (the folder does
    not grow with every edit)."""
    where = hashlib.sha256(("\0".join(map(str, files)) + f"\0{time_limit_scale!r}").encode()).hexdigest()
    return cache_dir / f"bank-{where[:24]}.json"


def load_cached(files: list[Path], time_limit_scale: float, cache_dir: Path, validate: Callable[[], Bank]) -> Bank:
    """The bank from the cache when its key matches, else `validate()` (which raises BankError on an
    invalid bank) and the result stored for next time."""
    try:
        key = cache_key(files, time_limit_scale)
    except OSError:
        return validate()  # a file could not be read: the loader reports it properly
    entry = entry_path(files, time_limit_scale, cache_dir)
    bank = _read(entry, key)
    if bank is not None:
        return bank
    bank = validate()
    _write(entry, key, bank)
    return bank


def _read(entry: Path, key: str) -> Bank | None:
    try:
        data = json.loads(entry.read_text("utf-8"))
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        return from_data(data["bank"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("bank cache %s unreadable (%s); validating the bank again", entry, type(exc).__name__)
        return None


def _write(entry: Path, key: str, bank: Bank) -> None:
    body = json.dumps({"format": FORMAT, "key": key, "bank": to_data(bank)}, ensure_ascii=False,
                      separators=(",", ":"))
    tmp_name = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=entry.parent, prefix=entry.name,
                                         suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
            tmp.write(body)
        os.replace(tmp_name, entry)
        tmp_name = None
    except OSError as exc:
        log.info("bank cache not written to %s (%s)", entry.parent, exc.strerror or exc)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


# -- plain data <-> Bank ------------------------------------------------------------------------


def to_data(bank: Bank) -> dict[str, Any]:
    questions = []
    for q in bank.questions.values():
        s = q.solution
        questions.append({
            "id": q.id, "topic": q.topic, "type": q.type, "difficulty": q.difficulty, "prompt": q.prompt,
            "choices": list(q.choices), "answer": q.answer, "hint": q.hint, "explanation": q.explanation,
            "references": list(q.references), "time_limit": q.time_limit, "code": q.code, "source": q.source,
            "solution": None if s is None else {"steps": list(s.steps), "quick_check": s.quick_check,
                                                "common_mistakes": dict(s.common_mistakes)},
        })
    topics = [{"id": t.id, "title": t.title, "question_ids": list(t.question_ids),
               "concept": {"what": t.concept.what, "shows_up": list(t.concept.shows_up),
                           "pay_down": list(t.concept.pay_down), "sources": list(t.concept.sources)}}
              for t in bank.topics.values()]
    sets = [{"id": c.id, "title": c.title, "question_ids": list(c.question_ids)} for c in bank.challenge_sets]
    return {"questions": questions, "topics": topics, "challenge_sets": sets}


def from_data(data: dict[str, Any]) -> Bank:
    questions: dict[str, Question] = {}
    for q in data["questions"]:
        s = q["solution"]
        solution = None if s is None else Solution(tuple(s["steps"]), s["quick_check"],
                                                   MappingProxyType(dict(s["common_mistakes"])))
        questions[q["id"]] = Question(
            id=q["id"], topic=q["topic"], type=q["type"], difficulty=q["difficulty"], prompt=q["prompt"],
            choices=tuple(q["choices"]), answer=q["answer"], hint=q["hint"], explanation=q["explanation"],
            references=tuple(q["references"]), time_limit=int(q["time_limit"]), code=q["code"],
            solution=solution, source=q["source"])
    topics = {}
    for t in data["topics"]:
        c = t["concept"]
        topics[t["id"]] = Topic(t["id"], t["title"], Concept(c["what"], tuple(c["shows_up"]), tuple(c["pay_down"]),
                                                             tuple(c["sources"])), tuple(t["question_ids"]))
    sets = tuple(ChallengeSet(c["id"], c["title"], tuple(c["question_ids"])) for c in data["challenge_sets"])
    return Bank(questions=MappingProxyType(questions), topics=MappingProxyType(topics), challenge_sets=sets)
