from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from slack_sdk.http_retry import builtin_async_handlers

from adapters.slack.app import QuizApp, build_app
from adapters.slack.web import make_client
from bot.config import Settings
from bot.scheduler import Scheduler

from .fake_slack import FakeSlack
from .tracker import BackgroundTracker
from .workspace import BOT_TOKEN, SECRET, USERGROUP, Db, Workspace


@pytest.fixture
async def fake():
    async with FakeSlack(team_id="T0TEST", usergroups={USERGROUP: ["U0BOB"]},
                         scopes="commands,chat:write,usergroups:read,usergroups:write,users:read") as f:
        f.users = {"U0ADMIN": {"name": "ada", "is_admin": True}, "U0ALICE": {"name": "alice", "is_admin": False}}
        yield f


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database=tmp_path / "quiz.sqlite3", slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET,
                    slack_badge_usergroup_id=USERGROUP, http_host="127.0.0.1", http_port=0)


@pytest.fixture
def scheduler(engine, clock) -> Scheduler:
    return Scheduler(engine, clock)


@pytest.fixture
def client(fake):
    return make_client(BOT_TOKEN, base_url=fake.base_url)


@pytest.fixture
def app(settings, engine, scheduler, client) -> QuizApp:
    return build_app(settings, engine, scheduler=scheduler, client=client)


@pytest.fixture
def tracker(app) -> BackgroundTracker:
    return BackgroundTracker(app)


@pytest.fixture
def slack(fake, app, tracker, bank) -> Workspace:
    return Workspace(fake, app, tracker, bank)


@pytest.fixture
def db(tmp_path: Path, store) -> Db:
    return Db(tmp_path / "quiz.sqlite3")


@pytest.fixture
def recorded_sleeps(monkeypatch) -> list[float]:
    """slack_sdk's retry handlers sleep through their module's `asyncio`: record instead of waiting."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(builtin_async_handlers, "asyncio", SimpleNamespace(sleep=sleep))
    return sleeps
