"""The validated-bank cache: used only when nothing it depends on changed, never trusted blindly."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from bot import bank_cache
from bot.bank import BankError, bank_files, load_bank, validate_bank
from bot.cli import cmd_bank_check
from bot.config import Settings
from tests.fakes.bank import write_bank


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_bank(tmp_path / "bank")


def counting_load(root: Path, cache: Path, scale: float = 1.0):
    """load_bank through the cache, counting the full validations it needed."""
    files = bank_files(root)
    calls = []

    def validate():
        calls.append(1)
        return validate_bank(files, scale)

    return bank_cache.load_cached(files, scale, cache, validate), len(calls)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("bank-*.json"))


def test_a_warm_load_reads_the_same_bank_without_validating(root, tmp_path):
    cache = tmp_path / "cache"
    cold, validations = counting_load(root, cache)
    assert validations == 1 and len(entries(cache)) == 1
    warm, validations = counting_load(root, cache)
    assert validations == 0
    assert warm == cold == load_bank(root)  # every question, topic and set, field by field
    assert json.loads(entries(cache)[0].read_text())["format"] == bank_cache.FORMAT  # plain JSON


def test_any_change_to_a_file_invalidates(root, tmp_path):
    cache = tmp_path / "cache"
    counting_load(root, cache)
    f = root / "topics" / "alpha.yaml"
    f.write_text(f.read_text().replace("Question 3 about alpha?", "Question 3 about alpha, edited?"))
    bank, validations = counting_load(root, cache)
    assert validations == 1 and bank.question("alpha-03").prompt == "Question 3 about alpha, edited?"
    assert len(entries(cache)) == 1  # the entry is replaced, not piled up


def test_a_new_file_the_scale_or_the_loader_code_invalidate(root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    counting_load(root, cache)
    assert counting_load(root, cache, scale=0.5)[1] == 1  # another scale, another entry
    (root / "challenges" / "more.yaml").write_text((root / "challenges" / "sets.yaml").read_text()
                                                    .replace("cs-", "cx-"))
    with pytest.raises(BankError):  # the copied sets reuse questions: invalid, and never cached
        counting_load(root, cache)
    (root / "challenges" / "more.yaml").unlink()
    assert counting_load(root, cache)[1] == 0
    monkeypatch.setattr(bank_cache, "_loader_fingerprint", lambda: "another loader version")
    assert counting_load(root, cache)[1] == 1


def test_an_invalid_bank_is_never_cached(root, tmp_path):
    cache = tmp_path / "cache"
    (root / "topics" / "beta.yaml").write_text("topic: beta\n")
    for _ in range(2):
        with pytest.raises(BankError):
            load_bank(root, cache_dir=cache)
    assert entries(cache) == []


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"\xff\xfe", b'{"format": 1, "key": "x"}', b"[1, 2]"])
def test_a_corrupt_entry_is_ignored_and_rebuilt(root, tmp_path, garbage):
    cache = tmp_path / "cache"
    counting_load(root, cache)
    [entry] = entries(cache)
    entry.write_bytes(garbage)
    bank, validations = counting_load(root, cache)
    assert validations == 1 and len(bank.questions) == 20
    assert counting_load(root, cache)[1] == 0  # rebuilt


def test_a_matching_key_with_broken_data_is_rebuilt(root, tmp_path):
    cache = tmp_path / "cache"
    counting_load(root, cache)
    [entry] = entries(cache)
    data = json.loads(entry.read_text())
    del data["bank"]["questions"][0]["prompt"]
    entry.write_text(json.dumps(data))
    assert counting_load(root, cache)[1] == 1


def test_an_unwritable_cache_folder_only_costs_the_speed(root, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    bank, validations = counting_load(root, blocker / "cache")
    assert validations == 1 and len(bank.questions) == 20


def test_bank_check_always_validates_the_files_themselves(root, tmp_path):
    cache = tmp_path / "cache"
    load_bank(root, cache_dir=cache)
    [entry] = entries(cache)
    data = json.loads(entry.read_text())
    data["bank"]["questions"] = data["bank"]["questions"][:3]  # a stale entry under the right key
    entry.write_text(json.dumps(data))
    assert len(load_bank(root, cache_dir=cache).questions) == 3  # start-up trusts the key...
    out = io.StringIO()
    assert cmd_bank_check([root], out, io.StringIO()) == 0
    assert out.getvalue().startswith("OK: 20 questions")  # ...the check reads every file


def test_concurrent_writers_leave_one_whole_entry(root, tmp_path):
    cache = tmp_path / "cache"
    files = bank_files(root)
    bank = validate_bank(files)
    key = bank_cache.cache_key(files, 1.0)
    entry = bank_cache.entry_path(files, 1.0, cache)
    seen, errors = [], []
    start = threading.Barrier(4)

    def writer():
        start.wait()
        for _ in range(15):
            bank_cache._write(entry, key, bank)

    def reader():
        start.wait()
        for _ in range(30):
            try:
                seen.append(bank_cache._read(entry, key))
            except Exception as exc:  # noqa: BLE001 - any exception at all is the failure
                errors.append(exc)

    threads = [threading.Thread(target=t) for t in (writer, writer, reader, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and all(b is None or b == bank for b in seen)
    assert entries(cache) == [entry] and list(cache.glob("*.tmp")) == []
    assert bank_cache._read(entry, key) == bank


def test_the_cache_folder_setting(tmp_path):
    assert Settings.from_mapping({"XDG_CACHE_HOME": str(tmp_path)}).bank_cache_dir == tmp_path / "mldebt"
    assert Settings.from_mapping({"HOME": str(tmp_path)}).bank_cache_dir == tmp_path / ".cache" / "mldebt"
    assert Settings.from_mapping({"MLDEBT_CACHE_DIR": str(tmp_path / "c")}).bank_cache_dir == tmp_path / "c"
    assert Settings.from_mapping({"MLDEBT_CACHE_DIR": "off"}).bank_cache_dir is None
