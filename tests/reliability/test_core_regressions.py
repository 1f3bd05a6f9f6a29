"""Regressions for core bugs the fault and abuse suite found: odd YAML keys and aliases in bank files,
time-zone names that are folders or too long, team names typed with combining marks, lone
surrogates in display names, and rejections that echoed unbounded input."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.bank import BankError, load_bank
from bot.clock import FakeClock
from bot.commands import handle_text
from bot.config import Settings, SettingsError
from bot.engine import QuizEngine
from bot.replies import Notice, Player, Rejected
from bot.store import SqliteStore
from tests.fakes.bank import make_bank

ADMIN = Player("slack", "T1", "UADMIN", "Admin")


@pytest_asyncio.fixture
async def engine(tmp_path: Path):
    store = SqliteStore(tmp_path / "quiz.sqlite3")
    await store.open()
    yield QuizEngine(store, make_bank(tmp_path / "bank"), FakeClock(), rng=random.Random(1))
    await store.close()


def load_or_bank_error(path: Path) -> None:
    try:
        load_bank(path)
    except BankError as exc:
        assert all(p.file == str(path) for p in exc.problems)


# -- 1. bank loader: a mapping mixing string keys with other keys (belongs in test_bank_fuzz.py) ---------
# bot/bank.py, load_bank (additionalProperties branch) and _schema_message both do
#     sorted(set(err.instance) - set(err.schema.get("properties", {})))
# which raises TypeError when the unknown keys are of different types (1 and 'foo', null and 'x').

@pytest.mark.parametrize("text", [
    "topic: x\n1: y\nfoo: z\n",                   # int key beside string keys
    "topic: x\n~: y\nfoo: z\n",                   # null key
    "topic: x\nno: y\nfoo: z\n",                  # YAML 1.1 boolean key
    "topic: x\n2001-01-01: y\nfoo: z\n",          # date key
])
def test_mixed_key_types_give_a_bank_error(tmp_path: Path, text: str):
    f = tmp_path / "gamma.yaml"
    f.write_text(text)
    load_or_bank_error(f)  # was: TypeError: '<' not supported between instances of 'str' and 'int'


any_key = st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.dates()
any_value = st.recursive(st.none() | st.integers() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_key, inner, max_size=4),
                         max_leaves=10)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(any_key, any_value, max_size=6))
def test_any_yaml_with_keys_of_any_type(tmp_path: Path, doc: dict):
    f = tmp_path / "gamma.yaml"
    f.write_text(yaml.safe_dump(doc))
    load_or_bank_error(f)


# -- 2. bank loader: YAML aliases make loading exponential (a "billion laughs" file) -----------------
# bot/bank.py _compose() walks the node graph, and an alias is the same node again, so n lines of
# `lN: &lN [*lN-1, *lN-1]` take 2^n steps: 20 lines 17 s, 30 lines hours. Low severity (bank files are
# written by maintainers), but `mldebt bank check` on such a file never finishes.

def test_aliases_do_not_blow_up_loading(tmp_path: Path):
    lines = ["l0: &l0 [x, x]"] + [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 20)]
    f = tmp_path / "gamma.yaml"
    f.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    load_or_bank_error(f)
    assert time.monotonic() - t0 < 1.0  # was 5-20 s for these 20 lines, doubling with each more


# -- 3. time zone names that name a folder of the zone database, or are too long -----------------
# bot/periods.py zone() catches ZoneInfoNotFoundError and ValueError only; ZoneInfo("Europe") raises
# IsADirectoryError and ZoneInfo("x" * 300) OSError (file name too long), so the exception escapes
# handle_text instead of becoming a Rejected reply. bot/config.py has the same except clause.

@pytest.mark.asyncio
@pytest.mark.parametrize("text", [
    "admin timezone Europe",
    "admin timezone Etc",
    "admin timezone " + "x" * 300,
    "daily set #quiz 09:00 Europe",
    "daily set #quiz 09:00 " + "x" * 300,
], ids=["tz-Europe", "tz-Etc", "tz-300x", "daily-Europe", "daily-300x"])
async def test_bad_time_zone_names_get_a_rejected_reply(engine: QuizEngine, text: str):
    [reply] = await handle_text(engine, ADMIN, text, is_admin=True)  # was: IsADirectoryError / OSError
    assert isinstance(reply, Rejected) and reply.message.startswith("Unknown time zone")


def test_a_folder_as_mldebt_timezone_is_a_settings_error(tmp_path: Path):
    with pytest.raises(SettingsError):  # was: IsADirectoryError
        Settings.from_mapping({"MLDEBT_TIMEZONE": "Europe", "MLDEBT_DATABASE": str(tmp_path / "q.sqlite3")})


# -- 4. team join does not normalise the name the way team create does (belongs in test_hostile_text.py)
# bot/community.py: create uses normalise_team_name (NFC), join only folds spaces, so a name typed the
# same way twice (an accent as a combining mark, as some keyboards send it) creates but cannot join.

@pytest.mark.asyncio
async def test_team_join_finds_a_team_typed_exactly_as_it_was_created(engine: QuizEngine):
    typed = "e\u0301quipe"
    [created] = await handle_text(engine, Player("slack", "T1", "U1", "A"), f"team create {typed}")
    assert isinstance(created, Notice)
    [joined] = await handle_text(engine, Player("slack", "T1", "U2", "B"), f"team join {typed}")
    assert joined == Notice("You joined team '\u00e9quipe'.")  # was: Rejected("There is no team called ...")


# -- 5. a display name with a lone surrogate (low: only a crafted JSON payload carries one) --------------
# JSON allows "\ud800"; json.loads gives a str SQLite cannot encode, and UnicodeEncodeError escapes
# the engine instead of the name being stored (replaced) or refused.

@pytest.mark.asyncio
async def test_a_lone_surrogate_in_a_display_name_is_not_an_exception(engine: QuizEngine):
    replies = await handle_text(engine, Player("slack", "T1", "U9", "bad\ud800name"), "leaderboard all")
    assert replies  # was: UnicodeEncodeError: 'utf-8' codec can't encode character '\ud800'


# -- 6. minor: some rejections echo the whole of what was typed --------------------------------------
# Most messages cut the echo ([:20], [:30], [:40], [:60]); these three do not, so 5,000 typed
# characters come back as a 5,000-character reply (Discord's message limit is 2,000; its adapter clips).

@pytest.mark.asyncio
@pytest.mark.parametrize("command", ["team join ", "learn ", "daily off <#"])
async def test_rejections_echo_a_bounded_part_of_the_input(engine: QuizEngine, command: str):
    [reply] = await handle_text(engine, ADMIN, command + "x" * 5000 + (">" if "<#" in command else ""),
                                is_admin=True)
    assert isinstance(reply, Rejected) and len(reply.message) < 300, len(reply.message)
