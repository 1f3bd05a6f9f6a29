"""Item analysis on simulated answer sets with known properties, and the report's four formats."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from html.parser import HTMLParser
from types import MappingProxyType
from xml.etree import ElementTree

import pytest

from bot.item_analysis import MIN_ANSWERS, analyse, point_biserial
from bot.item_report import CSV_COLUMNS, render_csv, render_html, render_json, render_table
from bot.store.base import ItemAnswerRow
from tests.fakes.answers import Plants, simulate
from tests.fakes.bank import make_bank

# keys in the fixture bank: alpha-01 B, alpha-02 C, alpha-03 D, beta-01 B
PLANTS = Plants(broken_key={"alpha-01": "A"}, dead_distractor={"alpha-02": "B"}, easy={"alpha-03"},
                lure={"beta-01": "A"})


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return make_bank(tmp_path_factory.mktemp("bank"))


@pytest.fixture(scope="module")
def report(bank):
    return analyse(simulate(bank, 200, PLANTS), bank.questions)


def _rules(report) -> dict[str, list[str]]:
    return {s.question_id: [f.rule for f in s.flags] for s in report.items if s.flags}


def test_exactly_the_planted_questions_are_flagged(report):
    assert _rules(report) == {
        "alpha-01": ["negative-discrimination", "distractor-beats-key", "distractor-beats-key", "too-hard"],
        "alpha-02": ["dead-distractor"],
        "alpha-03": ["dead-distractor", "dead-distractor", "too-easy"],
        "beta-01": ["distractor-beats-key"],
    }
    assert [s.question_id for s in report.flagged] == ["alpha-01", "beta-01", "alpha-02", "alpha-03"]
    assert (report.players, report.answers, len(report.items)) == (200, 4000, 20)


def test_a_broken_key_shows_negative_discrimination(report):
    s = next(s for s in report.items if s.question_id == "alpha-01")
    assert s.discrimination is not None and s.discrimination < 0
    assert s.choice_shares["A"] > 0.5  # those who know pick the real answer, marked wrong
    assert s.flags[0].message == (f"negative discrimination: r = {s.discrimination:+.2f} < 0 (players who do well "
                                  "elsewhere miss it more often; check the key)")
    assert s.flags[1].message == f"distractor A picked more than the key B: {s.choice_shares['A']:.0%} vs 12%"
    healthy = [x.discrimination for x in report.items if not x.flags]
    assert min(healthy) > 0.3


def test_a_dead_distractor_is_flagged_with_its_letter(report):
    s = next(s for s in report.items if s.question_id == "alpha-02")
    assert s.choice_shares["B"] == 0
    assert [f.message for f in s.flags] == ["dead distractor B: picked by nobody in 200 answers"]


def test_a_too_easy_item_is_flagged(report):
    s = next(s for s in report.items if s.question_id == "alpha-03")
    assert s.p > 0.9 and s.flags[-1].message == f"too easy: p = {s.p:.2f} > 0.90 with 200 answers"


def test_below_the_minimum_sample_nothing_is_flagged(bank):
    rows = simulate(bank, MIN_ANSWERS - 1, PLANTS)
    report = analyse(rows, bank.questions)
    assert {s.players for s in report.items} == {MIN_ANSWERS - 1}
    assert _rules(report) == {}
    # the statistics are still there; only the flags wait
    assert next(s for s in report.items if s.question_id == "alpha-02").choice_shares["B"] == 0
    # a lower --min-answers lets the same answers raise flags
    assert "alpha-02" in _rules(analyse(rows, bank.questions, min_answers=MIN_ANSWERS - 1))


def _row(pid, qid, choice, outcome, *, opened=0.0, answered=None, closed=None, status=None, hint=False, pos=0,
         session=None):
    return ItemAnswerRow(pid, qid, session or f"s{pid}-{qid}-{opened}", pos, status or outcome or "timeout", hint,
                         choice, outcome, opened, answered, closed)


def test_only_the_first_encounter_counts(bank):
    q = bank.question("alpha-00")  # key A
    rows = [_row(1, q.id, "B", "wrong", opened=10, answered=40, closed=40),
            # the same player meets it again in review and gets it right: practice, not the item
            _row(1, q.id, "A", "correct", opened=500, answered=505, closed=505),
            _row(2, q.id, "A", "correct", opened=20, answered=30, closed=30, hint=True),
            _row(3, q.id, None, None, opened=0, closed=120, status="timeout")]
    s = analyse(rows, bank.questions).items[0]
    assert (s.players, s.p, s.hint_rate, s.timeout_rate) == (3, pytest.approx(1 / 3), pytest.approx(1 / 3),
                                                             pytest.approx(1 / 3))
    assert s.choice_shares == {"A": pytest.approx(1 / 3), "B": pytest.approx(1 / 3), "C": 0, "D": 0}
    assert s.no_answer == pytest.approx(1 / 3)
    assert s.median_seconds == 30  # 30 s, 10 s and the 120 s time-out
    assert s.discrimination is None  # nobody met another question


def test_point_biserial_matches_the_textbook_formula():
    xs = [1, 1, 0, 0, 1]
    ys = [0.9, 0.7, 0.4, 0.5, 0.6]
    m1, m0 = (0.9 + 0.7 + 0.6) / 3, (0.4 + 0.5) / 2
    sd = (sum((y - 0.62) ** 2 for y in ys) / 5) ** 0.5
    assert point_biserial(xs, ys) == pytest.approx((m1 - m0) / sd * (3 / 5 * 2 / 5) ** 0.5)
    assert point_biserial([1, 1], [0.2, 0.4]) is None
    assert point_biserial([1], [0.2]) is None


def test_csv_has_one_row_per_question_with_the_documented_columns(report):
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["question_id"] for r in rows] == [s.question_id for s in report.items]
    a2 = next(r for r in rows if r["question_id"] == "alpha-02")
    assert (a2["players"], a2["key"], a2["share_B"], a2["flags"]) == ("200", "C", "0.0000", "dead-distractor")
    assert a2["source"].endswith("topics/alpha.yaml:49")


def test_json_shape(report):
    data = json.loads(render_json(report))
    assert set(data) == {"min_answers", "thresholds", "players", "answers", "questions"}
    assert data["min_answers"] == 30 and len(data["questions"]) == 20
    q = next(q for q in data["questions"] if q["question_id"] == "beta-01")
    assert set(q) == {"question_id", "topic", "source", "players", "p", "discrimination", "key", "choices",
                      "no_answer", "hint_rate", "median_seconds", "timeout_rate", "flags"}
    assert q["choices"]["B"]["key"] is True and q["choices"]["A"]["text"] == "beta 1 choice A"
    assert [f["rule"] for f in q["flags"]] == ["distractor-beats-key"]


def test_table_lists_each_flag_under_its_question(report):
    text = render_table(report)
    assert "alpha-02 (" in text and "  - dead distractor B: picked by nobody in 200 answers" in text
    assert text.rstrip().endswith("20 questions answered by 200 players (4000 first answers); 4 flagged. "
                                  "Flags need at least 30 answers.")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_is_self_contained_with_one_point_per_question(bank, report):
    page = _Collect()
    page.feed(render_html(report))
    page.close()
    tags = [t for t, _ in page.tags]
    points = [a["data-question"] for t, a in page.tags if t == "circle"]
    assert sorted(points) == sorted(bank.questions)  # exactly one point per question
    assert tags.count("svg") == 1 + 4 + 20  # the plot, the flagged questions' bars, every question's bars
    assert "script" not in tags and not any(t in ("img", "link", "iframe") for t in tags)
    assert not [a for _, a in page.tags for k, v in a.items() if k in ("src", "href") and "//" in (v or "")]
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert len(links) == 4 + 20 and links[0].endswith("topics/alpha.yaml#L35")  # alpha-01, most urgent first
    assert any(t.endswith("topics/alpha.yaml:49") for t in page.text)  # the file:line text shown
    rules = [a["data-rule"] for t, a in page.tags if t == "li" and "data-rule" in a]
    assert rules.count("negative-discrimination") == 1 and rules.count("too-easy") == 1


def test_html_report_is_well_formed_xml_too(report):
    root = ElementTree.fromstring(render_html(report))
    svg = "{http://www.w3.org/2000/svg}"
    circles = root.findall(f".//{svg}circle")
    assert len(circles) == 20 and len({c.get("data-question") for c in circles}) == 20
    titles = {c.get("data-question"): c.find(f"{svg}title").text for c in circles}
    assert titles["alpha-02"].startswith("alpha-02: p = 0.38, r = +0.60, 200 players; dead-distractor")


def test_html_escapes_question_text(bank):
    q = bank.question("alpha-00")
    nasty = dataclasses.replace(q, choices=('<script>alert(1)</script>', 'x & "y"', "c", "d"))
    questions = MappingProxyType({q.id: nasty})
    rows = [_row(1, q.id, "A", "correct", answered=5, closed=5)]
    html = render_html(analyse(rows, questions))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x &amp; &quot;y&quot;" in html
