"""The item-analysis report in four formats: a terminal table, CSV, JSON and one self-contained HTML file.

The HTML is for an author with a browser and nothing else: inline CSS and inline SVG, no script,
no external asset, every text escaped. It shows a difficulty (p) x discrimination (r) scatter plot
with one point per question, each question's choice shares as bars, and each flagged question
linked to its file and line.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape

from .bank import LETTERS
from .item_analysis import LOW_DISCRIMINATION, RULES, TOO_EASY_P, TOO_HARD_P, ItemReport, ItemStats, repo_path

FORMATS = ("table", "csv", "json", "html")


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _summary(report: ItemReport) -> str:
    flagged = len(report.flagged)
    return (f"{len(report.items)} questions answered by {report.players} players ({report.answers} first answers); "
            f"{flagged} flagged. Flags need at least {report.min_answers} answers.")


def render_table(report: ItemReport) -> str:
    head = (f"{'question':<12} {'players':>7} {'p':>5} {'r':>6}  " + " ".join(f"{x:>4} " for x in LETTERS)
            + f" {'hint':>5} {'median s':>8} {'timeout':>7}  flags")
    lines = [head]
    for s in report.items:
        shares = " ".join(f"{s.choice_shares[x]:>4.0%}{'*' if x == s.key else ' '}" for x in LETTERS)
        lines.append(f"{s.question_id:<12} {s.players:>7} {s.p:>5.2f} {_num(s.discrimination, '+.2f'):>6}  {shares} "
                     f"{s.hint_rate:>5.0%} {_num(s.median_seconds, '.0f'):>8} {s.timeout_rate:>7.0%}  "
                     f"{','.join(f.rule for f in s.flags)}".rstrip())
    lines += ["", "* = the key (letters as written in the YAML).", ""]
    for s in report.flagged:
        lines.append(f"{s.question_id} ({s.source}):")
        lines += [f"  - {f.message}" for f in s.flags]
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("question_id", "topic", "source", "players", "p", "discrimination", "key", "share_A", "share_B",
               "share_C", "share_D", "no_answer", "hint_rate", "median_seconds", "timeout_rate", "flags")


def render_csv(report: ItemReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in report.items:
        w.writerow([s.question_id, s.topic, s.source, s.players, f"{s.p:.4f}", _num(s.discrimination, ".4f"), s.key,
                    *(f"{s.choice_shares[x]:.4f}" for x in LETTERS), f"{s.no_answer:.4f}", f"{s.hint_rate:.4f}",
                    _num(s.median_seconds, ".1f"), f"{s.timeout_rate:.4f}", ";".join(f.rule for f in s.flags)])
    return buf.getvalue()


def _item_json(s: ItemStats) -> dict:
    return {
        "question_id": s.question_id, "topic": s.topic, "source": s.source, "players": s.players,
        "p": round(s.p, 4), "discrimination": None if s.discrimination is None else round(s.discrimination, 4),
        "key": s.key, "choices": {x: {"text": s.choices[i], "share": round(s.choice_shares[x], 4), "key": x == s.key}
                                  for i, x in enumerate(LETTERS)},
        "no_answer": round(s.no_answer, 4), "hint_rate": round(s.hint_rate, 4),
        "median_seconds": None if s.median_seconds is None else round(s.median_seconds, 1),
        "timeout_rate": round(s.timeout_rate, 4),
        "flags": [{"rule": f.rule, "message": f.message} for f in s.flags],
    }


def render_json(report: ItemReport) -> str:
    return json.dumps({
        "min_answers": report.min_answers,
        "thresholds": {"too_easy_p": TOO_EASY_P, "too_hard_p": TOO_HARD_P, "low_discrimination": LOW_DISCRIMINATION},
        "players": report.players,
        "answers": report.answers,
        "questions": [_item_json(s) for s in report.items],
    }, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#a40000}.ok{fill:#3465a4}.bad{fill:#cc0000}.key{fill:#4e9a06}.wrong{fill:#888}
circle{fill-opacity:.75}svg text{font:11px system-ui,sans-serif;fill:#444}
.grid{stroke:#ccc}.axis{stroke:#444}.limit{stroke:#c4a000;stroke-dasharray:4 3}
ul{margin:.2em 0}
"""

# the scatter plot's frame: p from 0 to 1 left to right, r from -1 to 1 bottom to top, and below it a
# strip for questions whose r is undefined (everyone, or no one, right; or no player met another question)
_W, _H, _L, _T = 520, 390, 50, 15
_PW, _PH = _W - _L - 15, _H - _T - 70
_NA_Y = _T + _PH + 18


def _x(p: float) -> float:
    return _L + p * _PW


def _y(r: float | None) -> float:
    return _NA_Y if r is None else _T + (1 - (max(-1.0, min(1.0, r)) + 1) / 2) * _PH


