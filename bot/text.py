"""User text on its way in: control characters out, one way to compare names.

Everything a user types or a platform reports about them (display names, command text, team
names) can carry control characters (NUL, ESC, BEL, DEL, C1 codes) that corrupt terminals and logs
and read as garbage in chat. They are removed once, where the text enters the core, so stored names
and every echo in a reply are clean on every platform. Escaping for a platform's markup (Markdown,
mentions, Slack's `& < >`) stays with the adapter that renders the text.
"""

from __future__ import annotations

import unicodedata

_LINE_BREAKS = "\n\t"


def clean(text: str, *, multiline: bool = False) -> str:
    """`text` without control characters (Unicode category Cc) and without lone surrogates.

    `multiline` keeps newlines and tabs (free text that may span lines); otherwise each becomes a
    space, since a name or a command is one line.
    """
    out = []
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            if ch in _LINE_BREAKS:
                out.append(ch if multiline else " ")
            continue
        if "\ud800" <= ch <= "\udfff":  # a crafted payload's lone surrogate: no encoding accepts it
            continue
        out.append(ch)
    return "".join(out)


def command_text(text: str) -> str:
    """A typed command, ready to be parsed and echoed: one clean line.

    Backticks become a look-alike (U+02CB) so an echo can never open or close the code spans that
    replies use around command names; no command or team name contains a backtick.
    """
    return clean(text).replace("`", "\u02cb")


def fold_key(name: str) -> str:
    """How two names are compared: NFKC, case-folded, runs of white space made one space.

    NFKC makes full-width and other compatibility forms (`Ａｄｍｉｎｓ`) the plain letters they
    stand for, and casefold is Unicode's case-insensitive comparison (`Straße` = `STRASSE`).
    """
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())
