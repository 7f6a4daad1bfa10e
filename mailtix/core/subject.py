"""Subject lines: our ticket tag, reply/forward prefixes, and safe outgoing subjects (SPEC §3).

Subjects arrive already decoded (RFC 2047 encoded words are the parser's job).
Mail clients in many languages prepend their own "Re:" in their own words,
sometimes with a reply count ("Re[2]:", "Re(2):"), sometimes without a space
("AW:Termin"), and they pile up; we strip the whole chain.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

NO_SUBJECT = "(no subject)"

# Reply/forward markers seen in the wild, by the language of the client.
_MARKERS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "English": ("re", "fwd", "fw"),
    "German": ("aw", "wg", "antw", "antwort"),
    "Dutch": ("antw",),
    "Scandinavian": ("sv", "vs"),
    "French": ("tr", "réf", "ref"),
    "Spanish": ("rv",),
    "Italian": ("r", "rif"),
    "Polish": ("odp",),
    "Hungarian": ("vá",),
    "Chinese": ("回复", "答复", "转发", "回覆"),
}
# Longest first, so "antwort" is tried before "antw" and "re" before "r".
_MARKERS = sorted({m for ms in _MARKERS_BY_LANGUAGE.values() for m in ms}, key=len, reverse=True)
# One prefix: a marker, an optional count "[2]" or "(2)", an optional dot
# ("Réf. :"), then a colon (ASCII or the full-width one CJK clients use).
_ONE_PREFIX = (
    r"(?:" + "|".join(map(re.escape, _MARKERS)) + r")"
    r"\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\.?\s*[:\uff1a]"
)
_PREFIX_CHAIN = re.compile(r"^\s*(?:" + _ONE_PREFIX + r"\s*)+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# Ids beyond 18 digits are not ours and would only make huge ints.
_MAX_ID_DIGITS = 18


@lru_cache(maxsize=32)
def _tag_pattern(prefix: str) -> re.Pattern[str]:
    # The tag must open right after "[" so "[Cookbook - Feature #2]" is never
    # taken for prefix "Feature"; spacing and case vary between clients.
    return re.compile(
        r"\[\s*" + re.escape(prefix) + rf"\s*#\s*(\d{{1,{_MAX_ID_DIGITS}}})\s*\]",
        re.IGNORECASE,
    )


def format_tag(prefix: str, ticket_id: int) -> str:
    """The subject tag of a ticket: "[Ticket #42]"."""
    return f"[{prefix} #{ticket_id}]"


def find_tag(subject: str, prefix: str) -> int | None:
    """The ticket id named by our tag anywhere in subject (first one), or None."""
    m = _tag_pattern(prefix).search(subject)
    return int(m.group(1)) if m else None


def strip_reply_prefixes(subject: str) -> str:
    """subject without the leading chain of reply/forward prefixes ("Re: AW: Fwd:")."""
    return _PREFIX_CHAIN.sub("", subject, count=1)


def _clean(text: str) -> str:
    """text with control characters and line/paragraph separators turned into spaces."""
    # CR/LF would let a subject inject a header; U+2028/U+2029/U+0085 are line
    # breaks to str.splitlines() and to some header folders (RFC 5322 §2.2).
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)


def _without_tag_and_prefixes(subject: str, prefix: str) -> str:
    text = _clean(subject)
    # Prefixes may sit on both sides of our tag: "Re: [Ticket #4] AW: Drucker".
    text = strip_reply_prefixes(text)
    text = _tag_pattern(prefix).sub(" ", text)
    text = strip_reply_prefixes(text)
    return _SPACES.sub(" ", text).strip()


def ticket_subject(subject: str, prefix: str) -> str:
    """The human subject to store on a ticket: no prefixes, no tag, single spaces."""
    return _without_tag_and_prefixes(subject, prefix) or NO_SUBJECT


def tagged_subject(prefix: str, ticket_id: int, subject: str, reply: bool = True) -> str:
    """The subject of outgoing mail: "Re: [Ticket #42] Printer on fire", one line, one tag."""
    core = ticket_subject(subject, prefix)
    tagged = f"{format_tag(prefix, ticket_id)} {core}"
    return f"Re: {tagged}" if reply else tagged
