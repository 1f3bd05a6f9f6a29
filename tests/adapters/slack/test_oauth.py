"""Slack in many workspaces: the "Add to Slack" flow over real HTTP, installs in the database with their
tokens encrypted, and every Web API call (listeners and outbox deliveries) made with the token of the
workspace it is for. The app is the real bolt AsyncApp built in OAuth mode; Slack is the loopback fake."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from cryptography.fernet import Fernet

from adapters.slack.app import build_app
from adapters.slack.oauth import TokenKeyError, bot_scopes
from adapters.slack.runner import slack_running
from adapters.slack.web import build_web_app, make_client, serve_http
from bot.cli import Core
from bot.config import Settings
from bot.engine import QuizEngine
from bot.scheduler import Scheduler
from bot.store import SqliteStore

from .fake_slack import RESPONSE_URL, FakeSlack, RecordedCall
from .slack_requests import signed_event
from .tracker import BackgroundTracker
from .workspace import SECRET, USERGROUP, Workspace, ordered_web_app, question_id, texts

COOKIE = "slack-app-oauth-state"
A, B = "T0AAA", "T0BBB"
TOKENS = {A: "xoxb-aaa-111", B: "xoxb-bbb-222"}
SET = "daily set <#{c}|ml-daily> 09:00 Europe/Berlin"


@pytest.fixture
def token_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path, fake: FakeSlack, token_key: str) -> Settings:
    """OAuth mode: the app's credentials and a token key instead of SLACK_BOT_TOKEN."""
    return Settings(database=tmp_path / "quiz.sqlite3", slack_client_id=fake.client_id,
                    slack_client_secret=fake.client_secret, slack_signing_secret=SECRET, token_key=token_key,
                    slack_badge_usergroup_id=USERGROUP, http_host="127.0.0.1", http_port=0)


@pytest.fixture
def client(fake):
    return make_client(None, base_url=fake.base_url)  # no token of its own: each call gets its workspace's


@pytest.fixture
async def fake():
    async with FakeSlack(team_id="T0TEST", usergroups={USERGROUP: []},
                         scopes="commands,chat:write,usergroups:read,usergroups:write,users:read") as f:
        f.users = {u: {"name": u.lower(), "is_admin": u.startswith("U0ADM")}
                   for u in ("U0ADMA", "U0ADMB", "U0ALICE", "U0BOB", "U0CAROL", "U0DAN")}
        yield f


