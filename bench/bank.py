"""Bank: load and validate a generated 2,000-question bank.

The bank follows the pattern of tests/fakes/bank.py, scaled up: 20 topics x 100 questions, a worked
solution on every other question, a code block on the command_output ones, and 12 challenge sets
per topic (one question of each type, intermediate to expert, each question in one set). Its prose
is generated at about the length of the shipped questions, so the files weigh what real ones would.
It is written once to a temp dir under bench/results/ and loaded with `bot.bank.load_bank` (the
measured figure). The reference, in the same run on the same files: plain `yaml.safe_load` of every
file, so the ratio is the price of validation and line numbers; and libyaml's CSafeLoader, the
parser the loader could use. Two what-if runs show what a change to bot/bank.py would buy: libyaml
swapped in for the pure-Python parser (everything else unchanged), and on top of that the JSON-Schema
pass skipped (the floor a faster schema validator would approach). The shipped bank's own load time
is measured too, for scale.

The measured figure is the start-up path: `load_bank` with a cache folder (bot/bank_cache.py). Cold:
the cache is empty, so the bank is parsed, validated and written to the cache; warm: the files are
unchanged, so their hashes match and the validated bank is read back from the cache.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import yaml

from bot.bank import DIFFICULTIES, LETTERS, TYPES, BankError, default_bank_path, load_bank

from .common import RESULTS, median, report, verdict

TARGET_S = 0.5
WORDS = (
    "feature pipeline model training serving data schema drift monitor label threshold config owner team "
    "release rollback metric dashboard cache join table version registry experiment notebook job alert "
    "signal consumer upstream downstream embedding vocabulary calibration batch stream backfill contract "
    "test budget latency quota snapshot lineage replay shadow canary holdout baseline retrain glue code "
    "flag default timeout retry partition window aggregate skew leak loop dependency interface"
).split()


# hints draw on their own words: a hint that shared words with one choice only would be rejected
# by the loader's hint-leak rule, as in a real bank
HINT_WORDS = (
    "recall which section compares what each option assumes then check first second whether "
    "reasoning step quantity source rule paper"
).split()


def prose(rng: random.Random, words: int, vocabulary: list[str] = WORDS) -> str:
    """Sentences of lowercase vocabulary (no lone capital letters, which the loader would reject)."""
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        n = rng.randint(8, 16)
        out.append("The " + " ".join(rng.choice(vocabulary) for _ in range(n)) + ".")
    return " ".join(out)


def question(rng: random.Random, topic: str, n: int) -> dict:
    qtype, difficulty = TYPES[n % 5], DIFFICULTIES[(n // 5) % 5]
    answer = LETTERS[rng.randrange(4)]
    q: dict = {
        "id": f"{topic}-q{n:03d}",
        "type": qtype,
        "difficulty": difficulty,
        "prompt": f"Question {n} about {topic}: " + prose(rng, 22),
        "choices": {letter: f"{letter.lower()}{n} " + prose(rng, 14) for letter in LETTERS},
        "answer": answer,
        "hint": prose(rng, 16, HINT_WORDS),
        "explanation": prose(rng, 72),
        "references": ["Sculley et al. 2015, sec. 2", "Breck et al. 2017, tests for features and data"][: 1 + n % 2],
    }
    if qtype == "command_output":
        q["code"] = "\n".join(f"$ mlctl {rng.choice(WORDS)} --{rng.choice(WORDS)} {i}" for i in range(4)) + "\n"
    if n % 2 == 0:
        q["solution"] = {
            "steps": [prose(rng, 20) for _ in range(3)],
            "quick_check": prose(rng, 15),
            "common_mistakes": {x: prose(rng, 16) for x in LETTERS if x != answer},
        }
    return q


# Per block of 25 questions (types cycle every 1, difficulties every 5): three sets that each hold
# every type once, with difficulty never decreasing, and no question in two sets.
SET_OFFSETS = ((10, 11, 17, 18, 24), (12, 13, 14, 15, 16), (19, 20, 21, 22, 23))


def write_bank(root: Path, topics: int, per_topic: int, seed: int = 1) -> tuple[int, int, list[Path]]:
    """Write the bank; return (questions, challenge sets, files)."""
    rng = random.Random(seed)
    (root / "topics").mkdir(parents=True)
    (root / "challenges").mkdir()
    files: list[Path] = []
    n_sets = 0
    for t in range(1, topics + 1):
        topic = f"topic-{t:02d}"
        doc = {
            "topic": topic,
            "title": f"Topic {t}",
            "concept": {"what": prose(rng, 60), "shows_up": [prose(rng, 15) for _ in range(3)],
                        "pay_down": [prose(rng, 15) for _ in range(3)], "sources": ["Sculley et al. 2015"]},
            "questions": [question(rng, topic, n) for n in range(per_topic)],
        }
        files.append(root / "topics" / f"{topic}.yaml")
        files[-1].write_text(yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True))
        sets = [{"id": f"cs-{topic}-{block}-{k}", "title": f"Set {k} of block {block}, topic {t}",
                 "questions": [f"{topic}-q{block * 25 + off:03d}" for off in offsets]}
                for block in range(per_topic // 25) for k, offsets in enumerate(SET_OFFSETS)]
        if sets:
            n_sets += len(sets)
            files.append(root / "challenges" / f"sets-{topic}.yaml")
            files[-1].write_text(yaml.safe_dump({"challenge_sets": sets}, sort_keys=False))
    return topics * per_topic, n_sets, files


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(smoke: bool = False, runs: int = 3) -> int:
    topics, per_topic = (2, 25) if smoke else (20, 100)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp_name:
        root = Path(tmp_name) / "bank"
        questions, sets, files = write_bank(root, topics, per_topic)
        size = sum(f.stat().st_size for f in files)
        bank = load_bank(root)  # warm-up: the schema file is read and cached once per process
        assert len(bank.questions) == questions and len(bank.challenge_sets) == sets

        def plain(loader: type) -> None:
            for f in files:
                yaml.load(f.read_text("utf-8"), Loader=loader)  # noqa: S506 - safe loaders only

        csafe = getattr(yaml, "CSafeLoader", None)
        cache = Path(tmp_name) / "cache"
        per_run = []
        for _ in range(runs):
            shutil.rmtree(cache, ignore_errors=True)
            per_run.append({
                "cold_cache_s": timed(lambda: load_bank(root, cache_dir=cache)),
                "warm_cache_s": timed(lambda: load_bank(root, cache_dir=cache)),
                "load_bank_s": timed(lambda: load_bank(root)),
                "safe_load_s": timed(lambda: plain(yaml.SafeLoader)),
                "csafe_load_s": timed(lambda: plain(csafe)) if csafe else None,
                "load_bank_libyaml_s": timed(lambda: _with_libyaml(root)) if csafe else None,
                "load_bank_libyaml_no_schema_s": timed(lambda: _with_libyaml(root, schema=False)) if csafe else None,
                "shipped_load_bank_s": timed(_shipped),
            })
    warm_s = median([r["warm_cache_s"] for r in per_run])
    cold_s = median([r["cold_cache_s"] for r in per_run])
    load_s = median([r["load_bank_s"] for r in per_run])
    safe_s = median([r["safe_load_s"] for r in per_run])
    csafe_s = median([r["csafe_load_s"] for r in per_run]) if csafe else float("nan")
    libyaml_s = median([r["load_bank_libyaml_s"] for r in per_run]) if csafe else float("nan")
    no_schema_s = median([r["load_bank_libyaml_no_schema_s"] for r in per_run]) if csafe else float("nan")
    shipped_s = median([r["shipped_load_bank_s"] for r in per_run])
    shipped_n = _shipped_questions()
    rows = [
        ("questions / challenge sets / files", f"{questions:,} / {sets} / {len(files)}", "2,000 / - / -",
         "ok" if not smoke else "smoke"),
        ("YAML size", f"{size / 2**20:.2f} MB ({size / questions / 1024:.1f} KB a question)", "-", "-"),
        ("load_bank, warm cache (files unchanged), median", f"{warm_s:.3f} s", f"<= {TARGET_S} s",
         verdict(warm_s <= TARGET_S)),
        ("load_bank, cold cache (validate + write the cache), median", f"{cold_s:.3f} s", "report", "-"),
        ("load_bank without a cache (parse + validate), median", f"{load_s:.3f} s", "-", "-"),
        ("reference: yaml.safe_load of the same files", f"{safe_s:.3f} s", "-", "-"),
        ("load_bank / safe_load", f"{load_s / safe_s:.2f}x", "-", "-"),
        ("reference: libyaml CSafeLoader of the same files", f"{csafe_s:.3f} s", "-", "-"),
        ("what-if: load_bank parsing with libyaml", f"{libyaml_s:.3f} s", f"<= {TARGET_S} s", "-"),
        ("what-if: libyaml, JSON-Schema pass skipped", f"{no_schema_s:.3f} s", f"<= {TARGET_S} s", "-"),
        (f"for scale: shipped bank ({shipped_n} questions), load_bank", f"{shipped_s:.3f} s", "-", "-"),
    ]
    report("bank", rows, {
        "topics": topics, "questions": questions, "challenge_sets": sets, "files": len(files), "yaml_bytes": size,
        "runs": runs, "warm_cache_s": warm_s, "cold_cache_s": cold_s, "load_bank_s": load_s, "safe_load_s": safe_s, "ratio_load_to_safe_load": load_s / safe_s,
        "csafe_load_s": csafe_s, "load_bank_libyaml_s": libyaml_s, "load_bank_libyaml_no_schema_s": no_schema_s,
        "shipped_questions": shipped_n, "shipped_load_bank_s": shipped_s, "per_run": per_run,
    }, smoke)
    return 0


class _NoSchema:
    """Stands in for the JSON-Schema validator class: accepts everything."""

    def __init__(self, schema: object) -> None:
        pass

    def iter_errors(self, data: object) -> list:
        return []


def _with_libyaml(root: Path, schema: bool = True) -> None:
    """load_bank with libyaml's parser in place of PyYAML's pure-Python one (bot.bank builds a
    yaml.SafeLoader to get nodes with line numbers; CSafeLoader offers the same node API)."""
    with mock.patch.object(yaml, "SafeLoader", yaml.CSafeLoader):
        if schema:
            load_bank(root)
            return
        with mock.patch("jsonschema.validators.validator_for", return_value=_NoSchema):
            load_bank(root)


def _shipped() -> None:
    """The shipped bank (it may be mid-edit: an invalid bank is still fully parsed and checked)."""
    try:
        load_bank()
    except BankError:
        pass


def _shipped_questions() -> int:
    files = sorted((default_bank_path() / "topics").glob("*.yaml"))
    return sum(len((yaml.safe_load(f.read_text("utf-8")) or {}).get("questions") or []) for f in files)