def _scatter(report: ItemReport) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
             'aria-label="difficulty by discrimination, one point per question">']
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line class="grid" x1="{_x(t):.1f}" y1="{_T}" x2="{_x(t):.1f}" y2="{_NA_Y}"/>'
                     f'<text x="{_x(t):.1f}" y="{_NA_Y + 22}" text-anchor="middle">{t:g}</text>')
    for t in (-1, -0.5, 0, 0.5, 1):
        parts.append(f'<line class="{"axis" if t == 0 else "grid"}" x1="{_L}" y1="{_y(t):.1f}" x2="{_L + _PW}" '
                     f'y2="{_y(t):.1f}"/><text x="{_L - 6}" y="{_y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{_L - 6}" y="{_NA_Y + 4}" text-anchor="end">n/a</text>')
    for p in (TOO_HARD_P, TOO_EASY_P):
        parts.append(f'<line class="limit" x1="{_x(p):.1f}" y1="{_T}" x2="{_x(p):.1f}" y2="{_T + _PH}"/>')
    parts.append(f'<line class="limit" x1="{_L}" y1="{_y(LOW_DISCRIMINATION):.1f}" x2="{_L + _PW}" '
                 f'y2="{_y(LOW_DISCRIMINATION):.1f}"/>')
    parts.append(f'<text x="{_L + _PW / 2}" y="{_H - 6}" text-anchor="middle">difficulty p (share correct on the '
                 'first attempt)</text>')
    parts.append(f'<text transform="translate(12 {_T + _PH / 2}) rotate(-90)" text-anchor="middle">'
                 'discrimination r</text>')
    for s in report.items:
        tip = f"{s.question_id}: p = {s.p:.2f}, r = {_num(s.discrimination, '+.2f')}, {s.players} players"
        tip += "".join(f"; {f.rule}" for f in s.flags)
        parts.append(f'<circle data-question="{escape(s.question_id)}" class="{"bad" if s.flags else "ok"}" '
                     f'cx="{_x(s.p):.1f}" cy="{_y(s.discrimination):.1f}" r="5"><title>{escape(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _bars(s: ItemStats) -> str:
    """Four horizontal bars, one per choice (YAML letters), the key in green."""
    row, width = 16, 160
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 70}" height="{row * 4 + 4}" '
             f'data-bars="{escape(s.question_id)}">']
    for i, x in enumerate(LETTERS):
        share = s.choice_shares[x]
        y = 2 + i * row
        cls = "key" if x == s.key else "wrong"
        parts.append(f'<text x="0" y="{y + 11}">{x}{"*" if x == s.key else ""}</text>'
                     f'<rect class="{cls}" x="20" y="{y}" width="{share * width:.1f}" height="{row - 4}">'
                     f'<title>{escape(x)}: {escape(s.choices[i])} ({share:.0%})</title></rect>'
                     f'<text x="{24 + share * width:.1f}" y="{y + 11}">{share:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _source_link(s: ItemStats) -> str:
    if not s.source:
        return ""
    path, line = repo_path(s.source)
    return f'<a href="{escape(path)}#L{line}">{escape(path)}:{line}</a>'


def render_html(report: ItemReport, title: str = "mldebt item analysis") -> str:
    flagged = report.flagged
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"/>', f"<title>{escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>", f"<p>{escape(_summary(report))}</p>"]
    undefined = sum(1 for s in report.items if s.discrimination is None)
    out.append("<h2>Difficulty and discrimination</h2>")
    out.append(f"<p>One point per question ({len(report.items)}; {undefined} on the n/a strip, where r is undefined "
               f"because everyone or no one got it right). Red points carry a flag. Dashed lines: "
               f"p = {TOO_HARD_P:g} and {TOO_EASY_P:g}, r = {LOW_DISCRIMINATION:g}. Hover a point for its question.</p>")
    out.append(_scatter(report))
    out.append(f"<h2>Flagged questions ({len(flagged)})</h2>")
    if not flagged:
        out.append("<p>None.</p>")
    else:
        out.append("<table><tr><th>question</th><th>where</th><th>players</th><th>p</th><th>r</th>"
                   "<th>choices (* = key)</th><th>why</th></tr>")
        for s in flagged:
            why = "".join(f'<li class="flag" data-rule="{escape(f.rule)}">{escape(f.message)}</li>' for f in s.flags)
            out.append(f'<tr id="q-{escape(s.question_id)}"><td>{escape(s.question_id)}</td><td>{_source_link(s)}</td>'
                       f'<td class="n">{s.players}</td><td class="n">{s.p:.2f}</td>'
                       f'<td class="n">{_num(s.discrimination, "+.2f")}</td><td>{_bars(s)}</td><td><ul>{why}</ul></td></tr>')
        out.append("</table>")
    out.append("<h2>Every question</h2>")
    out.append("<table><tr><th>question</th><th>topic</th><th>where</th><th>players</th><th>p</th><th>r</th>"
               "<th>choices (* = key)</th><th>hint</th><th>median s</th><th>time-outs</th><th>flags</th></tr>")
    for s in report.items:
        out.append(f"<tr><td>{escape(s.question_id)}</td><td>{escape(s.topic)}</td><td>{_source_link(s)}</td>"
                   f'<td class="n">{s.players}</td><td class="n">{s.p:.2f}</td>'
                   f'<td class="n">{_num(s.discrimination, "+.2f")}</td><td>{_bars(s)}</td>'
                   f'<td class="n">{s.hint_rate:.0%}</td><td class="n">{_num(s.median_seconds, ".0f")}</td>'
                   f'<td class="n">{s.timeout_rate:.0%}</td><td>{escape(", ".join(f.rule for f in s.flags))}</td></tr>')
    out.append("</table>")
    out.append("<h2>Rules</h2><ul>" + "".join(f"<li>{escape(r)}: {escape(_RULE_TEXT[r])}</li>" for r in RULES)
               + f"<li>No flag below {report.min_answers} answers.</li></ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


_RULE_TEXT = {
    "negative-discrimination": "r < 0: players who do well elsewhere miss it more often (often a wrong key)",
    "distractor-beats-key": "a wrong choice is picked more often than the key",
    "too-hard": f"p < {TOO_HARD_P:g}",
    "low-discrimination": f"0 <= r < {LOW_DISCRIMINATION:g}: the item does not separate who knows from who guesses",
    "dead-distractor": "a wrong choice nobody picks: it does no work",
    "too-easy": f"p > {TOO_EASY_P:g}",
}

RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json, "html": render_html}
