"""Settings of Slack in many workspaces: the app's credentials, HTTP mode only, and a usable token key,
each refused at start-up with one line that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.config import MAKE_KEY, Settings, SettingsError
from tests.adapters.console.test_console_cli import mldebt_command

KEY = Fernet.generate_key().decode()
OAUTH = {"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "0123456789abcdef0123456789abcdef",
         "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5", "MLDEBT_TOKEN_KEY": KEY}


def load(tmp_path: Path, **env: str | None) -> Settings:
    values = {"MLDEBT_DATABASE": str(tmp_path / "db.sqlite3"), **OAUTH, **env}
    return Settings.from_mapping({k: v for k, v in values.items() if v is not None})


def test_oauth_mode_needs_no_bot_token_and_keeps_its_secrets_out_of_repr(tmp_path):
    s = load(tmp_path, MLDEBT_TOKEN_KEY=f"{KEY},{Fernet.generate_key().decode()}",
             SLACK_REDIRECT_URI="https://mldebt.example.org/slack/oauth_redirect")
    assert s.slack_oauth and s.slack_enabled and s.slack_bot_token is None
    assert s.slack_redirect_uri == "https://mldebt.example.org/slack/oauth_redirect"
    assert KEY not in repr(s) and OAUTH["SLACK_CLIENT_SECRET"] not in repr(s)


@pytest.mark.parametrize(("env", "message"), [
    ({"MLDEBT_TOKEN_KEY": None},
     f"MLDEBT_TOKEN_KEY: required to encrypt the workspaces' bot tokens; make one with: {MAKE_KEY}"),
    ({"MLDEBT_TOKEN_KEY": "not-a-key"}, "MLDEBT_TOKEN_KEY: is not a Fernet key (comma-separated keys for rotation, "
                                        f"newest first); make one with: {MAKE_KEY}"),
    ({"MLDEBT_TOKEN_KEY": f"{KEY},short"}, "MLDEBT_TOKEN_KEY: is not a Fernet key (comma-separated keys for "
                                           f"rotation, newest first); make one with: {MAKE_KEY}"),
    ({"SLACK_APP_TOKEN": "xapp-1-abc"}, "SLACK_APP_TOKEN: installs in many workspaces run in HTTP mode only (the "
                                        "install pages and Slack's redirect need a public URL): unset SLACK_APP_TOKEN"),
    ({"SLACK_BOT_TOKEN": "xoxb-1-2-abc"}, "SLACK_CLIENT_ID: set either SLACK_BOT_TOKEN (one workspace) or "
                                          "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (installs in many workspaces), "
                                          "not both"),
    ({"SLACK_CLIENT_SECRET": None}, "SLACK_CLIENT_SECRET: required for installs in many workspaces (SLACK_CLIENT_ID "
                                    "and SLACK_CLIENT_SECRET, from Basic Information > App Credentials)"),
    ({"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET: required for installs in many workspaces "
                                     "(SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, from Basic Information > App "
                                     "Credentials)"),
    ({"SLACK_BADGE_USERGROUP_ID": "S0MASTERY"}, "SLACK_BADGE_USERGROUP_ID: names a user group of one workspace: "
                                                "leave it empty when the app is installed in many workspaces"),
    ({"SLACK_CLIENT_ID": "my-app"}, "SLACK_CLIENT_ID: must be the app's client id (digits.digits)"),
    ({"SLACK_REDIRECT_URI": "/slack/oauth_redirect"}, "SLACK_REDIRECT_URI: must be the full URL of "
                                                      "/slack/oauth_redirect, e.g. "
                                                      "https://mldebt.example.org/slack/oauth_redirect"),
])
def test_bad_oauth_settings_say_what_to_do(tmp_path, env, message):
    with pytest.raises(SettingsError) as exc:
        load(tmp_path, **env)
    assert str(exc.value) == message


def test_the_key_made_as_the_error_says_is_accepted(tmp_path):
    code = MAKE_KEY.split('"')[1]  # python -c "<code>"
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert load(tmp_path, MLDEBT_TOKEN_KEY=made).token_key == made


def test_mldebt_run_without_a_key_stops_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "MLDEBT_"))}
    env.update(OAUTH, MLDEBT_DATABASE=str(tmp_path / "q.sqlite3"), MLDEBT_TOKEN_KEY="", MLDEBT_CACHE_DIR="off")
    done = subprocess.run([*mldebt_command(), "run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("mldebt: invalid setting MLDEBT_TOKEN_KEY: required to encrypt the workspaces' bot "
                           f"tokens; make one with: {MAKE_KEY}\n")
