"""Signatures, retries, double clicks, other people's buttons, and text that must not become markup."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from adapters.slack.app import build_app
from bot.engine import QuizEngine

from .fake_slack import RESPONSE_URL
from .slack_requests import SignedRequest, app_home_opened_event, signed_block_action, signed_event
from .tracker import BackgroundTracker
from .workspace import SECRET, TEAM, Workspace, buttons, letter, question_id, texts

EMPTY_DB = {"players": 0, "sessions": 0, "session_items": 0, "answers": 0, "badges": 0, "outbox": 0,
            "tenant_settings": 0}


def forge(req: SignedRequest, kind: str) -> SignedRequest:
    headers = dict(req.headers)
    if kind == "forged":  # signed with another secret
        from .slack_requests import signature

        headers["X-Slack-Signature"] = signature("not-the-secret", headers["X-Slack-Request-Timestamp"], req.body)
    elif kind == "stale":  # correctly signed, but 6 minutes old (a replay)
        ts = int(time.time()) - 6 * 60
        from .slack_requests import signature

        headers["X-Slack-Request-Timestamp"] = str(ts)
        headers["X-Slack-Signature"] = signature(SECRET, ts, req.body)
    elif kind == "tampered":  # signed, then someone else's user id put in
        assert "U0ALICE" in req.body
        return SignedRequest(req.body.replace("U0ALICE", "U0MALLO"), headers)
    else:  # unsigned
        headers.pop("X-Slack-Signature")
    return SignedRequest(req.body, headers)


@pytest.mark.parametrize("kind", ["forged", "stale", "tampered", "unsigned"])
async def test_bad_signatures_get_401_and_write_nothing(slack, fake, db, kind):
    alice = slack.user()
    cmd, _ = alice.command_request("challenge")
    resp = await slack.send(forge(cmd, kind))
    assert resp.status == 401 and json.loads(resp.body) == {"error": "invalid request"}
    click = signed_block_action(SECRET, action_id="mldebt:a:0123456789abcdef:alpha-04:A",
                                value="mldebt:a:0123456789abcdef:alpha-04:A", response_url=fake.new_response_url(),
                                team_id=TEAM)
    assert (await slack.send(forge(click, kind))).status == 401
    home = signed_event(SECRET, app_home_opened_event(), team_id=TEAM)
    assert (await slack.send(forge(home, kind))).status == 401
    assert db.counts() == EMPTY_DB
    assert fake.calls == []  # not even auth.test


async def test_a_retried_click_is_recorded_once(slack, fake, db):
    alice = slack.user()
    msg = await alice.command("challenge")
    wrong = letter(slack.bank, msg, correct=False)
    click = alice.click_request(msg, wrong)
    await slack.send(click)
    first = texts(msg)
    resp = await slack.send(click.with_headers(X_Slack_Retry_Num="1", X_Slack_Retry_Reason="http_timeout"))
    assert resp.status == 200
    assert texts(msg) == first and "1 attempt left" in first  # the same feedback, not a second attempt
    assert db.rows("SELECT attempt, outcome FROM answers") == [(1, "wrong")]
    assert db.rows("SELECT attempts_used FROM session_items WHERE position = 0") == [(1,)]


async def test_a_retried_command_opens_one_session(slack, db):
    alice = slack.user()
    req, _ = alice.command_request("challenge")
    await slack.send(req)
    await slack.send(req.with_headers(X_Slack_Retry_Num="1", X_Slack_Retry_Reason="http_timeout"))
    assert db.count("sessions") == 1


async def test_a_redelivered_event_is_handled_once_by_its_event_id(slack, fake, db):
    event = app_home_opened_event(user="U0ALICE")
    await slack.send(signed_event(SECRET, event, team_id=TEAM, event_id="Ev0FIRST"))
    await slack.send(signed_event(SECRET, event, team_id=TEAM, event_id="Ev0FIRST", retry_num=1))
    assert len(fake.calls_for("views.publish")) == 1
    # a retry whose first delivery never reached the app is not dropped
    await slack.send(signed_event(SECRET, event, team_id=TEAM, event_id="Ev0LOST", retry_num=1))
    assert len(fake.calls_for("views.publish")) == 2
    assert db.rows("SELECT key FROM inbound_seen ORDER BY key") == [("event:Ev0FIRST",), ("event:Ev0LOST",)]


async def test_a_double_click_on_a_wrong_answer_costs_one_attempt(slack, db):
    alice = slack.user()
    msg = await alice.command("challenge")
    wrong = letter(slack.bank, msg, correct=False)
    # both clicks leave the client before the first answer arrives: two payloads, two action_ts
    one = alice.click_request(msg, wrong, action_ts="1767603600.000100", trigger_id="1.1.a")
    two = alice.click_request(msg, wrong, action_ts="1767603600.000900", trigger_id="1.1.b")
    await asyncio.gather(slack.send(one), slack.send(two))
    assert db.rows("SELECT attempt, outcome FROM answers") == [(1, "wrong")]
    assert "1 attempt left" in texts(msg) and set(buttons(msg)) >= {"A", "B", "C", "D"}


async def test_a_double_click_on_the_last_answer_celebrates_and_grants_once(slack, fake, db):
    alice = slack.user()
    msg = await alice.command("challenge")
    for _ in range(4):
        await alice.answer(msg)
    right = letter(slack.bank, msg)
    await asyncio.gather(slack.send(alice.click_request(msg, right, trigger_id="2.2.a")),
                         slack.send(alice.click_request(msg, right, trigger_id="2.2.b")))
    assert db.count("answers") == 5 and db.count("badges") == 1
    assert len(fake.channel_posts) == 1
    assert len(fake.calls_for("usergroups.users.update")) == 1
    assert "5/5 correct" in texts(msg)


async def test_two_different_choices_at_once_record_one_answer(slack, fake, db):
    alice = slack.user()
    msg = await alice.command("challenge")
    right = letter(slack.bank, msg)
    other = next(x for x in "ABCD" if x != right)
    await slack.send(alice.click_request(msg, right))
    stale = alice.click_request({**msg, "blocks": fake.calls_for(RESPONSE_URL)[0].json["blocks"]}, other)
    await slack.send(stale)  # the second button, from the message as it was before the first answer
    assert db.rows("SELECT outcome FROM answers") == [("correct",)]
    refusal = fake.calls_for(RESPONSE_URL)[-1].json
    assert refusal["replace_original"] is False and "already closed" in refusal["text"]
    assert "2/5" in texts(msg)  # the quiz message itself was left alone


async def test_a_click_on_someone_elses_question_is_refused(slack, fake, db):
    alice, bob = slack.user(), slack.user("U0BOB", "bob")
    msg = await alice.command("challenge")
    before = texts(msg)
    await bob.click(msg, letter(slack.bank, msg))
    refusal = fake.calls_for(RESPONSE_URL)[-1].json
    assert refusal["text"].startswith("This is not your challenge.") and refusal["replace_original"] is False
    assert texts(msg) == before and db.count("answers") == 0


async def test_a_button_that_is_not_ours_is_refused(slack, fake, db):
    alice = slack.user()
    msg = await alice.command("challenge")
    bogus = {**msg, "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "mldebt:a:zz:../../etc:A", "text": {"type": "plain_text", "text": "X"}}]}]}
    await alice.click(bogus, "X")
    assert fake.calls_for(RESPONSE_URL)[-1].json["text"] == "That button is not one of mine."
    assert db.count("answers") == 0


def _no_pings(fake) -> None:
    for call in fake.calls:
        for token in ("<!channel>", "<!here>", "<!everyone>"):
            assert token not in call.raw_body, (call.method, call.raw_body[:300])


async def test_typed_mentions_are_escaped(slack, fake):
    alice = slack.user()
    shown = texts(await alice.command("<!channel> & <@U0BOB>"))
    assert shown.startswith("Unknown command '&lt;!channel&gt;'.")
    await alice.command("practice <!here>")
    assert "Unknown topic '&lt;!here&gt;'" in fake.calls_for(RESPONSE_URL)[-1].json["text"]
    # what the user typed literally arrives escaped by Slack: shown as typed, still escaped once
    shown = texts(await alice.command("R&amp;D&lt;!channel&gt;"))
    assert shown.startswith("Unknown command 'R&amp;D&lt;!channel&gt;'.")
    _no_pings(fake)


async def test_display_names_never_ping(slack, fake, db):
    eve = slack.user("U0EVE", "<!channel>")
    fake.fail("usergroups.users.update", "permission_denied")  # so Eve shows up in the pending grants
    msg = await eve.command("challenge")
    for _ in range(5):
        await eve.answer(msg)
    assert fake.channel_posts[0]["text"].startswith(":tada: <@U0EVE> earned")  # an id, not the name
    assert db.rows("SELECT display_name FROM players") == [("<!channel>",)]
    # the name is shown on the leaderboard and in the admins' list of pending grants: escaped
    board = texts(await slack.user().command("leaderboard"))
    assert ":first_place_medal: &lt;!channel&gt;:" in board
    status = texts(await slack.user("U0ADMIN", "ada").command("admin status"))
    assert "<@U0EVE> (&lt;!channel&gt;): Technical Debt Mastery, 1 attempt: `permission_denied: Let apps change" in status
    _no_pings(fake)


async def test_a_form_body_containing_payload_still_parses(slack, fake):
    """slack-bolt 1.30 reads any form body containing 'payload' as an interactivity payload."""
    shown = texts(await slack.user().command("practice payloads"))
    assert "Unknown topic 'payloads'" in shown


class GatedEngine(QuizEngine):
    """An engine whose `start` waits for the test: proves the ack went out before the work."""

    gate: asyncio.Event

    async def start(self, *args, **kwargs):
        await self.gate.wait()
        return await super().start(*args, **kwargs)


async def test_ack_goes_out_before_the_work(settings, store, bank, clock, client, fake, db):
    engine = GatedEngine(store, bank, clock, rng=random.Random(7))
    engine.gate = asyncio.Event()
    app = build_app(settings, engine, client=client)
    tracker = BackgroundTracker(app)
    ws = Workspace(fake, app, tracker, bank)
    req, url = ws.user().command_request("challenge")
    from slack_bolt.request.async_request import AsyncBoltRequest

    resp = await app.async_dispatch(AsyncBoltRequest(body=req.body, headers=req.headers))
    assert (resp.status, resp.body) == (200, "")  # Slack has its answer ...
    assert app.work.pending >= 1 and db.count("sessions") == 0 and fake.calls_for(RESPONSE_URL) == []  # ... first
    engine.gate.set()
    await tracker.idle()
    assert db.count("sessions") == 1 and question_id(fake.ephemeral_messages["E1"])
