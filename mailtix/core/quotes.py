"""Take the quoted history off a reply, keeping only what its author wrote.

Built on mail-parser-reply (maintained, multi-language "On … wrote:" /
"Le … a écrit :" / Outlook "From:/Sent:" header detection). Two things are
ours: the library strips every line (indentation an agent typed would be
lost), so we only ask it *where* the quote starts and cut the original text
there; and our own notices carry `REPLY_MARKER`, a cut line that works even
when a client quotes without any "wrote:" header (Zendesk does the same).
"""

from __future__ import annotations

import re

from mailparser_reply import EmailReplyParser

# Put at the top of mail that agents answer by replying; everything from the
# first line that contains it (quoted or not) is history.
REPLY_MARKER = "-- reply above this line --"

_PARSER = EmailReplyParser(languages=["en", "fr", "de", "es", "it", "nl"])
_QUOTED_LINE = re.compile(r"^\s*>")


def strip_quoted(text: str) -> str:
    """The author's own text of a reply: no quoted history, no trailing "> " block."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = _cut_at_marker(lines)
    lines = _cut_at_reply_header(lines)
    return _trim(_drop_trailing_quote(lines))


def _cut_at_marker(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if REPLY_MARKER in line:
            return lines[:i]
    return lines


def _cut_at_reply_header(lines: list[str]) -> list[str]:
    parsed = _PARSER.read("\n".join(lines))
    # The header that opens the first quoted reply, as the library saw it
    # (stripped); find the original line it starts on. The library drops an
    # empty fragment, so a reply that is all quote has a header on replies[0].
    header = next((r.headers for r in parsed.replies if r.headers), "").strip()
    first = header.split("\n", 1)[0].strip().lstrip("> ").strip()
    if not first:
        return lines
    for i, line in enumerate(lines):
        if line.strip().lstrip("> ").strip().startswith(first):
            return lines[:i]
    return lines


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    # Bottom-quoting clients that write no header leave a trailing "> " block.
    end = len(lines)
    while end and (not lines[end - 1].strip() or _QUOTED_LINE.match(lines[end - 1])):
        end -= 1
    return lines[:end]


def _trim(lines: list[str]) -> str:
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join(line.rstrip() for line in lines).rstrip()