class Browser:
    """A person's browser on the bot's install pages (real HTTP to the real aiohttp server)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, fake: FakeSlack) -> None:
        self.http, self.base, self.fake = http, base, fake

    async def start(self) -> tuple[str, str]:
        """GET /slack/install: the "Add to Slack" page; returns (its authorize URL, the state cookie)."""
        async with self.http.get(f"{self.base}/slack/install") as r:
            assert r.status == 200
            page = await r.text()
            cookie = r.headers["Set-Cookie"]
        url = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', page).group(1).replace("&amp;", "&")
        state = parse_qs(urlparse(url).query)["state"][0]
        assert cookie.startswith(f"{COOKIE}={state};")
        return url, state

    async def back_from_slack(self, query: dict[str, str], cookie: str | None) -> tuple[int, str]:
        """Slack sends the browser to /slack/oauth_redirect with the code and the state."""
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
        async with self.http.get(f"{self.base}/slack/oauth_redirect", params=query, headers=headers) as r:
            return r.status, await r.text()

    async def install(self, team: str, token: str, code: str | None = None) -> tuple[int, str]:
        _url, state = await self.start()
        code = code or f"code-{team}"
        self.fake.install_code(code, team_id=team, token=token)
        return await self.back_from_slack({"code": code, "state": state}, state)


@pytest.fixture
async def browser(app, fake):
    runner, port = await serve_http(build_web_app(app), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            yield Browser(http, f"http://127.0.0.1:{port}", fake)
    finally:
        await runner.cleanup()


def teams_of(call: RecordedCall) -> set[str]:
    """The workspaces whose channels or users a call names (ids in these tests end in the team's letter)."""
    ids = [call.args.get(k) for k in ("channel", "user", "user_id")]
    ids.append(str(call.args.get("users") or "").split(",")[-1])  # a grant adds its player last
    owner = {"U0ADMA": A, "U0ALICE": A, "U0CAROL": A, "U0ADMB": B, "U0BOB": B, "U0DAN": B}
    return {owner.get(i) or {"A": A, "B": B}[i[-1]] for i in ids if i}


# -- the install flow ------------------------------------------------------------------------------------

async def test_an_install_stores_the_workspace_with_its_token_encrypted(browser, fake, db, slack, token_key,
                                                                       caplog):
    caplog.set_level(logging.DEBUG)
    url, state = await browser.start()
    query = parse_qs(urlparse(url).query)
    assert query["client_id"] == [fake.client_id] and query["scope"] == [",".join(bot_scopes())]
    assert db.rows("SELECT state FROM oauth_states") == [(state,)]  # in the database: any replica can finish it

    fake.install_code("c0de", team_id=A, token=TOKENS[A], team="Team A")
    status, page = await browser.back_from_slack({"code": "c0de", "state": state}, state)
    assert status == 200 and "Thank you!" in page and f"slack://app?team={A}&amp;id=A0TEST" in page
    [exchange] = fake.calls_for("oauth.v2.access")
    assert exchange.args["code"] == "c0de" and exchange.headers["Authorization"].startswith("Basic ")
    assert db.count("oauth_states") == 0  # consumed
    [row] = db.rows("SELECT platform, enterprise_id, team_id, team_name, bot_user_id, bot_scopes, installer_user_id, "
                    "bot_token FROM installations")
    assert row[:7] == ("slack", "", A, "Team A", "U0BOT", fake.scopes, "U0ADMIN")
    assert TOKENS[A] not in repr(db.rows("SELECT * FROM installations"))  # no column holds it in plain text
    assert Fernet(token_key.encode()).decrypt(row[7].encode()).decode() == TOKENS[A]
    assert TOKENS[A] not in caplog.text

    carol = slack.user("U0CAROL", "carol", "C0QUIZA", team=A)
    assert "*Mastery challenge* · 1/5" in texts(await carol.command("challenge"))
    assert {c.token for c in fake.calls if c.method == "auth.test"} == {TOKENS[A]}


@pytest.mark.parametrize("case", ["forged", "missing", "expired", "reused", "no cookie"])
async def test_a_bad_state_gets_the_failure_page_and_stores_nothing(browser, fake, db, clock, case):
    _url, state = await browser.start()
    fake.install_code("c0de", team_id=A, token=TOKENS[A])
    query, cookie, reason = {"code": "c0de", "state": state}, state, "invalid_state"
    if case == "forged":
        query["state"] = cookie = "made-up-state"
    elif case == "missing":
        del query["state"]
        cookie, reason = None, "invalid_browser"
    elif case == "no cookie":  # a state from someone else's browser
        cookie, reason = None, "invalid_browser"
    elif case == "expired":
        clock.advance(601)
    elif case == "reused":
        assert (await browser.back_from_slack(query, cookie))[0] == 200
        fake.install_code("c0de", team_id=B, token=TOKENS[B])
    status, page = await browser.back_from_slack(query, cookie)
    assert status in (400, 401) and "Oops, Something Went Wrong!" in page and f"reason: {reason}" in page
    assert db.rows("SELECT team_id FROM installations") == ([(A,)] if case == "reused" else [])
    assert len(fake.calls_for("oauth.v2.access")) == (1 if case == "reused" else 0)  # no code was traded


# -- two workspaces at once --------------------------------------------------------------------------------

async def test_two_workspaces_play_at_once_each_with_its_own_token(browser, fake, db, slack, clock, scheduler,
                                                                   bank):
    for team in (A, B):
        assert (await browser.install(team, TOKENS[team]))[0] == 200
    admins = [slack.user(f"U0ADM{t[-1]}", "admin", f"C0QUIZ{t[-1]}", team=t) for t in (A, B)]
    shown = await asyncio.gather(*(a.command(SET.format(c=f"C0DAILY{a.team[-1]}")) for a in admins))
    assert all("every day at 09:00 Europe/Berlin" in texts(m) for m in shown)  # users.info said: an admin

    alice, bob = slack.user("U0ALICE", "alice", "C0QUIZA", team=A), slack.user("U0BOB", "bob", "C0QUIZB", team=B)
    msgs = await asyncio.gather(alice.command("challenge"), bob.command("challenge"))
    for _ in range(5):
        await asyncio.gather(alice.answer(msgs[0]), bob.answer(msgs[1]))
    assert all("5/5 correct" in texts(m) for m in msgs)
    assert sorted(db.rows("SELECT p.tenant, p.user_id FROM badges b JOIN players p ON p.id = b.player_id")) == [
        (A, "U0ALICE"), (B, "U0BOB")]

    carol, dan = slack.user("U0CAROL", "carol", "C0QUIZA", team=A), slack.user("U0DAN", "dan", "C0QUIZB", team=B)
    started = await asyncio.gather(carol.command("challenge"), dan.command("challenge"))
    fake.fail(RESPONSE_URL, "expired_url", times=4)  # both time-outs fall back to chat.postEphemeral
    clock.advance(max(bank.question(question_id(m)).time_limit for m in started))
    await scheduler.tick()  # the time-outs, and today's daily post in each workspace
    assert db.rows("SELECT kind, status, COUNT(*) FROM outbox GROUP BY kind, status ORDER BY kind") == [
        ("celebration", "sent", 2), ("daily_post", "sent", 2), ("grant", "sent", 2), ("timeout", "sent", 2)]

    with_token = [c for c in fake.calls if c.token is not None]
    for team in (A, B):
        mine = [c for c in with_token if c.token == TOKENS[team]]
        assert {c.method for c in mine} == {"auth.test", "users.info", "conversations.info", "usergroups.users.list",
                                            "usergroups.users.update", "chat.postMessage", "chat.postEphemeral"}
        named = [c for c in mine if c.method not in ("auth.test", "usergroups.users.list")]
        assert all(teams_of(c) == {team} for c in named), [(c.method, c.args) for c in named]
    assert {c.args["channel"] for c in fake.calls_for("chat.postMessage")} == {"C0DAILYA", "C0DAILYB"}
    assert {c.token for c in with_token} == set(TOKENS.values())


# -- uninstall, a lost install, reinstall -----------------------------------------------------------------

async def test_a_workspace_that_never_installed_is_refused_and_nothing_is_written(browser, fake, db, slack, caplog):
    await browser.install(A, TOKENS[A])
    before = db.counts()
    stranger = slack.user("U0EVE", "eve", "C0QUIZX", team="T0XXX")
    req, url = stranger.command_request("challenge")
    assert (await slack.send(req)).status == 200
    assert "no longer available" in fake.response_url_state(url).posts[0]["text"]
    assert db.counts() == before and "Traceback" not in caplog.text
    assert all(c.token in (None, TOKENS[A]) for c in fake.calls)  # no token was made up for it


async def test_a_revoked_bot_token_deletes_the_install_a_revoked_user_token_does_not(browser, db, slack):
    await browser.install(A, TOKENS[A])
    await slack.send(signed_event(SECRET, {"type": "tokens_revoked", "tokens": {"oauth": ["U0ALICE"]}}, team_id=A))
    assert db.rows("SELECT team_id FROM installations") == [(A,)]
    await slack.send(signed_event(SECRET, {"type": "tokens_revoked", "tokens": {"bot": ["U0BOT"]}}, team_id=A))
    assert db.rows("SELECT team_id FROM installations") == []
    assert db.rows("SELECT tenant, state, reason FROM outbox_targets") == [(A, "paused", "tokens_revoked")]


async def test_an_uninstall_deletes_the_install_refuses_its_requests_and_pauses_only_that_workspace(
        browser, fake, db, slack, clock, scheduler, caplog):
    for team in (A, B):
        await browser.install(team, TOKENS[team])
    for t in (A, B):
        await slack.user(f"U0ADM{t[-1]}", "admin", f"C0QUIZ{t[-1]}", team=t).command(
            SET.format(c=f"C0DAILY{t[-1]}"))
    await scheduler.tick()
    assert db.rows("SELECT COUNT(*) FROM daily_posts WHERE status = 'posted'") == [(2,)]

    resp = await slack.send(signed_event(SECRET, {"type": "app_uninstalled"}, team_id=A))
    assert resp.status == 200
    fake.revoked.add(TOKENS[A])  # Slack revokes the token with the uninstall
    assert db.rows("SELECT team_id FROM installations") == [(B,)]
    assert db.rows("SELECT tenant, target, state, reason FROM outbox_targets") == [(A, "", "paused", "app_uninstalled")]

    before = db.counts()
    caplog.clear()
    carol = slack.user("U0CAROL", "carol", "C0QUIZA", team=A)
    req, url = carol.command_request("challenge")
    assert (await slack.send(req)).status == 200
    [notice] = fake.response_url_state(url).posts  # bolt's answer: install the app again
    assert "no longer available" in notice["text"] and "reinstall" in notice["text"].lower()
    assert db.counts() == before  # nothing written for a workspace without an install
    assert "Traceback" not in caplog.text

    dan = slack.user("U0DAN", "dan", "C0QUIZB", team=B)
    assert "*Mastery challenge* · 1/5" in texts(await dan.command("challenge"))  # the other workspace keeps playing
    calls = len(fake.calls)
    clock.advance(hours=24)
    await scheduler.tick()
    posted = [c for c in fake.calls[calls:] if c.method == "chat.postMessage"]
    assert [(c.args["channel"], c.token) for c in posted] == [("C0DAILYB", TOKENS[B])]
    [reveal] = [c for c in fake.calls[calls:] if c.method == "chat.update"]  # yesterday's post, revealed
    assert (reveal.args["channel"], reveal.token) == ("C0DAILYB", TOKENS[B])
    assert all(c.token != TOKENS[A] for c in fake.calls[calls:])


async def test_a_delivery_for_a_workspace_without_an_install_pauses_it_until_it_installs_again(
        browser, fake, db, slack, app, clock, scheduler):
    await browser.install(A, TOKENS[A])
    await slack.user("U0ADMA", "admin", "C0QUIZA", team=A).command(SET.format(c="C0DAILYA"))
    # the install is gone without an app_uninstalled event reaching this process (e.g. deleted by another)
    assert await app.quiz.installations.delete(A) == 1
    await scheduler.tick()
    assert db.rows("SELECT tenant, target, state, reason FROM outbox_targets") == [(A, "", "paused", "not_installed")]
    assert fake.calls_for("chat.postMessage") == []

    assert db.rows("SELECT status, last_error FROM outbox") == [("failed", "not_installed")]
    clock.advance(hours=24)
    await scheduler.tick()
    assert db.count("daily_posts") == 1  # paused: no post queued for a workspace without an install

    status, _page = await browser.install(A, "xoxb-aaa-new", code="again")  # a reinstall: new token
    assert status == 200 and db.rows("SELECT * FROM outbox_targets") == []
    await scheduler.tick()
    [post] = fake.calls_for("chat.postMessage")
    assert (post.args["channel"], post.token) == ("C0DAILYA", "xoxb-aaa-new")


async def test_start_up_stops_when_the_key_cannot_read_the_stored_tokens(browser, settings, bank, store, engine,
                                                                        clock, client):
    await browser.install(A, TOKENS[A])
    other_key = dataclasses.replace(settings, token_key=Fernet.generate_key().decode())
    core = Core(other_key, bank, store, engine, Scheduler(engine, clock), clock)
    with pytest.raises(TokenKeyError) as refused:
        async with slack_running(core, client=client):
            raise AssertionError("started with a key that cannot decrypt the installs")
    assert str(refused.value).startswith("MLDEBT_TOKEN_KEY cannot decrypt the bot tokens of 1 of 1 Slack installs")
    rotated = dataclasses.replace(settings, token_key=f"{other_key.token_key},{settings.token_key}")
    async with slack_running(Core(rotated, bank, store, engine, Scheduler(engine, clock), clock), client=client) as rt:
        assert rt.mode == "http" and rt.app.oauth_flow is not None
    async with store.transaction() as tx:  # re-encrypted under the new key at start-up
        stored = (await tx.installation_of_team("slack", A)).bot_token
    assert Fernet(other_key.token_key.encode()).decrypt(stored.encode()).decode() == TOKENS[A]


async def test_an_install_begun_on_one_replica_finishes_on_another_and_both_serve_it(
        browser, fake, settings, bank, clock, client, db, tmp_path, slack):
    """No session state in a process: the second replica has its own engine and store on the same database."""
    other_store = SqliteStore(tmp_path / "quiz.sqlite3")
    await other_store.open()
    try:
        other_engine = QuizEngine(other_store, bank, clock, rng=random.Random(3))
        other_app = build_app(settings, other_engine, scheduler=Scheduler(other_engine, clock), client=client)
        runner, port = await serve_http(build_web_app(other_app), "127.0.0.1", 0)
        try:
            replica = Browser(browser.http, f"http://127.0.0.1:{port}", fake)
            _url, state = await browser.start()  # the "Add to Slack" page from the first replica
            fake.install_code("c0de", team_id=A, token=TOKENS[A])
            status, page = await replica.back_from_slack({"code": "c0de", "state": state}, state)
            assert status == 200 and "Thank you!" in page
            assert (await browser.back_from_slack({"code": "c0de", "state": state}, state))[0] == 401  # used up
        finally:
            await runner.cleanup()
        carol = slack.user("U0CAROL", "carol", "C0QUIZA", team=A)
        assert "*Mastery challenge* · 1/5" in texts(await carol.command("challenge"))  # the first replica serves it
        other = Workspace(fake, other_app, BackgroundTracker(other_app), bank)
        alice = other.user("U0ALICE", "alice", "C0QUIZA", team=A)
        assert "*Mastery challenge* · 1/5" in texts(await alice.command("challenge"))  # and so does the second
        await other_app.work.close()
    finally:
        await other_store.close()
    assert db.rows("SELECT COUNT(*) FROM sessions") == [(2,)]


# -- acks first in OAuth mode --------------------------------------------------------------------------------

async def test_a_workspace_whose_install_was_found_is_acknowledged_before_bolt_runs(browser, app, slack, fake, db):
    """OAuth mode over the real HTTP server: a workspace's first request goes through bolt inline (its
    authorize finds the install), later ones get their 200 first; an uninstall makes it inline again."""
    for team in (A, B):
        await browser.install(team, TOKENS[team])
    web_app, order = ordered_web_app(app)
    runner, port = await serve_http(web_app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            slack.http, slack.events_url = http, f"http://127.0.0.1:{port}/slack/events"
            alice, bob = slack.user("U0ALICE", "alice", "C0QUIZA", team=A), slack.user("U0BOB", "bob", "C0QUIZB", team=B)
            await alice.command("help")
            assert order == ["bolt", "ack 200"]  # not known yet in this process: bolt's authorize runs first
            order.clear()
            assert "*Mastery challenge* · 1/5" in texts(await alice.command("challenge"))
            assert order == ["ack 200", "bolt"]
            order.clear()
            await bob.command("help")  # another workspace is known only once its own install was found
            assert order == ["bolt", "ack 200"]

            await slack.send(signed_event(SECRET, {"type": "app_uninstalled"}, team_id=A))
            assert db.rows("SELECT team_id FROM installations") == [(B,)]
            order.clear()
            before = db.counts()
            req, url = slack.user("U0CAROL", "carol", "C0QUIZA", team=A).command_request("challenge")
            assert (await slack.send(req)).status == 200
            assert order == ["bolt", "ack 200"]  # inline again: bolt refuses it with its notice
            assert "no longer available" in fake.response_url_state(url).posts[0]["text"]
            assert db.counts() == before
    finally:
        await runner.cleanup()


async def test_a_replica_whose_key_cannot_read_a_token_retries_and_pauses_nothing(browser, fake, db, slack, app,
                                                                                 clock, scheduler, store, settings):
    """A rotation done out of order: another replica re-encrypted every token under a key this one lacks."""
    await browser.install(A, TOKENS[A])
    await slack.user("U0ADMA", "admin", "C0QUIZA", team=A).command(SET.format(c="C0DAILYA"))
    new_key = Fernet.generate_key().decode()
    async with store.transaction() as tx:  # what the other replica's start-up did: the token under the new key
        row = await tx.installation_of_team("slack", A)
    rotated = Fernet(new_key.encode()).encrypt(Fernet(settings.token_key.encode()).decrypt(row.bot_token.encode()))
    with sqlite3.connect(db.path) as con:
        con.execute("UPDATE installations SET bot_token = ?", (rotated.decode(),))
    await scheduler.tick()
    assert fake.calls_for("chat.postMessage") == []
    assert db.rows("SELECT status, last_error FROM outbox WHERE kind = 'daily_post'") == [("pending", "token_key")]
    assert db.rows("SELECT * FROM outbox_targets") == []  # the workspace is not paused for every replica
    app.quiz.installations.cipher = type(app.quiz.installations.cipher)(f"{new_key},{settings.token_key}")
    clock.advance(seconds=301)
    await scheduler.tick()
    [post] = fake.calls_for("chat.postMessage")
    assert (post.args["channel"], post.token) == ("C0DAILYA", TOKENS[A])
