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
_SEPARATOR = re.compile(r"^\s*[-_=*]{5,}\s*$")


def strip_quoted(text: str) -> str:
    """The author's own text of a reply: no quoted history, no trailing "> " block."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = _cut_at_marker(lines)
    lines = _cut_at_reply_header(lines, depth=3)
    return _trim(_drop_separators(_drop_trailing_quote(lines)))


def _cut_at_marker(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if REPLY_MARKER in line:
            return lines[:i]
    return lines


def _header_at(lines: list[str]) -> tuple[int, int] | None:
    """Where the first "On … wrote:" / "From: … Sent: …" header starts, and its line count."""
    parsed = _PARSER.read("\n".join(lines))
    # The header as the library saw it (stripped); find the original line it
    # starts on. The library drops an empty fragment, so a reply that is all
    # quote has its header on replies[0].
    header = next((r.headers for r in parsed.replies if r.headers), "").strip()
    first = header.split("\n", 1)[0].strip().lstrip("> ").strip()
    if not first:
        return None
    for i, line in enumerate(lines):
        if line.strip().lstrip("> ").strip().startswith(first):
            return i, header.count("\n") + 1
    return None


def _cut_at_reply_header(lines: list[str], depth: int) -> list[str]:
    found = _header_at(lines) if depth else None
    if found is None:
        return lines
    start, size = found
    above = lines[:start]
    # A "> " block right after the header, then text of the author's own:
    # bottom-posting (nothing above) or an answer written between the quotes.
    k = start + size
    while k < len(lines) and not lines[k].strip():
        k += 1
    q = k
    while q < len(lines) and (_QUOTED_LINE.match(lines[q]) or not lines[q].strip()):
        q += 1
    if q == k or q == len(lines):
        return above
    rest = _cut_at_reply_header(lines[q:], depth - 1)
    if any(line.strip() for line in above):
        return above + lines[k:q] + rest  # inline answer: keep the questions it answers
    return rest


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    # Bottom-quoting clients that write no header (or one in a language the
    # library lacks) leave a trailing "> " block, perhaps under a "…:" line.
    end = _blank_or_quoted_tail(lines, len(lines))
    if end == len(lines) or not any(_QUOTED_LINE.match(x) for x in lines[end:]):
        return lines[:end]
    if end and _looks_like_attribution(lines[end - 1]):
        end -= 1
        # A wrapped attribution: 'Bob "bob@x" <' / 'bob@x> wrote:'.
        if end and lines[end - 1].count("<") > lines[end - 1].count(">"):
            end -= 1
        end = _blank_or_quoted_tail(lines, end)
    return lines[:end]


def _blank_or_quoted_tail(lines: list[str], end: int) -> int:
    while end and (not lines[end - 1].strip() or _QUOTED_LINE.match(lines[end - 1])):
        end -= 1
    return end


def _looks_like_attribution(line: str) -> bool:
    line = line.strip()
    return line.endswith(":") and ("@" in line or any(c.isdigit() for c in line))


def _drop_separators(lines: list[str]) -> list[str]:
    # The rule an Outlook-style header leaves above itself ("-----", "_____").
    end = len(lines)
    while end and (not lines[end - 1].strip() or _SEPARATOR.match(lines[end - 1])):
        end -= 1
    return lines[:end]


def _trim(lines: list[str]) -> str:
    while lines and not lines[0].strip():
        lines = lines[1:]
    return "\n".join(line.rstrip() for line in lines).rstrip()
