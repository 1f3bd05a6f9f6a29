"""slack_sdk's installation-store and state-store interfaces on the project's database: the same contract
on SQLite and PostgreSQL, with two stores on one database standing in for two replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation

from adapters.slack.oauth import SqlInstallationStore, SqlOAuthStateStore, TokenCipher, TokenKeyError
from bot.clock import FakeClock
from bot.store import SqliteStore
from bot.store.postgres import PostgresStore

KEY = Fernet.generate_key().decode()


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request, tmp_path: Path):
    """A not yet opened store on this test's one database (each call: another process's store)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return lambda: PostgresStore(url) if url else SqliteStore(tmp_path / "quiz.sqlite3")


@pytest.fixture
async def stores(new_store):
    """Two stores on one database, as two replicas would have."""
    first, second = new_store(), new_store()
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


def installation(team: str = "T0AAA", token: str = "xoxb-aaa", *, enterprise: str | None = None,
                 org_wide: bool = False) -> Installation:
    return Installation(app_id="A0TEST", enterprise_id=enterprise, team_id=None if org_wide else team,
                        team_name=f"team {team}", bot_token=token, bot_id="B0BOT", bot_user_id="U0BOT",
                        bot_scopes="commands,chat:write", user_id="U0ADMIN", is_enterprise_install=org_wide)


async def test_an_install_is_found_by_any_replica_replaced_by_a_reinstall_and_deleted(stores):
    clock = FakeClock()
    one, two = (SqlInstallationStore(s, clock, TokenCipher(KEY)) for s in stores)
    assert await one.async_find_bot(enterprise_id=None, team_id="T0AAA") is None
    await one.async_save(installation())
    bot = await two.async_find_bot(enterprise_id=None, team_id="T0AAA")
    assert (bot.team_id, bot.bot_token, bot.bot_user_id, bot.bot_scopes) == ("T0AAA", "xoxb-aaa", "U0BOT",
                                                                           ["commands", "chat:write"])
    found = await two.async_find_installation(enterprise_id=None, team_id="T0AAA")
    assert (found.team_id, found.bot_token, found.user_token) == ("T0AAA", "xoxb-aaa", None)
    async with stores[0].transaction() as tx:
        [row] = await tx.installations("slack")
    assert row.bot_token != "xoxb-aaa" and "xoxb" not in row.bot_token  # encrypted at rest
    assert row.installer_user_id == "U0ADMIN"

    clock.advance(60)
    await two.async_save(installation(token="xoxb-aaa-2"))  # reinstalled: one row, the new token
    async with stores[1].transaction() as tx:
        rows = await tx.installations("slack")
    assert len(rows) == 1 and rows[0].installed_at == row.installed_at + 60
    assert (await one.async_find_bot(enterprise_id=None, team_id="T0AAA")).bot_token == "xoxb-aaa-2"
    assert (await one.row_of_team("T0AAA")).team_id == "T0AAA" and await one.row_of_team("T0BBB") is None

    await one.async_save(installation("T0BBB", "xoxb-bbb"))
    await two.async_delete_all(enterprise_id=None, team_id="T0AAA")
    assert await one.async_find_bot(enterprise_id=None, team_id="T0AAA") is None
    assert (await one.async_find_bot(enterprise_id=None, team_id="T0BBB")).bot_token == "xoxb-bbb"
    assert await one.delete("T0BBB") == 1 and await one.delete("T0BBB") == 0


async def test_workspace_and_org_wide_installs_of_an_enterprise_are_apart(stores):
    store = SqlInstallationStore(stores[0], FakeClock(), TokenCipher(KEY))
    await store.async_save(installation("T0AAA", "xoxb-ws", enterprise="E0ORG"))
    await store.async_save(installation(token="xoxb-org", enterprise="E0ORG", org_wide=True))
    ws = await store.async_find_bot(enterprise_id="E0ORG", team_id="T0AAA")
    org = await store.async_find_bot(enterprise_id="E0ORG", team_id="T0AAA", is_enterprise_install=True)
    assert (ws.bot_token, ws.enterprise_id, ws.team_id) == ("xoxb-ws", "E0ORG", "T0AAA")
    assert (org.bot_token, org.team_id, org.is_enterprise_install) == ("xoxb-org", None, True)


async def test_a_state_is_consumed_once_by_whichever_replica_gets_it(stores):
    clock = FakeClock()
    one, two = (SqlOAuthStateStore(s, clock) for s in stores)
    state = await one.async_issue()
    assert len(state) >= 40 and state != await one.async_issue()
    results = await asyncio.gather(*(store.async_consume(state) for store in (one, two) * 5))
    assert results.count(True) == 1
    assert await one.async_consume(state) is False and await two.async_consume("") is False
    assert await two.async_consume("never-issued") is False


async def test_a_state_expires_and_abandoned_ones_are_cleared(stores):
    clock = FakeClock()
    states = SqlOAuthStateStore(stores[0], clock, expiration_seconds=600)
    late, abandoned = await states.async_issue(), await states.async_issue()
    clock.advance(600)
    assert await states.async_consume(late) is False
    await states.async_issue()  # a new install clears the abandoned state
    async with stores[1].transaction() as tx:
        assert await tx.consume_oauth_state(abandoned, clock.now().timestamp()) is False


async def test_a_new_key_re_encrypts_every_token_and_a_missing_key_is_a_start_up_error(stores):
    old, new = KEY, Fernet.generate_key().decode()
    clock = FakeClock()
    await SqlInstallationStore(stores[0], clock, TokenCipher(old)).async_save(installation())
    await SqlInstallationStore(stores[0], clock, TokenCipher(old)).async_save(installation("T0BBB", "xoxb-bbb"))

    with pytest.raises(TokenKeyError) as refused:
        await SqlInstallationStore(stores[1], clock, TokenCipher(new)).reencrypt()
    assert str(refused.value) == ("MLDEBT_TOKEN_KEY cannot decrypt the bot tokens of 2 of 2 Slack installs: keep the "
                                  "key they were stored with in MLDEBT_TOKEN_KEY, after the new one (comma-separated)")

    rotating = SqlInstallationStore(stores[1], clock, TokenCipher(f"{new},{old}"))
    assert await rotating.reencrypt() == 2
    assert await rotating.reencrypt() == 0  # all under the new key already
    only_new = SqlInstallationStore(stores[0], clock, TokenCipher(new))
    assert (await only_new.async_find_bot(enterprise_id=None, team_id="T0BBB")).bot_token == "xoxb-bbb"
    assert await SqlInstallationStore(stores[0], clock, TokenCipher(old)).async_find_bot(
        enterprise_id=None, team_id="T0AAA") is None  # the old key alone no longer reads them
