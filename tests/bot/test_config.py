from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, SettingsError


def load(tmp_path: Path, **env: str) -> Settings:
    base = {"MLDEBT_DATABASE": str(tmp_path / "db.sqlite3")}
    return Settings.from_mapping({**base, **env})


def test_defaults(tmp_path):
    s = load(tmp_path)
    assert s.timezone == "UTC" and s.time_limit_scale == 1.0 and s.celebrate is True
    assert not s.slack_enabled and not s.discord_enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLDEBT_TIMEZONE": "Mars/Olympus"},
         "MLDEBT_TIMEZONE: unknown IANA time zone 'Mars/Olympus' (e.g. Europe/Berlin)"),
        ({"SLACK_BOT_TOKEN": "not-a-token"}, "SLACK_BOT_TOKEN: must look like xoxb-..."),
        ({"SLACK_BOT_TOKEN": "xoxb-1-2-abc"},
         "SLACK_SIGNING_SECRET: required for HTTP mode when SLACK_BOT_TOKEN is set without SLACK_APP_TOKEN"),
        ({"SLACK_APP_TOKEN": "xapp-1-abc"}, "SLACK_BOT_TOKEN: required when other SLACK_* tokens are set"),
        ({"DISCORD_TOKEN": "abc"}, "DISCORD_TOKEN: must be a Discord bot token (three dot-separated parts)"),
        ({"MLDEBT_TIME_LIMIT_SCALE": "fast"},
         "MLDEBT_TIME_LIMIT_SCALE: must be a number above 0 and at most 10, got 'fast'"),
        ({"MLDEBT_HTTP_PORT": "99999"}, "MLDEBT_HTTP_PORT: must be a port number 1-65535, got '99999'"),
        ({"MLDEBT_CELEBRATE": "maybe"}, "MLDEBT_CELEBRATE: must be true or false"),
        ({"MLDEBT_LOG_LEVEL": "LOUD"}, "MLDEBT_LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path, env, message):
    with pytest.raises(SettingsError) as exc:
        load(tmp_path, **env)
    assert str(exc.value) == message


def test_unwritable_database(tmp_path):
    with pytest.raises(SettingsError) as exc:
        Settings.from_mapping({"MLDEBT_DATABASE": str(tmp_path / "missing" / "db.sqlite3")})
    assert str(exc.value).startswith("MLDEBT_DATABASE: cannot write ")


def test_env_file_under_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MLDEBT_TIMEZONE=Europe/Berlin\nMLDEBT_TIME_LIMIT_SCALE=0.5\n")
    s = Settings.load({"MLDEBT_DATABASE": str(tmp_path / "x.sqlite3"), "MLDEBT_TIME_LIMIT_SCALE": "2"}, env_file)
    assert s.timezone == "Europe/Berlin" and s.time_limit_scale == 2.0


def test_tokens_are_not_in_repr(tmp_path):
    s = load(tmp_path, SLACK_BOT_TOKEN="xoxb-1-2-secretvalue", SLACK_SIGNING_SECRET="abcdef0123456789abcd")
    assert "secretvalue" not in repr(s) and "abcdef0123456789abcd" not in repr(s)


def test_a_postgresql_url_selects_the_postgresql_store(tmp_path):
    from bot.store import SqliteStore, store_for
    from bot.store.postgres import PostgresStore

    url = "postgresql://mldebt:secret@db.internal:5432/mldebt"
    s = Settings.from_mapping({"MLDEBT_DATABASE": url})
    assert s.database_url == url and "secret" not in repr(s)  # no writable-folder check for a URL
    assert isinstance(store_for(s.database_url), PostgresStore)
    plain = Settings.from_mapping({"MLDEBT_DATABASE": str(tmp_path / "db.sqlite3")})
    assert plain.database_url is None and isinstance(store_for(plain.database), SqliteStore)


def test_slack_post_rate_is_calls_per_second_or_unset(tmp_path):
    assert load(tmp_path).slack_post_rate is None
    assert load(tmp_path, SLACK_POST_RATE="50").slack_post_rate == 50.0
    for bad in ("0", "fast", "-3"):
        with pytest.raises(SettingsError) as exc:
            load(tmp_path, SLACK_POST_RATE=bad)
        assert str(exc.value) == f"SLACK_POST_RATE: must be calls per second above 0, got {bad!r}"
