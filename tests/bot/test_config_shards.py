"""DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS: parsed once at start-up, every mistake one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, SettingsError


def load(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_mapping({"MLDEBT_DATABASE": str(tmp_path / "db.sqlite3"), **env})


def test_unset_is_unsharded(tmp_path):
    s = load(tmp_path)
    assert s.discord_shard_count is None and s.discord_shard_ids is None


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        ("4", "0-3", (0, 1, 2, 3)),
        ("4", "0,2", (0, 2)),
        ("8", "4-7", (4, 5, 6, 7)),
        ("8", " 6 , 0-1,3 ", (0, 1, 3, 6)),
        ("1", "0", (0,)),
        ("4", "", (0, 1, 2, 3)),  # a count alone: this process runs every shard
        ("3", None, (0, 1, 2)),
    ],
)
def test_shard_ids_are_ranges_and_lists(tmp_path, count, ids, expected):
    env = {"DISCORD_SHARD_COUNT": count} | ({"DISCORD_SHARD_IDS": ids} if ids is not None else {})
    s = load(tmp_path, **env)
    assert (s.discord_shard_count, s.discord_shard_ids) == (int(count), expected)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISCORD_SHARD_IDS": "0-3"},
         "DISCORD_SHARD_COUNT: required with DISCORD_SHARD_IDS: the total number of shards across all processes"),
        ({"DISCORD_SHARD_COUNT": "four"}, "DISCORD_SHARD_COUNT: must be a whole number from 1 to 100000, got 'four'"),
        ({"DISCORD_SHARD_COUNT": "0"}, "DISCORD_SHARD_COUNT: must be a whole number from 1 to 100000, got '0'"),
        ({"DISCORD_SHARD_COUNT": "-2"}, "DISCORD_SHARD_COUNT: must be a whole number from 1 to 100000, got '-2'"),
        ({"DISCORD_SHARD_COUNT": "9" * 40},
         f"DISCORD_SHARD_COUNT: must be a whole number from 1 to 100000, got {'9' * 32!r}"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0-4"},
         "DISCORD_SHARD_IDS: shard 4 is outside 0-3 (DISCORD_SHARD_COUNT is 4)"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "7"},
         "DISCORD_SHARD_IDS: shard 7 is outside 0-3 (DISCORD_SHARD_COUNT is 4)"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "3-1"},
         "DISCORD_SHARD_IDS: the range 3-1 runs backwards; write 1-3"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0-2,2"}, "DISCORD_SHARD_IDS: shard 2 is listed twice"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0..3"},
         "DISCORD_SHARD_IDS: must be shard numbers and ranges like 0-3 or 0,2, got '0..3'"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0,,1"},
         "DISCORD_SHARD_IDS: must be shard numbers and ranges like 0-3 or 0,2, got '0,,1'"),
        ({"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "-1"},
         "DISCORD_SHARD_IDS: must be shard numbers and ranges like 0-3 or 0,2, got '-1'"),
    ],
)
def test_bad_shard_settings_are_one_line_naming_the_setting(tmp_path, env, message):
    with pytest.raises(SettingsError) as exc:
        load(tmp_path, **env)
    assert str(exc.value) == message
