"""Block Kit rendering (pure), Slack text rules, and the app manifest."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

import adapters.slack
from adapters.slack.blocks import MAX_BLOCKS, Renderer
from adapters.slack.mrkdwn import clip, esc, slack_date
from bot.replies import Choice, QuestionCard, Reply, Summary

SLACK_DIR = Path(adapters.slack.__file__).parent


def card(**kw) -> QuestionCard:
    base = dict(session_id="0123456789abcdef", question_id="alpha-04", mode="challenge", position=2, total=5,
                topic="alpha", difficulty="intermediate", type="command_output", prompt="What does <this> do?",
                code="print('a & b')\n", choices=tuple(Choice(x, f"choice {x}") for x in "ABCD"),
                deadline=datetime(2026, 1, 5, 9, 2, tzinfo=UTC), time_limit=120, attempts_left=2,
                hint_used=False, hint_costs_points=True)
    return QuestionCard(**{**base, **kw})


def test_escape_only_the_three_control_characters():
    assert esc("a & b <!channel> 'q' \"d\"") == "a &amp; b &lt;!channel&gt; 'q' \"d\""
    assert esc("&lt;") == "&amp;lt;"  # ampersand first: an entity typed by a user stays literal
    assert clip("x" * 10 + "&amp;", 13) == "x" * 10 + "…"  # never cut inside an escape
    assert slack_date(datetime(2026, 1, 5, 9, 2, tzinfo=UTC)) == "<!date^1767603720^{time_secs}|09:02:00 UTC>"


def test_question_card_layout():
    blocks = Renderer().blocks(card())
    kinds = [b["type"] for b in blocks]
    assert kinds == ["context", "section", "section", "section", "actions", "context"]
    assert blocks[1]["text"]["text"] == "What does &lt;this&gt; do?"
    assert blocks[2]["text"]["text"] == "```print('a &amp; b')```"
    ids = [el["action_id"] for el in blocks[4]["elements"]]
    assert ids == [f"mldebt:a:0123456789abcdef:alpha-04:{x}" for x in "ABCD"] + [
        "mldebt:h:0123456789abcdef:alpha-04", "mldebt:s:0123456789abcdef:alpha-04"]
    assert all(el["value"] == el["action_id"] for el in blocks[4]["elements"])  # ids only, never the answer
    status = blocks[5]["elements"][0]["text"]
    assert status == (":stopwatch: Answer by <!date^1767603720^{time_secs}|09:02:00 UTC> (120 s) · "
                      "2 attempts left · the hint costs 25% of the points")
    assert "2/5" in blocks[0]["elements"][0]["text"]


def test_untimed_card_and_long_texts_stay_within_slack_limits():
    long = card(deadline=None, time_limit=None, prompt="p" * 5000,
                choices=tuple(Choice(x, "c" * 4000) for x in "ABCD"))
    msg = Renderer().message([long] * 10)
    assert len(msg["blocks"]) <= MAX_BLOCKS and len(msg["text"]) <= 3000
    for b in msg["blocks"]:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
    assert "Untimed" in msg["blocks"][-1]["elements"][0]["text"] or "cut" in msg["blocks"][-1]["elements"][0]["text"]


def test_an_unknown_reply_type_falls_back_to_its_text_loudly(caplog):
    @dataclass(frozen=True)
    class Trophy(Reply):  # a reply type the core might add later
        who: str

        def text(self) -> str:
            return f"A trophy for {self.who} & co"

    with caplog.at_level(logging.WARNING, logger="adapters.slack.blocks"):
        blocks = Renderer().blocks(Trophy("<!here>"))
    assert blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": "A trophy for &lt;!here&gt; &amp; co"}}]
    assert "no Block Kit layout for reply type Trophy" in caplog.text


def test_summary_layout():
    s = Summary("s1", "test", "finished", 1, 2, 40, ())
    assert Renderer().blocks(s)[0]["text"]["text"].startswith(":checkered_flag: *Test finished:* 1/2 correct, 40 points.")


# -- the manifest ----------------------------------------------------------------------------------

# each Web API method the adapter calls, and the bot scope it needs (None: no scope)
SCOPE_OF = {
    "chat.postMessage": "chat:write", "chat.postEphemeral": "chat:write", "chat.update": "chat:write",
    "usergroups.users.list": "usergroups:read", "usergroups.users.update": "usergroups:write",
    "users.info": "users:read", "conversations.history": "channels:history", "views.publish": None,
    "conversations.info": "channels:read",
}


def called_methods() -> set[str]:
    """Every `client.<method>(` call in adapters/slack, as a Web API method name."""
    found = set()
    for path in SLACK_DIR.glob("*.py"):
        found |= {m.replace("_", ".") for m in re.findall(r"client\.([a-z]+_[A-Za-z_]+)\(", path.read_text())}
    return found


def test_the_manifest_grants_what_the_code_calls_and_no_more():
    manifest = yaml.safe_load((SLACK_DIR / "manifest.yml").read_text())
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    methods = called_methods()
    assert methods == set(SCOPE_OF), "a new Web API call: add it to SCOPE_OF and check the manifest's scopes"
    needed = {SCOPE_OF[m] for m in methods} - {None}
    # groups:history and groups:read: the same calls in private daily channels
    assert needed | {"commands", "groups:history", "groups:read"} == set(scopes)


def test_the_manifest_sets_up_everything_in_one_paste():
    m = yaml.safe_load((SLACK_DIR / "manifest.yml").read_text())
    assert m["_metadata"] == {"major_version": 1} and m["display_information"]["name"] == "mldebt"
    [command] = m["features"]["slash_commands"]
    assert command["command"] == "/mldebt" and command["should_escape"] is True
    assert m["features"]["bot_user"]["display_name"] == "mldebt"
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "app_uninstalled",
                                                                 "tokens_revoked"]
    assert m["settings"]["socket_mode_enabled"] is True
    # HTTP mode is three uncommented lines away, all pointing at the one events path
    text = (SLACK_DIR / "manifest.yml").read_text()
    assert len(re.findall(r"# (?:url|request_url): https://\S+/slack/events", text)) == 3
