"""ParsedMessage: what the rest of mailtix knows of a received message.

Built by `mailtix.core.parse.parse(raw)` from the raw bytes, which stay
stored untouched in the spool. Everything here is decoded text: header
values with RFC 2047/2231 decoded, addresses lower-cased, a text body (the
HTML part converted when there is no text part).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ParsedAttachment:
    """One attached file, with a name safe to show and to store."""

    filename: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class ParsedMessage:
    """A received message, decoded. Pure data: picklable, no methods with effects."""

    message_id: str | None  # "<id@host>" or None when absent
    subject: str
    from_addr: str  # lower-cased "user@domain", "" when missing or unparseable
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    in_reply_to: tuple[str, ...]  # "<id>" each
    references: tuple[str, ...]  # "<id>" each, oldest first
    date: datetime | None
    text: str  # the text body (HTML converted when there is no text part)
    html: str | None  # the HTML part as received, if any (sanitise before re-use)
    attachments: tuple[ParsedAttachment, ...] = ()
    # Lower-cased header name → every value of that header, decoded, in order.
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_type: str = "text/plain"
    # Problems met while parsing ("no Message-ID", "undecodable charset x-foo"…).
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header name (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers: In-Reply-To first, then References newest first."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        for ref in reversed(self.references):
            seen.setdefault(ref, None)
        return tuple(seen)
